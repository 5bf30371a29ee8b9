"""Package & serve panel: save to the model store, build the bento, start/stop a local server, test it.

Every server this panel starts is stopped by Stop server, by the next start, by :meth:`PackagePanel.run`
(headless runs never leave a server behind) and at interpreter exit.
"""

from __future__ import annotations

import atexit
import html
import json
import re
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import ipywidgets as widgets

from kit.errors import KitError
from kit.ui._base import LAYOUT, STYLE, Panel, table_html
from kit.ui.release_widget import ReleaseControls

_SERVERS: list[Any] = []


def _stop_all() -> None:
    from kit.package import stop

    for proc in list(_SERVERS):
        stop(proc)
        _SERVERS.remove(proc)


atexit.register(_stop_all)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PackagePanel(Panel):
    """Store the current bundle, build its bento, serve it on localhost and send it a request."""

    title = "Package & serve"
    step = "package"
    action = "Save to store"

    def __init__(self, session: Any = None) -> None:
        self.server: Any = None
        self._log: Any = None
        self.url: str | None = None
        self.response: Any = None
        super().__init__(session)
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
        self.build_button = widgets.Button(description="Build bento", icon="cube")
        self.start_button = widgets.Button(description="Start server", icon="server")
        self.stop_server = widgets.Button(description="Stop server", icon="stop", button_style="warning",
                                          disabled=True)
        self.request_button = widgets.Button(description="Send test request", icon="paper-plane")
        self.response_box = widgets.HTML()
        self.build_button.on_click(lambda _b: self.start(lambda _c: self.build(), "building the bento"))
        self.start_button.on_click(lambda _b: self.start(lambda _c: self.start_server(), "starting the server"))
        self.request_button.on_click(lambda _b: self.start(lambda _c: self.request(), "sending a request"))
        self.stop_server.on_click(lambda _b: self.stop_serving())
        return [self.name, self.port, self.build_bento]

    def _default_name(self) -> str:
        source = self.session.data_config.source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        return "kit-" + (re.sub(r"[^a-z0-9._-]+", "-", source.lower()).strip("-._") or "model")

    # -- the steps -----------------------------------------------------------------------------
    def save(self) -> str:
        """Put the current bundle into the BentoML model store; returns its tag."""
        from kit import package

        tag = package.save(self.session.require_bundle(), self.name.value.strip())
        self.session.tags["model"] = tag
        self.session.record("package", {**self.session.outputs.get("package", {}), "model_tag": tag})
        return tag

    def build(self) -> str:
        """Build a bento with the stored model baked in; returns the bento tag."""
        from kit import package

        tag = self.session.tags.get("model") or self.save()
        bento = package.build(tag)
        self.session.tags["bento"] = bento
        self.session.record("package", {**self.session.outputs.get("package", {}), "bento_tag": bento})
        return bento

    def start_server(self) -> str:
        """Serve the stored model with ``bentoml serve`` on 127.0.0.1; returns its URL."""
        from kit import package

        self.stop_serving()
        tag = self.session.tags.get("model") or self.save()
        port = int(self.port.value) or free_port()
        self.session.output_dir.mkdir(parents=True, exist_ok=True)
        self._log = (self.session.output_dir / "server.log").open("ab")
        self.server = package.start(tag, port=port, host="127.0.0.1", log=self._log)
        _SERVERS.append(self.server)
        self.url = f"http://127.0.0.1:{port}"
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
            self.server = None
            self.session.objects.pop("server", None)
            self._log.close()
            self._say(f"server at {self.url} stopped")
        self.stop_server.disabled = True

    def request(self, rows: list[dict[str, Any]] | None = None) -> Any:
        """POST example rows to ``/predict`` and compare the answer with the notebook's predictions.

        Raises:
            KitError: When no server runs or it answers with an error.
        """
        if self.server is None or self.url is None:
            raise KitError("no server is running: press Start server first", field="server")
        bundle = self.session.require_bundle()
        rows = rows or bundle.example(2)
        body = json.dumps({"rows": rows}).encode()
        req = urllib.request.Request(f"{self.url}/predict", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                self.response = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise KitError(f"the server answered {exc.code}: {exc.read().decode(errors='replace')[:300]}",
                           field="server") from None
        local = [str(p) for p in bundle.predict(rows)]
        served = [str(r.get("prediction")) for r in self.response] if isinstance(self.response, list) else []
        same = served == local
        self.session.record("package", {**self.session.outputs.get("package", {}), "request": rows,
                                        "response": self.response, "matches_notebook": same})
        return self.response

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
        """Re-render after each sub-step."""
        return ("package",)

    def render(self) -> None:
        """Tags, URL, and the last request and response."""
        out = self.session.outputs.get("package", {})
        rows = [{"what": k, "value": out[k]} for k in ("model_tag", "bento_tag", "url", "matches_notebook")
                if k in out]
        self.table.value = table_html(rows)
        if "response" in out:
            self.response_box.value = (
                "<p>request to <code>/predict</code>:</p><pre>"
                + html.escape(json.dumps(out["request"], indent=1)[:1500]) + "</pre><p>response:</p><pre>"
                + html.escape(json.dumps(out["response"], indent=1)[:1500]) + "</pre>")

    def summary_html(self) -> str:
        """Tags and the test request/response."""
        return str(self.table.value) + str(self.response_box.value)
