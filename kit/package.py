"""Packaging: the BentoML model store, promotions and rollback, bento builds and serving.

A store entry (``name:version``) holds a saved :class:`~kit.bundle.ModelBundle` directory, so
loading goes through ``ModelBundle.load`` (sha256-verified, no pickle). Labels say what the
model is (task, dataset, runtime, variant, gate status); metadata says how it was made
(metrics, configs, quantization summary, lineage).

Promotions are an append-only JSON-lines log beside the store
(``$BENTOML_HOME/kit_promotions.jsonl``): who promoted which version, when and why. The
service's default model is the latest promoted version; :func:`rollback` re-promotes the one
before it. Python::

    tag = kit.package.save(bundle, "bc")        # -> "bc:<version>"
    kit.package.promote(tag, "passed review")
    bento = kit.package.build(tag)               # -> "kit:<version>"
    kit.package.serve(tag, port=3000)            # blocks; bentoml serve on 127.0.0.1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kit._json import to_json
from kit.errors import ConfigError, KitError, require

if TYPE_CHECKING:
    from kit.bundle import ModelBundle

PROMOTIONS = "kit_promotions.jsonl"
BENTOS_DIR = Path(__file__).resolve().parent.parent / "bentos"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")


class GateFailedError(KitError):
    """The bundle's release gate failed and ``force`` was not given."""

    status_code = 409


