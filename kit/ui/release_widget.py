"""Release controls of the Package panel: promote a version as champion, canary or shadow; roll back; live status.

The same calls as ``kit promote NAME:VERSION [--canary P | --shadow]``, ``kit rollback NAME`` and
``kit release status NAME`` (:func:`kit.package.promote`, :func:`kit.package.rollback`,
:func:`kit.release.status`); a running server picks each change up within ``KIT_RELEASE_POLL_S``.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as widgets

from kit.ui._base import LAYOUT, STYLE, error_text

MODES = ("champion", "canary", "shadow")


class ReleaseControls:
    """Version picker, mode, canary share, reason, Promote / Roll back / Status buttons and the status text.

    Args:
        panel: The Package panel (its model name box and session give the name and the stored tag).
    """

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        self.version = widgets.Dropdown(options=[], description="version", style=STYLE, layout=LAYOUT)
        self.mode = widgets.ToggleButtons(options=MODES, value="champion", description="release as", style=STYLE)
        self.percent = widgets.BoundedFloatText(value=10.0, min=0.1, max=100.0, step=1.0,
                                                description="canary share %", style=STYLE, layout=LAYOUT)
        self.reason = widgets.Text(value="", placeholder="why (recorded in the promotion log)",
                                   description="reason", style=STYLE, layout=LAYOUT)
        self.promote_button = widgets.Button(description="Promote", icon="arrow-up", button_style="success")
        self.rollback_button = widgets.Button(description="Roll back", icon="undo", button_style="danger")
        self.status_button = widgets.Button(description="Release status", icon="heartbeat")
        self.output = widgets.HTML()
        self.last: Any = None
        self.promote_button.on_click(lambda _b: self._background(self.promote))
        self.rollback_button.on_click(lambda _b: self._background(self.rollback))
        self.status_button.on_click(lambda _b: self._background(self.status))
        self.mode.observe(lambda _c: self._show_percent(), names="value")
        self._show_percent()
        self.widget = widgets.VBox([widgets.HTML("<b>Release</b>: champion, canary or shadow; roll back"),
                                    self.version, self.mode, self.percent, self.reason,
                                    widgets.HBox([self.promote_button, self.rollback_button, self.status_button]),
                                    self.output])

    @property
    def name(self) -> str:
        """The model name of the panel."""
        return str(self.panel.name.value).strip()

    def versions(self) -> list[str]:
        """Stored versions of the name (newest first), refreshed into the dropdown."""
        from kit.package import models

        tags = [row["tag"] for row in models(self.name)] if self.name else []
        current = self.panel.session.tags.get("model")
        self.version.options = tags
        if tags:
            self.version.value = current if current in tags else tags[0]
        return tags

    def promote(self, tag: str | None = None, mode: str | None = None, percent: float | None = None,
                reason: str | None = None) -> dict[str, Any]:
        """Promote ``tag`` (default: the picked version) as champion, canary or shadow; returns the log entry."""
        from kit import package
        from kit.errors import ConfigError

        if tag is None:
            self.versions()
        tag = tag or self.version.value or self.panel.session.tags.get("model")
        mode = mode or self.mode.value
        why = (reason if reason is not None else self.reason.value).strip()
        if not tag:
            raise ConfigError("no stored version to promote: save the model first", field="version")
        if not why:
            raise ConfigError("give a reason: it is recorded in the promotion log", field="reason")
        entry = package.promote(tag, why, canary=(percent or float(self.percent.value)) if mode == "canary" else None,
                                shadow=mode == "shadow")
        self.last = entry
        self._say(_entry_text(entry))
        return entry

    def rollback(self, reason: str | None = None) -> dict[str, Any]:
        """End the trial, else re-promote the previous champion; returns the log entry."""
        from kit import package

        entry = package.rollback(self.name, (reason if reason is not None else self.reason.value).strip() or "rollback")
        self.last = entry
        self._say(_entry_text(entry))
        return entry

    def status(self, window: str = "24h") -> dict[str, Any]:
        """Champion vs challenger on live data with the recommendation (shown as text)."""
        from kit.release import status
        from kit.release._report import format_status, parse_window

        report = status(self.name, window_s=parse_window(window))
        self.last = report
        self.output.value = f"<pre>{html.escape(format_status(report))}</pre>"
        return report

    def _show_percent(self) -> None:
        self.percent.layout.display = "" if self.mode.value == "canary" else "none"

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#1b5e20"
        self.output.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _background(self, action: Any) -> None:
        def run() -> None:
            try:
                action()
            except Exception as exc:  # shown in the widget, never lost in a thread
                self._say(error_text(exc), error=True)

        threading.Thread(target=run, daemon=True, name="kit-ui-release").start()


def _entry_text(entry: dict[str, Any]) -> str:
    event = entry["event"]
    if event == "promote":
        return f"{entry['tag']} is the champion now (was {entry['previous'] or 'none'}); revision {entry['revision']}"
    if event == "rollback":
        what = "trial ended" if entry.get("what") == "challenger" else "rolled back"
        return f"{what}: {entry['from']} off, serving {entry['tag']}; revision {entry['revision']}"
    share = f"{entry['percent']:g}% of requests" if event == "canary" else "in shadow"
    return f"{entry['tag']} on trial beside {entry['champion']}, {share}; revision {entry['revision']}"
