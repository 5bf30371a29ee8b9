"""The source text of a builder and its sha256: what a bundle records and the torch runtime checks.

Two kinds, chosen by where the builder lives:

* ``module``: the builder is defined in a module with a source file (``my_nets.py``, the zoo):
  the whole file is recorded, so any change to the builder, its classes or its helpers counts.
* ``function``: the builder is defined in a notebook or another place without a file: the
  builder's own source plus the source of every network class defined next to it (found in
  the module it built, in order of first appearance).

Line endings are normalized before hashing, so a checkout with CRLF endings hashes the same.
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.errors import BuilderError


@dataclass(frozen=True)
class Source:
    """A builder's recorded source.

    Attributes:
        text: The source text.
        sha256: Hex sha256 of ``text`` (UTF-8).
        kind: ``module`` or ``function`` (see the module docstring).
        origin: The file it came from, or ``<module>:<qualname>`` when there is none.
    """

    text: str
    sha256: str
    kind: str
    origin: str


def sha256_text(text: str) -> str:
    """Hex sha256 of ``text`` after normalizing line endings."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def module_file(module_name: str) -> Path | None:
    """The source file of an imported, file-backed module (``None`` for ``__main__`` or a notebook)."""
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__":
        return None
    try:
        file = inspect.getsourcefile(module)
    except TypeError:  # a built-in module
        return None
    return Path(file) if file and Path(file).is_file() else None


def builder_source(ref: str, fn: Any, network: Any = None) -> Source:
    """The source a bundle records for builder ``fn`` (``ref`` names it in errors).

    Args:
        ref: The builder reference, for messages.
        fn: The builder function.
        network: A module it built; its classes defined next to a file-less builder are included.

    Raises:
        BuilderError: If the source cannot be read (a builder typed into a plain Python prompt).
    """
    file = module_file(fn.__module__)
    if file is not None:
        text = file.read_text(encoding="utf-8").replace("\r\n", "\n")
        return Source(text, sha256_text(text), "module", str(file))
    parts = [_getsource(ref, fn)]
    seen: set[type] = set()
    for sub in network.modules() if network is not None else ():
        cls = type(sub)
        if cls in seen or cls.__module__ != fn.__module__:
            continue
        seen.add(cls)
        parts.append(_getsource(ref, cls))
    text = "\n\n".join(p.rstrip("\n") for p in parts) + "\n"
    return Source(text, sha256_text(text), "function", f"{fn.__module__}:{fn.__qualname__}")


def _getsource(ref: str, obj: Any) -> str:
    try:
        return inspect.getsource(obj).replace("\r\n", "\n")
    except (OSError, TypeError) as exc:
        found = _class_source(obj) if inspect.isclass(obj) else None
        if found is not None:
            return found
        raise BuilderError(f"cannot read the source of {getattr(obj, '__qualname__', obj)!r} used by builder "
                           f"{ref!r} ({exc}); define it in a .py file or a notebook cell so the bundle can record "
                           "and check it", field="net") from None


def _class_source(cls: type) -> str | None:
    """A class's source found through one of its methods (classes defined in a notebook cell).

    ``inspect.getsource`` looks for a class in its module's file, and ``__main__`` of a kernel has
    none; the methods' code objects still name the cell, whose text ``linecache`` holds.
    """
    for value in vars(cls).values():
        code = getattr(value, "__code__", None)
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        pattern = re.compile(rf"^\s*class\s+{re.escape(cls.__name__)}\b")
        for start in range(min(code.co_firstlineno, len(lines)) - 1, -1, -1):
            if pattern.match(lines[start]):
                return "".join(inspect.getblock(lines[start:])).replace("\r\n", "\n")
    return None