def bentoml_home() -> Path:
    """``$BENTOML_HOME`` (BentoML's default ``~/bentoml`` when unset)."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")


def promotions_path() -> Path:
    """The promotion log beside the model store."""
    return bentoml_home() / PROMOTIONS


def gate_status(bundle: ModelBundle) -> str:
    """``passed``, ``failed`` or ``unchecked`` (no gate section)."""
    gate = bundle.sections.get("gate")
    if not gate:
        return "unchecked"
    return "passed" if gate.get("passed") else "failed"


def _jsonable(value: Any) -> Any:
    """JSON types only, with ``None`` dropped (BentoML metadata refuses ``None``)."""
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v if x is not None]
        return v

    return strip(to_json(value))


def save(bundle: ModelBundle, name: str, force: bool = False, *, reason: str | None = None) -> str:
    """Put a bundle into the BentoML model store.

    Args:
        bundle: The model to store.
        name: Store name (lowercase letters, digits, ``-``, ``_``, ``.``).
        force: Store it even if its release gate failed (recorded in labels and metadata).
        reason: Why it was forced (recorded).

    Returns:
        The tag, ``name:version``.

    Raises:
        ConfigError: On an invalid name.
        GateFailedError: If the gate failed and ``force`` is false.
    """
    bentoml = require("bentoml", "serve")
    if not _NAME.match(name):
        raise ConfigError(f"model name must be lowercase letters, digits, '-', '_' or '.', but got {name=}",
                          field="name")
    status = gate_status(bundle)
    gate = bundle.sections.get("gate") or {}
    if status == "failed" and not force:
        reasons = gate.get("reasons") or [f"{c.get('name')}: {c.get('reason', 'failed')}"
                                           for c in gate.get("checks", []) if not c.get("passed")]
        why = "; ".join(map(str, reasons)) or "see the gate section"
        raise GateFailedError(f"the release gate failed for this bundle ({why}); fix it or pass "
                              "force=True (--force) to package it anyway", field="gate")
    forced = status == "failed" and force
    runtime = bundle.runtime_info
    dataset = bundle.lineage.get("data_name") or bundle.lineage.get("dataset") or "unknown"
    labels = {"kit": "bundle", "task": bundle.task, "dataset": str(dataset),
              "runtime": str(runtime.get("name", "torch")), "variant": str(runtime.get("variant", "fp32")),
              "gate": status, "forced": "true" if forced else "false"}
    quant = bundle.sections.get("quantization")
    metadata = _jsonable({
        "metrics": bundle.metrics, "configs": bundle.configs, "lineage": bundle.lineage,
        "quantization": _quant_summary(quant) if quant else None, "runtime": runtime, "gate": gate or None,
        "schema": bundle.schema, "primary_metric": bundle.primary_metric,
        "force": {"forced": forced, "by": _user(), "at": _now(), "reason": reason} if forced else None,
    })
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        bundle.save(model.path)
    return str(model.tag)


def _quant_summary(section: Mapping[str, Any]) -> dict[str, Any]:
    """The small part of a quantization section worth carrying in store metadata."""
    keep = ("chosen", "selected", "variant", "budget", "baseline", "summary")
    out = {k: section[k] for k in keep if k in section}
    return out or {k: v for k, v in section.items() if not isinstance(v, list | dict)}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER", "unknown")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _store_model(tag: str) -> Any:
    bentoml = require("bentoml", "serve")
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise KitError(f"model {tag!r} is not in the model store at {bentoml_home()}", field="tag") from None


def load(tag: str | None = None) -> ModelBundle:
    """Load the bundle stored under ``tag`` (default: the model :func:`resolve` picks)."""
    from kit.bundle import ModelBundle

    return ModelBundle.load(_store_model(resolve(tag)).path)


# -- promotions ----------------------------------------------------------------------------------
def history(name: str | None = None) -> list[dict[str, Any]]:
    """Promotion log entries, oldest first (optionally for one name)."""
    path = promotions_path()
    if not path.is_file():
        return []
    entries: list[dict[str, Any]] = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise KitError(f"promotion log line {i + 1} is not JSON", file=str(path), row=i) from None
        if name is None or entry.get("name") == name:
            entries.append(entry)
    return entries


def promoted(name: str) -> list[str]:
    """The promotion stack of ``name``: promoted tags, the current one last (rollbacks pop)."""
    stack: list[str] = []
    for entry in history(name):
        if entry["event"] == "promote":
            if not stack or stack[-1] != entry["tag"]:
                stack.append(entry["tag"])
        elif entry["event"] == "rollback" and stack:
            stack.pop()
    return stack


def _append(entry: dict[str, Any]) -> None:
    import fcntl

    path = promotions_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def promote(tag: str, reason: str) -> dict[str, Any]:
    """Make ``name:version`` the served default of its name; records who, when and why.

    Returns:
        The log entry written.
    """
    model = _store_model(tag)
    full = str(model.tag)
    name = model.tag.name
    stack = promoted(name)
    entry = {"event": "promote", "name": name, "tag": full, "previous": stack[-1] if stack else None,
             "reason": reason, "by": _user(), "host": socket.gethostname(), "at": _now()}
    _append(entry)
    return entry


def rollback(name: str, reason: str = "rollback") -> dict[str, Any]:
    """Re-promote the version promoted before the current one of ``name``.

    Returns:
        The log entry written (``tag`` is the version now served).

    Raises:
        KitError: If fewer than two versions were promoted.
    """
    stack = promoted(name)
    if len(stack) < 2:
        raise KitError(f"nothing to roll back to: {name!r} has {len(stack)} promoted version(s)", field="name")
    entry = {"event": "rollback", "name": name, "tag": stack[-2], "from": stack[-1], "reason": reason,
             "by": _user(), "host": socket.gethostname(), "at": _now()}
    _append(entry)
    return entry


def resolve(tag: str | None = None) -> str:
    """Turn ``None``, a name or a tag into a full ``name:version`` tag.

    ``None`` means the most recently promoted model; a bare name means its current promoted
    version, or its latest stored one if none was promoted.
    """
    if tag is None:
        entries = history()
        if not entries:
            raise KitError("no model has been promoted yet; pass a tag, set KIT_MODEL_TAG, or run "
                           "kit promote NAME:VERSION", field="tag")
        stack = promoted(entries[-1]["name"])
        if not stack:
            raise KitError(f"{entries[-1]['name']!r} was rolled back past its first promotion", field="tag")
        return stack[-1]
    if ":" not in tag:
        stack = promoted(tag)
        if stack:
            return stack[-1]
    return str(_store_model(tag).tag)


def serving_tag(arguments: Any = None) -> str:
    """The tag the service loads.

    Env ``KIT_MODEL_TAG``, else the bento argument ``model_tag`` (baked in by :func:`build`),
    else the latest promoted version.
    """
    tag = os.environ.get("KIT_MODEL_TAG") or getattr(arguments, "model_tag", None)
    if tag and ":" in tag and tag.split(":", 1)[1] != "latest":
        return str(tag)
    return resolve(tag or None)


def models(name: str | None = None) -> list[dict[str, Any]]:
    """Stored kit models (newest first) with labels, primary test metric and promotion state."""
    bentoml = require("bentoml", "serve")
    rows: list[dict[str, Any]] = []
    for model in bentoml.models.list(name):
        info = model.info
        if info.labels.get("kit") != "bundle":
            continue
        stack = promoted(model.tag.name)
        tag = str(model.tag)
        state = "serving" if stack and stack[-1] == tag else ("promoted before" if tag in stack else "")
        primary = info.metadata.get("primary_metric")
        test = info.metadata.get("metrics", {}).get("test", {})
        rows.append({"tag": tag, "created": info.creation_time.isoformat(timespec="seconds"),
                     **{k: info.labels.get(k, "") for k in ("task", "dataset", "runtime", "variant", "gate")},
                     "metric": f"{primary}={test[primary]:.4f}" if primary in test else "",
                     "promotion": state})
    rows.sort(key=lambda r: str(r["created"]), reverse=True)
    return rows


# -- bentos and servers --------------------------------------------------------------------------
def build(tag: str | None = None, *, version: str | None = None, service_dir: str | os.PathLike[str] = BENTOS_DIR
          ) -> str:
    """Build a bento from ``bentos/`` with the model ``tag`` baked in (as the ``model_tag`` argument).

    The kit package is copied into the build context so the bento (and the image
    ``bentoml containerize`` makes from it) runs without a kit install.

    Returns:
        The bento tag, ``kit:<version>``.
    """
    bentoml = require("bentoml", "serve")
    full = resolve(tag)
    src = Path(service_dir)
    with tempfile.TemporaryDirectory(prefix="kit-build-") as tmp:
        ctx = Path(tmp)
        shutil.copy2(src / "service.py", ctx / "service.py")
        shutil.copy2(src / "bentofile.yaml", ctx / "bentofile.yaml")
        shutil.copytree(Path(__file__).resolve().parent, ctx / "kit",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "ui"))
        bento = bentoml.bentos.build_bentofile(str(ctx / "bentofile.yaml"), build_ctx=str(ctx), version=version,
                                               args={"model_tag": full})
    return str(bento.tag)


def serve_command(target: str = str(BENTOS_DIR), *, port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """The ``bentoml serve`` command line for a bento tag or the ``bentos/`` directory."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]


