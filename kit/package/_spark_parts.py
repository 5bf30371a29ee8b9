"""Resumable batch scoring of files on Spark: the input in parts, each part one Spark job, a manifest of what is done.

``OUTPUT`` (a directory, on any filesystem Spark writes) ends up as::

    part-00000-000.snappy.parquet ...   predictions (or .csv); readers that skip "_" names (Spark,
                                        pandas, pyarrow, DuckDB) read OUTPUT as one dataset
    _kit_manifest.json                  the plan: model tag and sha256, input files with size and
                                        modification time, options, the files of each part
    _kit_parts/part-00000.json          one record per finished part: rows, files, seconds
    _errors/part-00000-000...           rows the schema refused (``on_error="skip"``), with the reason
    _SUCCESS                            once every part is done

A part is a run of consecutive input files of about ``part_bytes`` (Spark datasets are
directories of part files; one file is never split across parts, so a single-file input is one
part). A part's job writes into ``_kit_tmp/`` and its files are moved into place before its record
is written, so after a crash (driver killed, cluster lost) the same command skips every part
with a record and redoes the others, clearing their leftovers first. A run whose plan differs
(another model, changed input files, other options) is refused unless ``overwrite`` is set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from kit.errors import ConfigError, DataError, KitError
from kit.package._scoring import (
    ERROR_COLUMNS,
    ORIGIN_COLUMNS,
    BatchSummary,
    bundle_digest,
    check_columns,
    check_on_error,
    output_columns,
    parse_keep,
)
from kit.package._spark import (
    input_format,
    onnx_bundle,
    raising_kit_errors,
    read_input,
    scored_frame,
    ship,
    spark_model,
)
from kit.package._spark_fs import HadoopFS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from kit.bundle import ModelBundle

FORMAT = "kit.batch/1"
MANIFEST = "_kit_manifest.json"
RECORDS = "_kit_parts"
TMP = "_kit_tmp"
DEFAULT_PART_BYTES = 128 * 2**20
_PLAN_KEYS = ("format", "model", "input", "output", "options", "parts")


def predict_spark_file(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                       model: str | os.PathLike[str] | ModelBundle | None = None, *, master: str | None = None,
                       partitions: int | None = None, keep: str | Sequence[str] | None = None, on_error: str = "fail",
                       errors: str | os.PathLike[str] | None = None, fmt: str | None = None, overwrite: bool = False,
                       part_bytes: int = DEFAULT_PART_BYTES, spark: SparkSession | None = None,
                       config: dict[str, str] | None = None, export_onnx: bool = True,
                       progress: bool = True) -> BatchSummary:
    """Score a Parquet or CSV input on Spark into ``dst`` in resumable parts (``kit predict --engine spark``).

    Args:
        src: Input path or URI: a file, a directory of part files or a glob.
        dst: Output directory (``.csv`` in its name: CSV files, else Parquet).
        model: A store tag (``None``: the latest promoted), a bundle directory or a bundle; an image
            bundle is refused before Spark starts (score it with ``kit predict FOLDER_OR_ZIP``).
        master: Spark master when no session is given (default ``local[*]``).
        partitions: Spark partitions per part (repartitions each part's rows; default: the input's splits).
        keep: Input columns passed through, e.g. ``"id,region"``.
        on_error: ``fail`` or ``skip`` (bad rows go to ``errors`` with the reason).
        errors: Errors output directory (default ``dst/_errors``).
        fmt: Input format, ``parquet`` or ``csv``, when the name does not say.
        overwrite: Delete an existing output (and errors) and start again.
        part_bytes: Input bytes per part (files are not split).
        spark: The session (default: :func:`~kit.package.spark_session` on ``master``, with ``config``).
        config: Extra Spark settings for the session this starts (unused when ``spark`` is given).
        export_onnx: Export a torch bundle's network to ONNX on the driver when it carries none.
        progress: Show a progress bar over parts.

    Returns:
        Rows, scored and failed over the whole output, parts, and parts skipped as already done.

    Raises:
        KitError: On a bad option, a missing column, an output holding another run, or a bad row
            with ``on_error="fail"`` (naming the file and, for Parquet, the row).
    """
    from kit.package._spark import spark_session

    started = time.perf_counter()
    check_on_error(on_error)
    keep_cols = parse_keep(keep)
    if partitions is not None and partitions < 1:
        raise ConfigError(f"partitions must be >= 1, but got {partitions=}", field="partitions")
    if part_bytes < 1:
        raise ConfigError(f"part_bytes must be >= 1, but got {part_bytes=}", field="part_bytes")
    source, tag = spark_model(model)  # an image model is refused before the JVM starts
    spark = spark or spark_session(master, config=config)
    fs = HadoopFS(spark)
    src_q, dst_q = fs.qualify(str(src)), fs.qualify(str(dst).rstrip("/"))
    errors_q = fs.qualify(str(errors).rstrip("/")) if errors is not None else f"{dst_q}/_errors"
    fmt_in = input_format(fs, src_q, fmt)
    out_fmt = "csv" if dst_q.lower().endswith(".csv") else "parquet"
    bundle = onnx_bundle(source, export_onnx)
    frame = read_input(spark, src_q, fmt_in)
    check_columns(bundle, frame.columns, keep_cols, src_q)
    files = sorted(frame.inputFiles())
    if not files:
        raise DataError(f"{src_q} holds no {fmt_in} files", file=src_q)
    stats = [fs.status(f) for f in files]
    listed = [[f, size, mtime] for f, (size, mtime) in zip(files, stats, strict=True)]
    plan = json.loads(json.dumps({
        "format": FORMAT, "model": {"tag": tag, "sha256": bundle_digest(source)},
        "input": {"path": src_q, "format": fmt_in, "files": listed},
        "output": {"path": dst_q, "format": out_fmt, "errors": errors_q},
        "options": {"keep": list(keep_cols), "on_error": on_error},
        "parts": _group([size for size, _ in stats], part_bytes)}))
    done = _prepare(fs, plan, overwrite)
    skipped = len(done)
    job = _PartJob(spark, fs, plan, bundle, tag, keep_cols, partitions, frame)
    todo = [i for i in range(len(plan["parts"])) if i not in done]
    _run(spark, job, todo, done, len(plan["parts"]), progress)
    totals = {k: sum(int(r[k]) for r in done.values()) for k in ("rows", "scored", "failed")}
    fs.delete(f"{dst_q}/{TMP}")
    fs.write_text(f"{dst_q}/{MANIFEST}", json.dumps({**plan, "complete": True, "totals": totals,
                                                     "finished_at": _now()}, indent=1))
    fs.write_text(f"{dst_q}/_SUCCESS", "")
    return BatchSummary(rows=totals["rows"], scored=totals["scored"], failed=totals["failed"], output=dst_q,
                        errors=errors_q if totals["failed"] else None, tag=tag, engine="spark",
                        parts=len(plan["parts"]), skipped_parts=skipped, seconds=time.perf_counter() - started)


def _group(sizes: list[int], part_bytes: int) -> list[list[int]]:
    """Consecutive file indices grouped into parts of about ``part_bytes`` (a larger file is a part alone)."""
    parts: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, n in enumerate(sizes):
        if current and size + n > part_bytes:
            parts.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        parts.append(current)
    return parts


def _prepare(fs: HadoopFS, plan: dict[str, Any], overwrite: bool) -> dict[int, dict[str, Any]]:
    """Check ``dst`` against the plan and return the records of finished parts (start it when new)."""
    dst, errors = plan["output"]["path"], plan["output"]["errors"]
    if overwrite:
        fs.delete(dst)
        fs.delete(errors)
    text = fs.read_text(f"{dst}/{MANIFEST}") or fs.read_text(f"{dst}/{MANIFEST}.tmp")
    if text is None:
        if fs.names(dst):
            raise KitError(f"the output {dst} exists and holds no kit manifest ({MANIFEST}); choose another "
                           "output or pass overwrite=True (--overwrite) to replace it", field="output", file=dst)
        fs.write_text(f"{dst}/{MANIFEST}", json.dumps({**plan, "complete": False, "created_at": _now()}, indent=1))
        return {}
    try:
        old = json.loads(text)
    except ValueError:
        raise KitError(f"{dst}/{MANIFEST} is not valid JSON; pass overwrite=True (--overwrite) to start again",
                       field="output", file=f"{dst}/{MANIFEST}") from None
    differ = [k for k in _PLAN_KEYS if old.get(k) != plan[k]]
    if differ:
        raise KitError(f"the output {dst} holds a run with another {', '.join(differ)} (changed model, input files "
                       "or options); pass overwrite=True (--overwrite) to start again, or choose another output",
                       field="output", file=dst)
    done: dict[int, dict[str, Any]] = {}
    for name in fs.names(f"{dst}/{RECORDS}"):
        if name.endswith(".json") and (record := fs.read_text(f"{dst}/{RECORDS}/{name}")):
            entry = json.loads(record)
            done[int(entry["part"])] = entry
    return done


def _run(spark: SparkSession, job: _PartJob, todo: list[int], done: dict[int, dict[str, Any]], total: int,
         progress: bool) -> None:
    """Run the parts' jobs, several at once (one per core, so single-split parts keep every core busy)."""
    from tqdm.auto import tqdm

    sc = spark.sparkContext
    workers = max(1, min(len(todo), sc.defaultParallelism))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kit-part")
    try:
        with tqdm(total=total, initial=total - len(todo), unit="part", desc="scoring parts",
                  disable=not progress) as bar:
            futures = {pool.submit(job.run, i): i for i in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    with raising_kit_errors():
                        done[futures[future]] = future.result()
                    bar.update(1)
    except BaseException:
        sc.cancelAllJobs()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


class _PartJob:
    """Scores one part: read its files, score, write into ``_kit_tmp``, move into place, record."""

    def __init__(self, spark: SparkSession, fs: HadoopFS, plan: dict[str, Any], bundle: ModelBundle, tag: str,
                 keep: tuple[str, ...], partitions: int | None, frame: DataFrame) -> None:
        self.spark, self.fs, self.plan, self.bundle, self.tag = spark, fs, plan, bundle, tag
        self.keep, self.partitions, self.schema = keep, partitions, frame.schema
        self.shipped = ship(spark, bundle)
        src = plan["input"]["path"]
        self.base = src if fs.is_dir(src) else None

    def run(self, index: int) -> dict[str, Any]:
        """Score part ``index`` and return its record."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        started = time.perf_counter()
        plan, fs = self.plan, self.fs
        dst, errors, out_fmt = plan["output"]["path"], plan["output"]["errors"], plan["output"]["format"]
        name = f"part-{index:05d}"
        tmp = f"{dst}/{TMP}/{name}"
        self._clear(name, tmp)
        frame = self._read([plan["input"]["files"][i][0] for i in plan["parts"][index]])
        if self.partitions:
            frame = frame.repartition(self.partitions)
        sc = self.spark.sparkContext
        stats = (sc.accumulator(0), sc.accumulator(0), sc.accumulator(0))
        on_error = plan["options"]["on_error"]
        scored = scored_frame(frame, self.bundle, self.shipped, self.keep, self.tag, on_error, stats)
        columns = [F.col(f"`{c}`") for c in output_columns(self.bundle, self.keep)]
        failed = 0
        if on_error == "skip":
            scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
            try:
                _write(scored.where(F.col("error").isNull()).select(*columns), f"{tmp}/ok", out_fmt)
                counts = scored.agg(F.count(F.lit(1)).alias("rows"), F.count("error").alias("failed")).collect()[0]
                rows, failed = int(counts["rows"]), int(counts["failed"])
                if failed:
                    bad = [F.col(f"`{c}`") for c in (*self.keep, *ORIGIN_COLUMNS, *ERROR_COLUMNS)]
                    _write(scored.where(F.col("error").isNotNull()).select(*bad), f"{tmp}/errors", out_fmt)
            finally:
                scored.unpersist()
        else:
            _write(scored.select(*columns), f"{tmp}/ok", out_fmt)
            rows = int(stats[0].value)
        record = {"part": index, "rows": rows, "scored": rows - failed, "failed": failed,
                  "files": self._move(f"{tmp}/ok", dst, name),
                  "error_files": self._move(f"{tmp}/errors", errors, name) if failed else [],
                  "batches": int(stats[1].value), "bundle_loads": int(stats[2].value),
                  "seconds": round(time.perf_counter() - started, 3), "finished_at": _now()}
        fs.delete(tmp)
        fs.write_text(f"{dst}/{RECORDS}/{name}.json", json.dumps(record))
        return record

    def _read(self, files: list[str]) -> DataFrame:
        reader = self.spark.read.schema(self.schema)
        if self.base is not None:
            reader = reader.option("basePath", self.base)
        if self.plan["input"]["format"] == "csv":
            return reader.option("header", True).csv(files)
        return reader.parquet(*files)

    def _clear(self, name: str, tmp: str) -> None:
        """Remove what a killed run left of this part: its temporary output and moved files."""
        self.fs.delete(tmp)
        for folder in (self.plan["output"]["path"], self.plan["output"]["errors"]):
            for leftover in self.fs.names(folder):
                if leftover.startswith(f"{name}-"):
                    self.fs.delete(f"{folder}/{leftover}")

    def _move(self, folder: str, target: str, name: str) -> list[str]:
        """Move a job's data files into ``target`` as ``<name>-NNN<suffix>``; returns the new names."""
        moved = []
        data = [n for n in self.fs.names(folder) if not n.startswith(("_", "."))]
        self.fs.mkdirs(target)
        for j, file in enumerate(data):
            suffix = file[file.index("."):] if "." in file else ""
            new = f"{name}-{j:03d}{suffix}"
            self.fs.rename(f"{folder}/{file}", f"{target}/{new}")
            moved.append(new)
        return moved


def _write(frame: DataFrame, path: str, fmt: str) -> None:
    writer = frame.write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", True).csv(path)
    else:
        writer.parquet(path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
