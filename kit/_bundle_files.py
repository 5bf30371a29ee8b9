"""A bundle directory on disk: files written atomically, a manifest holding every file's sha256, and its own sha256.

Reading checks the manifest's hash, its format and every file's hash, and names the first file
that is missing, changed or corrupt. What the files mean is :class:`kit.bundle.ModelBundle`'s business.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kit._json import strict_json_default
from kit.errors import IntegrityError

MANIFEST = "bundle.json"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def write_files(out: Path, manifest: dict[str, Any], files: dict[str, bytes]) -> Path:
    """Write ``files`` and the manifest (with their hashes) into directory ``out``, each file atomically.

    Returns:
        The directory.
    """
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _atomic_write(out / name, data)
    manifest = {**manifest, "files": {name: sha256_bytes(data) for name, data in sorted(files.items())}}
    text = json.dumps(manifest, indent=1, sort_keys=True, default=strict_json_default).encode()
    _atomic_write(out / MANIFEST, text)
    _atomic_write(out / f"{MANIFEST}.sha256", f"{sha256_bytes(text)}  {MANIFEST}\n".encode())
    return out


def read_files(root: Path, expected_format: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read and verify a directory written by :func:`write_files`.

    Returns:
        The manifest and every listed file's bytes.

    Raises:
        IntegrityError: If the manifest or a file is missing, changed or corrupt, or the format
            is not ``expected_format`` (names the file).
    """
    if not (root / MANIFEST).is_file():
        raise IntegrityError(f"{root} is not a kit bundle: {MANIFEST} is missing", file=str(root / MANIFEST))
    text = (root / MANIFEST).read_bytes()
    sums = root / f"{MANIFEST}.sha256"
    if not sums.is_file():
        raise IntegrityError(f"{sums.name} is missing from {root}", file=str(sums))
    if sums.read_text().split()[0] != sha256_bytes(text):
        raise IntegrityError(f"{MANIFEST} in {root} was changed or is corrupt (sha256 mismatch)",
                             file=str(root / MANIFEST))
    manifest = json.loads(text)
    if manifest.get("format") != expected_format:
        raise IntegrityError(f"{root / MANIFEST} has format {manifest.get('format')!r}, expected {expected_format!r}",
                             file=str(root / MANIFEST))
    blobs: dict[str, bytes] = {}
    for name, digest in manifest["files"].items():
        file = root / name
        if not file.is_file():
            raise IntegrityError(f"{name} is missing from bundle {root}", file=str(file))
        data = file.read_bytes()
        if sha256_bytes(data) != digest:
            raise IntegrityError(f"{name} in bundle {root} was changed or is corrupt (sha256 mismatch)",
                                 file=str(file))
        blobs[name] = data
    return manifest, blobs


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
