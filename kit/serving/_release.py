"""Where the service meets the release (:mod:`kit.release`): one runtime per worker, one place per request.

:func:`start_release` creates the worker's :class:`~kit.release._runtime.ReleaseRuntime` around the
champion the service loaded (``KIT_RELEASE=0`` leaves it off: the service then answers as a plain
one-model service, without ids, logging or routing). The admission middleware calls
:meth:`~kit.release._runtime.ReleaseRuntime.answer` for each ``POST /predict`` with the request's key
(:func:`request_key`), and hands ``/feedback``, ``/feedback_file``, ``/performance`` and ``/release``
to :func:`kit.release._http.handle`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from kit.errors import ConfigError

if TYPE_CHECKING:
    from kit.package._resolve import ServedRef
    from kit.release._runtime import ReleaseRuntime, Target, View
    from kit.serving._admission import AdmissionState, Scope

KEY_HEADER = b"x-request-key"
MODEL_HEADER = b"x-kit-model"


def enabled() -> bool:
    """``KIT_RELEASE`` (default on)."""
    raw = os.environ.get("KIT_RELEASE", "1").strip().lower()
    if raw not in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        raise ConfigError(f"KIT_RELEASE must be 0 or 1, but got {raw!r}", field="KIT_RELEASE")
    return raw in ("1", "true", "yes", "on")


def start_release(state: AdmissionState, served: ServedRef) -> ReleaseRuntime | None:
    """The worker's release runtime around the attached champion, or ``None`` when ``KIT_RELEASE=0``."""
    from kit.release._runtime import ReleaseRuntime, Target
    from kit.release._settings import ReleaseSettings

    if not enabled() or state.model is None:
        return None
    settings = ReleaseSettings.from_env()

    def loader(tag: str, role: str) -> Target:
        from kit.bundle import ModelBundle
        from kit.package import served as resolve
        from kit.serving._model import ServedModel

        ref = resolve(tag)
        # only the champion shares its drift window with the other workers (one file per worker)
        s = state.settings if role == "champion" else dataclasses.replace(state.settings, drift_dir=None, workers=1)
        return Target(ref.tag, ServedModel(ModelBundle.load(ref.path), ref.tag, s, ref.store_info()))

    def on_view(view: View) -> None:
        state.model = view.champion.model

    runtime = ReleaseRuntime(Target(served.tag, state.model), settings, loader, pinned=not served.follows,
                             on_view=on_view)
    state.release = runtime
    return runtime


def request_key(scope: Scope, payload: Any) -> str | None:
    """The request's routing key: the ``X-Request-Key`` header, else the body's ``key`` field, else ``None``."""
    for name, value in scope.get("headers", []):
        if name == KEY_HEADER:
            return bytes(value).decode("latin-1")
    key = payload.get("key") if isinstance(payload, dict) else None
    return None if key is None else str(key)


def model_header(state: AdmissionState) -> list[tuple[bytes, bytes]]:
    """``X-Kit-Model: name:version`` of the champion (the version that answers anything but a canary request)."""
    model = state.model
    return [(MODEL_HEADER, model.tag.encode())] if model is not None else []