def start(tag: str | None = None, *, port: int = 3000, host: str = "127.0.0.1", bento: str | None = None,
          env: Mapping[str, str] | None = None, wait: float = 120.0, log: Any = None) -> subprocess.Popen[bytes]:
    """Start ``bentoml serve`` in the background and wait until ``/readyz`` answers.

    Args:
        tag: Model to serve (default: latest promoted; ignored for a built bento unless given).
        port: TCP port on ``host``.
        host: Interface (loopback by default).
        bento: A built bento tag to serve instead of the ``bentos/`` source directory.
        env: Extra environment (``KIT_API_KEY``, ``KIT_BATCHING``, ...).
        wait: Seconds to wait for readiness (0: do not wait).
        log: File object for the server's output (default: inherited).

    Raises:
        KitError: If the server exits or is not ready in time.
    """
    full_env = {**os.environ, **(env or {})}
    if tag is not None:
        full_env["KIT_MODEL_TAG"] = resolve(tag)
    elif bento is None:
        full_env["KIT_MODEL_TAG"] = resolve(None)
    cmd = serve_command(bento or str(BENTOS_DIR), port=port, host=host)
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True)
    if wait:
        try:
            wait_ready(f"http://{host}:{port}", wait, proc)
        except BaseException:
            stop(proc)
            raise
    return proc


