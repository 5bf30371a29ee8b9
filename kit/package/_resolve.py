"""One answer to "which model is served": resolve a tag once and hand tag, path, labels and promotion state on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.package._promotions import promoted
from kit.package._store import _store_model
from kit.release._state import names, read


@dataclass(frozen=True)
class ServedRef:
    """A resolved model-store entry: what a server loads and what it reports about itself.

    Attributes:
        tag: The full tag, ``name:version``.
        path: The bundle directory inside the store.
        labels: The store entry's labels (task, dataset, runtime, variant, gate ...).
        metadata: The store entry's metadata (metrics, configs, quantization, lineage ...).
        promoted: The promotion stack of the name, the served version last.
        source: How the tag was chosen: ``given``, ``KIT_MODEL_TAG``, ``bento argument`` or ``latest promoted``.
        follows: The tag was asked for by name only (or not at all): a server follows the name's
            promotions; a full ``name:version`` pins the champion.
    """

    tag: str
    path: Path
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    promoted: list[str] = field(default_factory=list)
    source: str = "given"
    follows: bool = False

    @property
    def name(self) -> str:
        """The model name (before the colon)."""
        return self.tag.split(":", 1)[0]

    @property
    def promotion(self) -> str:
        """``serving`` (the top of the stack), ``promoted before``, or empty when never promoted."""
        if self.promoted and self.promoted[-1] == self.tag:
            return "serving"
        return "promoted before" if self.tag in self.promoted else ""

    def store_info(self) -> dict[str, Any]:
        """What a server reports about its store entry (``/metadata``'s ``store``)."""
        return {"labels": dict(self.labels), "promoted": list(self.promoted), "promotion": self.promotion,
                "source": self.source, "follows_promotions": self.follows, "forced": self.metadata.get("force")}


def resolve(tag: str | None = None) -> str:
    """Turn ``None``, a name or a tag into a full ``name:version`` tag.

    ``None`` means the most recently promoted model; a bare name means its current promoted
    version, or its latest stored one if none was promoted.
    """
    if tag is None:
        known = names()
        if not known:
            raise KitError("no model has been promoted yet; pass a tag, set KIT_MODEL_TAG, or run "
                           "kit promote NAME:VERSION", field="tag")
        stack = promoted(known[-1])
        if not stack:
            raise KitError(f"{known[-1]!r} has no champion: promote a version first", field="tag")
        return stack[-1]
    if ":" not in tag:
        stack = promoted(tag)
        if stack:
            return stack[-1]
    return str(_store_model(tag).tag)


def served(tag: str | None = None, arguments: Any = None) -> ServedRef:
    """Resolve the model a server loads, once.

    Order: ``tag`` when given; else env ``KIT_MODEL_TAG``; else the bento argument ``model_tag``
    (baked in by :func:`~kit.package.build`); else the latest promoted version. A bare name or
    ``name:latest`` resolves to the name's promoted (or newest) version, and a server started that
    way follows the name's promotions (``follows``); a full ``name:version`` pins it.

    Raises:
        KitError: If nothing is given and nothing was promoted, or the tag is not in the store.
    """
    source = "given"
    if tag is None:
        env, argument = os.environ.get("KIT_MODEL_TAG") or None, getattr(arguments, "model_tag", None) or None
        tag, source = (env, "KIT_MODEL_TAG") if env else (argument, "bento argument")
        if tag is None:
            source = "latest promoted"
    if tag is not None and tag.endswith(":latest"):
        tag = tag.split(":", 1)[0]
    model = _store_model(resolve(tag))
    full = str(model.tag)
    return ServedRef(tag=full, path=Path(model.path), labels=dict(model.info.labels),
                     metadata=dict(model.info.metadata), promoted=promoted(model.tag.name), source=source,
                     follows=tag is None or ":" not in tag)


def models(name: str | None = None) -> list[dict[str, Any]]:
    """Stored kit models (newest first) with labels, primary test metric and promotion state."""
    from kit.errors import require

    bentoml = require("bentoml", "serve")
    rows: list[dict[str, Any]] = []
    releases: dict[str, Any] = {}
    # newest first by the full creation time (two saves within one second keep their order)
    for model in sorted(bentoml.models.list(name), key=lambda m: m.info.creation_time, reverse=True):
        info = model.info
        if info.labels.get("kit") != "bundle":
            continue
        release = releases.get(model.tag.name) or releases.setdefault(model.tag.name, read(model.tag.name))
        tag = str(model.tag)
        state = ("serving" if release.champion == tag else
                 (f"canary {release.percent:g}%" if release.mode == "canary" else "shadow")
                 if release.challenger == tag else ("promoted before" if tag in release.champions else ""))
        primary = info.metadata.get("primary_metric")
        test = info.metadata.get("metrics", {}).get("test", {})
        rows.append({"tag": tag, "created": info.creation_time.isoformat(timespec="seconds"),
                     **{k: info.labels.get(k, "") for k in ("task", "dataset", "runtime", "variant", "gate")},
                     "metric": f"{primary}={test[primary]:.4f}" if primary in test else "",
                     "promotion": state})
    return rows
