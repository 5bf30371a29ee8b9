"""Small files and listings on whatever filesystem Spark reaches (local, HDFS, S3A, ABFS, ...), from the driver.

Calls Hadoop's ``FileSystem`` through the session's JVM with the session's Hadoop configuration,
so the manifest and part records of a resumable run live wherever the output does, with the
same credentials Spark uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class HadoopFS:
    """Driver-side file operations on URIs, through Hadoop's ``FileSystem`` API."""

    def __init__(self, spark: SparkSession) -> None:
        self._jvm: Any = spark._jvm  # the JVM gateway: the only way to Hadoop's FileSystem
        self._conf: Any = spark._jsc.hadoopConfiguration()

    def _resolve(self, uri: str) -> tuple[Any, Any]:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self._conf), path

    def qualify(self, uri: str) -> str:
        """The fully qualified URI (``out`` → ``file:/home/me/out``)."""
        fs, path = self._resolve(uri)
        return str(fs.makeQualified(path).toString())

    def exists(self, uri: str) -> bool:
        """Whether ``uri`` exists."""
        fs, path = self._resolve(uri)
        return bool(fs.exists(path))

    def is_dir(self, uri: str) -> bool:
        """Whether ``uri`` is a directory."""
        fs, path = self._resolve(uri)
        return bool(fs.exists(path) and fs.getFileStatus(path).isDirectory())

    def status(self, uri: str) -> tuple[int, int]:
        """Size in bytes and modification time (ms) of a file."""
        fs, path = self._resolve(uri)
        st = fs.getFileStatus(path)
        return int(st.getLen()), int(st.getModificationTime())

    def names(self, uri: str) -> list[str]:
        """Names in a directory, sorted (empty when it does not exist)."""
        fs, path = self._resolve(uri)
        if not fs.exists(path):
            return []
        return sorted(str(st.getPath().getName()) for st in fs.listStatus(path))

    def mkdirs(self, uri: str) -> None:
        """Create a directory and its parents."""
        fs, path = self._resolve(uri)
        fs.mkdirs(path)

    def delete(self, uri: str) -> None:
        """Remove a file or a directory tree (no error when it does not exist)."""
        fs, path = self._resolve(uri)
        fs.delete(path, True)

    def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst`` (which must not exist).

        Raises:
            OSError: When the filesystem refuses.
        """
        fs, path = self._resolve(src)
        if not fs.rename(path, self._jvm.org.apache.hadoop.fs.Path(dst)):
            raise OSError(f"cannot move {src} to {dst}")

    def read_text(self, uri: str) -> str | None:
        """A small text file's content, or ``None`` when it does not exist."""
        fs, path = self._resolve(uri)
        if not fs.exists(path):
            return None
        stream = fs.open(path)
        try:
            data = self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
        finally:
            stream.close()
        return bytes(data).decode("utf-8")

    def write_text(self, uri: str, text: str) -> None:
        """Write a small text file: to ``<uri>.tmp`` first, then moved over ``uri``."""
        fs, path = self._resolve(uri)
        tmp = self._jvm.org.apache.hadoop.fs.Path(uri + ".tmp")
        stream = fs.create(tmp, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        fs.delete(path, False)
        if not fs.rename(tmp, path):
            raise OSError(f"cannot move {uri}.tmp to {uri}")