def wait_ready(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url/readyz`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise KitError(f"the server exited with code {proc.returncode} before it was ready", field="serve")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise KitError(f"the server at {url} was not ready after {timeout:.0f}s", field="serve")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a server started by :func:`start`: its process group, then any worker that outlived it.

    BentoML starts its service workers in sessions of their own, so signalling the server's
    process group alone can leave a worker answering on the port; every descendant recorded
    before the stop is killed if it is still alive afterwards.
    """
    import signal

    psutil = require("psutil", "serve")
    if proc.poll() is not None:
        return
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
    except ProcessLookupError:
        pass
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()


def serve(tag: str | None = None, *, port: int = 3000, host: str = "127.0.0.1", bento: str | None = None,
          env: Mapping[str, str] | None = None) -> int:
    """Serve in the foreground until interrupted (what ``kit serve`` and ``make demo`` run).

    Returns:
        The server's exit code.
    """
    proc = start(tag, port=port, host=host, bento=bento, env=env, wait=0)
    print(f"serving {'bento ' + bento if bento else resolve(tag)} at http://{host}:{port} (Ctrl-C stops)",
          flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        return 0


def predict_file(tag: str | None, src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                 chunk_size: int = 10_000, progress: bool = True) -> int:
    """Score a CSV file in chunks through ``bundle.infer`` (offline batch inference).

    Returns:
        Number of rows scored.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from kit.serving import ServedModel

    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, but got {chunk_size=}", field="chunk_size")
    full = resolve(tag)
    served = ServedModel(load(full), full)
    total = 0
    out = Path(dst)
    with tqdm(desc=f"scoring {Path(src).name}", unit="rows", disable=not progress) as bar:
        for i, chunk in enumerate(pd.read_csv(src, chunksize=chunk_size)):
            try:
                scored = served.score_frame(chunk)
            except KitError as exc:
                if exc.row is not None:
                    exc.row += total
                    exc.message = f"{exc.message} (file row {exc.row})"
                exc.file = str(src)
                raise
            scored.to_csv(out, mode="w" if i == 0 else "a", header=i == 0, index=False)
            total += len(chunk)
            bar.update(len(chunk))
    return total


# -- CLI -----------------------------------------------------------------------------------------
def _cmd_package(args: argparse.Namespace) -> int:
    from kit.bundle import ModelBundle

    tag = save(ModelBundle.load(args.bundle), args.name, force=args.force, reason=args.reason)
    print(tag)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    print(build(args.tag, version=args.version))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    env = {"KIT_BATCHING": "0"} if args.no_batching else {}
    return serve(args.tag, port=args.port, host=args.host, bento=args.bento, env=env)


def _cmd_models(args: argparse.Namespace) -> int:
    import pandas as pd

    rows = models(args.name)
    if not rows:
        print("no kit models in the store at", bentoml_home())
        return 0
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    entry = promote(args.tag, args.reason)
    print(f"promoted {entry['tag']} (previous: {entry['previous'] or 'none'})")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    entry = rollback(args.name, args.reason)
    print(f"rolled back {args.name}: now serving {entry['tag']} (was {entry['from']})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    n = predict_file(args.tag, args.input, args.output, chunk_size=args.chunk_size, progress=not args.quiet)
    print(f"scored {n} rows -> {args.output}")
    return 0


def register_cli(sub: Any) -> None:
    """Add package, build, serve, models, promote, rollback and predict to ``kit``."""
    p = sub.add_parser("package", help="put a bundle into the BentoML model store")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--name", required=True, help="store name, e.g. bc")
    p.add_argument("--force", action="store_true", help="package even if the release gate failed (recorded)")
    p.add_argument("--reason", help="why --force was needed (recorded)")
    p.set_defaults(func=_cmd_package)

    p = sub.add_parser("build", help="build a bento from bentos/ with a stored model")
    p.add_argument("tag", nargs="?", help="NAME:VERSION or NAME (default: latest promoted)")
    p.add_argument("--version", help="bento version (default: generated)")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("serve", help="run bentoml serve on the kit service")
    p.add_argument("tag", nargs="?", help="model NAME:VERSION or NAME (default: latest promoted)")
    p.add_argument("--bento", help="serve a built bento tag instead of the bentos/ directory")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--no-batching", action="store_true", help="turn adaptive batching off")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("models", help="list stored versions with labels and promotion state")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("promote", help="make NAME:VERSION the served version of NAME")
    p.add_argument("tag")
    p.add_argument("--reason", required=True, help="why (recorded in the promotion log)")
    p.set_defaults(func=_cmd_promote)

    p = sub.add_parser("rollback", help="re-promote the previously promoted version of NAME")
    p.add_argument("name")
    p.add_argument("--reason", default="rollback")
    p.set_defaults(func=_cmd_rollback)

    p = sub.add_parser("predict", help="score a CSV file offline through the same predict path")
    p.add_argument("--tag", help="model NAME:VERSION or NAME (default: latest promoted)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--chunk-size", type=int, default=10_000)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_predict)
