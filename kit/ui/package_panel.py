"""Package & serve panel: save to the model store, build the bento, start/stop a local server, test it.

What the panel claims is what is served: a stored tag belongs to one version of the current model
(a retrain, tune, quantize, gate or data change drops it, and the panel says so), Start server
stores the current model first when needed, and Send test request checks the served tag
(``/metadata``) and every probability or value against the notebook's within :data:`TOLERANCE`.

Every server this panel starts is stopped by Stop server, by the next start, by :meth:`PackagePanel.run`
(headless runs never leave a server behind) and at interpreter exit.
"""

from __future__ import annotations

import atexit
import html
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import ipywidgets as widgets

from kit.errors import KitError
from kit.ui._base import LAYOUT, STYLE, Panel, table_html
from kit.ui.release_widget import ReleaseControls

_SERVERS: list[Any] = []

TOLERANCE = 1e-5
"""Largest accepted difference between served and notebook probabilities (or values, relative to
their size): the same bundle on the same runtime gives the same numbers up to float32 rounding
across thread counts."""


def _stop_all() -> None:
    from kit.package import stop

    for proc in list(_SERVERS):
        stop(proc)
        _SERVERS.remove(proc)


atexit.register(_stop_all)


class PackagePanel(Panel):
    """Store the current bundle, build its bento, serve it on localhost and send it a request."""

    title = "Package & serve"
    step = "package"
    action = "Save to store"

    def __init__(self, session: Any = None) -> None:
        self.server: Any = None
        self._log: Any = None
        self.url: str | None = None
        self.served: tuple[str, int] | None = None
        self.response: Any = None
        super().__init__(session)
        self._named = self.name.value
        self.buttons = [self.button, self.build_button, self.start_button, self.request_button]
        self.widget.children = (*self.widget.children[:-2], widgets.HBox([*self.buttons[1:], self.stop_server]),
                                self.response_box, *self.widget.children[-2:])
        self.stop_button.layout.display = "none"  # steps here are short; Stop server is the stop
        self.release = ReleaseControls(self)  # champion / canary / shadow, rollback, live status (release_widget)
        self.widget.children = (*self.widget.children, self.release.widget)

    def controls(self) -> list[Any]:
        """Store name, port, build switch and the server buttons."""
        self.name = widgets.Text(value=self._default_name(), description="model name", style=STYLE, layout=LAYOUT)
        self.port = widgets.BoundedIntText(value=0, min=0, max=65535, description="port (0 = any free)",
                                           style=STYLE, layout=LAYOUT)
        self.build_bento = widgets.Checkbox(value=True, description="build a bento in Run all", indent=False)
        auto = {"width": "auto"}
        self.build_button = widgets.Button(description="Build bento", icon="cube", layout=auto)
        self.start_button = widgets.Button(description="Start server", icon="server", layout=auto)
        self.stop_server = widgets.Button(description="Stop server", icon="stop", button_style="warning",
                                          disabled=True, layout=auto)
        self.request_button = widgets.Button(description="Send test request", icon="paper-plane", layout=auto)
        self.response_box = widgets.HTML()
        self.build_button.on_click(lambda _b: self.start(lambda _c: self.build(), "building the bento"))
        self.start_button.on_click(lambda _b: self.start(lambda _c: self.start_server(), "starting the server"))
        self.request_button.on_click(lambda _b: self.start(lambda _c: self.request(), "sending a request"))
        self.stop_server.on_click(lambda _b: self.stop_serving())
        return [self.name, self.port, self.build_bento]

    def _default_name(self) -> str:
        from kit.package import default_name

        return default_name(self.session.data_config.source)

    def _follow_data(self) -> None:
        """Keep the default name in step with the data, unless the user typed their own."""
        if self.name.value == self._named:
            self.name.value = self._named = self._default_name()

    # -- the steps -----------------------------------------------------------------------------
    def save(self) -> str:
        """Put the current bundle into the BentoML model store; returns its tag.

        Raises:
            GateFailedError: When the model's gate verdict failed (the message says how to go on).
        """
        from kit import package

        bundle = self.session.require_bundle()
        tag = package.save(bundle, self.name.value.strip())
        self.session.store(tag)
        out = {k: v for k, v in self.session.outputs.get("package", {}).items() if k not in ("bento_tag",)}
        self.session.record("package", {**out, "model_tag": tag, "gate": package.gate_line(bundle),
                                        "version": self.session.version})
        return tag

    def current_tag(self) -> str:
        """The stored tag of the current model, storing it first when there is none (or it is stale)."""
        return self.session.tags.get("model") or self.save()

    def build(self) -> str:
        """Build a bento with the current model baked in; returns the bento tag."""
        from kit import package

        tag = self.current_tag()
        bento = package.build(tag)
        self.session.store(tag, bento)
        self.session.record("package", {**self.session.outputs.get("package", {}), "bento_tag": bento})
        return bento

    def start_server(self) -> str:
        """Serve the current model with ``bentoml serve`` on 127.0.0.1; returns its URL."""
        from kit import package

        self.stop_serving()
        tag = self.current_tag()
        port = int(self.port.value) or package.free_port()
        self.session.output_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.session.output_dir / "server.log").open("ab")
        self.server = package.start(tag, port=port, host="127.0.0.1", log=self._log)
        _SERVERS.append(self.server)
        self.url = f"http://127.0.0.1:{port}"
        self.served = (tag, self.session.version)
        self.session.objects["server"] = self.server
        self.stop_server.disabled = False
        self.session.record("package", {**self.session.outputs.get("package", {}), "url": self.url})
        return self.url

    def stop_serving(self) -> None:
        """Stop the server this panel started, if any."""
        from kit import package

        if self.server is not None:
            package.stop(self.server)
            if self.server in _SERVERS:
                _SERVERS.remove(self.server)
            self.server, self.served = None, None
            self.session.objects.pop("server", None)
            self._log.close()
            self._say(f"server at {self.url} stopped")
        self.stop_server.disabled = True

    def request(self, rows: list[dict[str, Any]] | None = None) -> Any:
        """POST rows to ``/predict`` and check that the server serves the notebook's current model.

        The check compares the served tag (``GET /metadata``) with the current model's stored tag,
        the labels, and every probability (or value) within :data:`TOLERANCE`.

        Raises:
            KitError: When no server runs or it answers with an error.
        """
        if self.server is None or self.url is None:
            raise KitError("no server is running: press Start server first", field="server")
        bundle = self.session.require_bundle()
        rows = rows or self.test_rows()
        self.response = self._call("/predict", {"rows": rows})
        served_tag = str(self._call("/metadata", {}).get("tag"))
        check = compare(bundle.infer(rows), self.response, served_tag, self.session.tags.get("model"))
        self.session.record("package", {**self.session.outputs.get("package", {}), "request": rows,
                                        "response": self.response, "served_tag": served_tag, **check})
        return self.response

    def test_rows(self, n: int = 3) -> list[dict[str, Any]]:
        """The first ``n`` test rows as JSON (missing values as ``null``), else the schema's example.

        An image model gets its first ``n`` test images as base64 PNG files, as a client sends them.
        """
        from kit._json import to_json

        splits = self.session.splits
        if splits is None or self.session.bundle is None:
            return self.session.require_bundle().example(2)
        if self.session.bundle.kind == "image":
            return image_rows(self.session.bundle, splits.test.X.head(n))
        X = splits.test.X[self.session.bundle.feature_names].head(n)
        rows: list[dict[str, Any]] = to_json(X.astype(object).where(X.notna(), None).to_dict("records"))
        return rows

    def _call(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise KitError(f"the server answered {exc.code} on {path}: {exc.read().decode(errors='replace')[:300]}",
                           field="server") from None

    def work(self, cancel: threading.Event) -> dict[str, Any]:
        """Save (the button) or, headless, the whole cycle: save, build, serve, request, stop."""
        self.save()
        return self.session.outputs.get("package", {})

    def run(self, work: Any = None) -> Any:
        """Save, build (if ticked), start a server, send a test request, stop the server."""
        def cycle(_cancel: threading.Event) -> dict[str, Any]:
            self.save()
            if self.build_bento.value:
                self.build()
            self.start_server()
            try:
                self.request()
            finally:
                self.stop_serving()
            return self.session.outputs["package"]

        return super().run(work or cycle)

    def _busy(self, busy: bool) -> None:
        for b in getattr(self, "buttons", [self.button]):
            b.disabled = busy
        self.stop_button.disabled = not busy

    def depends_on(self) -> tuple[str, ...]:
        """Re-render after each sub-step and whenever the current model or the data changes."""
        return ("package", "data", "train", "tune", "quantize", "explain", "gate", "bundle")

    def _changed(self, what: str) -> None:
        if what == "data":
            self._follow_data()
        super()._changed(what)

    def render(self) -> None:
        """What is stored and served, whether it is the current model, and the last test request."""
        s, out = self.session, self.session.outputs.get("package", {})
        bundle = s.bundle
        lines = []
        if bundle is not None:
            gate = bundle.gate
            lines.append("current model: " + ("<b style='color:#8a6d00'>not gated</b> (run the Gate step first, "
                                              "or it is stored as unchecked)" if gate is None else
                                              f"gate {'passed' if gate.passed else 'FAILED'} (run {gate.run})"))
        if s.tags.get("model"):
            lines.append(f"stored as <code>{html.escape(s.tags['model'])}</code>; {html.escape(str(out.get('gate')))}")
        if s.stale:
            lines.append(f"<span style='color:#8a6d00'>{html.escape(s.stale)}</span>")
        if self.served is not None:
            tag, version = self.served
            state = "the current model" if version == s.version else \
                "<b style='color:#b00020'>a previous model</b>: Start server again to serve the current one"
            lines.append(f"server at <code>{self.url}</code> serves <code>{html.escape(tag)}</code>, {state}")
        rows = [{"what": k, "value": out[k]} for k in ("model_tag", "bento_tag", "url", "served_tag",
                                                        "matches_notebook", "max_difference", "tolerance")
                if k in out]
        self.table.value = "".join(f"<p>{line}</p>" for line in lines) + table_html(rows)
        if "response" in out:
            self.response_box.value = (
                "<p>request to <code>/predict</code>:</p>" + request_html(out["request"], out["response"])
                + "<p>response:</p><pre>"
                + html.escape(json.dumps(out["response"], indent=1)[:1500]) + "</pre>")

    def summary_html(self) -> str:
        """Tags and the test request/response."""
        return str(self.table.value) + str(self.response_box.value)


def image_rows(bundle: Any, X: Any) -> list[dict[str, Any]]:
    """Records ``{"image": "<base64 PNG>"}`` of some images, the way a client sends them to an image model."""
    import base64

    from kit.preprocess import encode_png

    field = bundle.feature_names[0]
    return [{field: base64.b64encode(encode_png(p)).decode("ascii")} for p in bundle.preprocessor.pixels(X)]


IMAGE_STARTS = {"png": "iVBORw0KGgo", "jpeg": "/9j/"}
"""How base64 text of a PNG or a JPEG file starts (the file's magic bytes, encoded)."""


def request_html(rows: list[dict[str, Any]], response: Any = None) -> str:
    """The request's rows as JSON; base64 images are shortened in the text and drawn below it.

    Each image drawn is captioned with the prediction of ``response`` (the server's answer) for it.
    """
    answers = response if isinstance(response, list) else []
    pictures, shown = [], []
    for i, row in enumerate(rows):
        row = dict(row)
        for name, value in row.items():
            kind = next((k for k, start in IMAGE_STARTS.items() if isinstance(value, str) and value.startswith(start)),
                        None)
            if kind is not None:
                said = answers[i].get("prediction") if i < len(answers) and isinstance(answers[i], dict) else None
                caption = f"row {i}" + (f": {html.escape(str(said))}" if said is not None else "")
                pictures.append(f"<figure style='display:inline-block;margin:2px 6px;text-align:center'><img "
                                f"alt='row {i}' src='data:image/{kind};base64,{html.escape(value)}' "
                                f"style='width:48px;image-rendering:pixelated'/><figcaption><small>{caption}"
                                "</small></figcaption></figure>")
                row[name] = f"{value[:16]}... ({len(value)} base64 characters, drawn below)"
        shown.append(row)
    text = "<pre>" + html.escape(json.dumps(shown, indent=1)[:1500]) + "</pre>"
    return text + ("<div>" + "".join(pictures) + "</div>" if pictures else "")


def compare(local: Any, response: Any, served_tag: str, current_tag: str | None) -> dict[str, Any]:
    """Whether a server's answer is the notebook's: same tag, same labels, numbers within :data:`TOLERANCE`.

    Args:
        local: The notebook's :class:`~kit.prediction.Prediction` for the same rows.
        response: The ``/predict`` answer (one record per row).
        served_tag: The tag ``/metadata`` reports.
        current_tag: The current model's stored tag (``None`` when it has not been stored).

    Returns:
        ``matches_notebook`` and why: ``same_tag``, ``same_labels``, ``max_difference``, ``tolerance``.
    """
    import numpy as np

    records = response if isinstance(response, list) else []
    expected = local.records()
    same_labels = len(records) == len(expected) and all(
        str(a.get("prediction")) == str(b["prediction"]) for a, b in zip(records, expected, strict=False))
    diff = float("inf")
    if same_labels and records:
        if local.values is not None:
            got = np.array([float(r["prediction"]) for r in records])
            diff = float(np.max(np.abs(got - local.values) / np.maximum(1.0, np.abs(local.values))))
        else:
            names = [str(n) for n in local.label_names]
            got = np.array([[float(r.get("probabilities", {}).get(n, np.nan)) for n in names] for r in records])
            diff = float(np.nanmax(np.abs(got - local.probabilities))) if not np.isnan(got).any() else float("inf")
    same_tag = current_tag is not None and served_tag == current_tag
    return {"matches_notebook": bool(same_tag and same_labels and diff <= TOLERANCE), "same_tag": same_tag,
            "same_labels": same_labels, "max_difference": diff, "tolerance": TOLERANCE}
