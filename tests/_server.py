"""Test helpers: a private BentoML home and real ``bentoml serve`` processes on free loopback ports."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit import package
from kit.package import free_port

_CACHED = ("bentoml_home", "bento_store_dir", "model_store_dir", "tmp_bento_store_dir", "env_store_dir",
           "bento_store", "model_store", "tmp_bento_store", "result_store_file")


def use_bentoml_home(path: Path) -> None:
    """Point this process (and servers it starts) at ``path`` as BENTOML_HOME.

    BentoML memoizes its home and stores on first use, so the memos are cleared too.
    """
    from bentoml._internal.configuration.containers import BentoMLContainer
    from simple_di import sentinel

    path.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(path)
    for name in _CACHED:
        getattr(BentoMLContainer, name)._cache = sentinel


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        package.stop(self.proc)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@contextmanager
def serving(tag: str | None, log_dir: Path, *, bento: str | None = None,
            env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """A real ``bentoml serve`` on 127.0.0.1 for the duration of the block (always stopped)."""
    port = free_port()
    log = log_dir / f"server-{port}.log"
    with open(log, "wb") as handle:
        proc = package.start(tag, port=port, bento=bento, env={"KIT_API_KEY": "", **(env or {})}, wait=180,
                             log=handle)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        yield server
    finally:
        server.stop()
