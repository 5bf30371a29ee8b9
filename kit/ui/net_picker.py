"""The network picker: a builder (built-in, registered or an import path) and its parameters as fields.

:class:`NetPicker` is a widget the Train panel embeds. Its dropdown lists :func:`kit.nets.names`
for the kind of data loaded (tables: ``mlp``, ``resmlp``, ``ft_transformer``; images: ``cnn``; then
builders registered in this kernel that take that kind or do not say) and accepts a typed import
path (``my_nets:build``); choosing one shows a field per parameter of the builder's signature, typed
by its default (number, text, checkbox; lists as ``128,64`` or JSON; a ``None`` default as an empty
field). :meth:`NetPicker.apply`
turns the fields into a :class:`~kit.config.TrainConfig`: a value the config already holds keeps
its place (field or ``net_params``), so a tuned config shown in the picker comes back exactly;
other values equal to the builder's default are left out, the shorthand fields (``hidden``,
``dropout``, ``activation``, ``norm``) go to their config fields and the rest to ``net_params``.
"""

from __future__ import annotations

import html
import inspect
import json
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from kit.config import MLP_FIELDS, TrainConfig
from kit.errors import ConfigError, KitError

FIELD_STYLE = {"description_width": "140px"}
FIELD_LAYOUT = {"width": "420px"}


def _widget(name: str, default: Any) -> Any:
    """A field for a parameter, chosen by the type of its default."""
    if isinstance(default, bool):
        return widgets.Checkbox(description=name, style=FIELD_STYLE, layout=FIELD_LAYOUT, indent=False)
    if isinstance(default, int):
        return widgets.IntText(description=name, style=FIELD_STYLE, layout=FIELD_LAYOUT)
    if isinstance(default, float):
        return widgets.FloatText(description=name, style=FIELD_STYLE, layout=FIELD_LAYOUT)
    placeholder = ("e.g. 128,64" if isinstance(default, list | tuple) else
                   "empty: None (the builder decides)" if default is None else "a JSON value")
    return widgets.Text(description=name, placeholder=placeholder, style=FIELD_STYLE, layout=FIELD_LAYOUT)


def _show(default: Any, value: Any) -> Any:
    """A parameter value as its field holds it."""
    if value is None and default is None:
        return ""  # the builder decides (e.g. cnn's blocks, sized from the image)
    if isinstance(default, bool | int | float) and not isinstance(value, list | dict):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, str) and (isinstance(default, str) or default is inspect.Parameter.empty):
        return value
    return "" if value is inspect.Parameter.empty else json.dumps(value)


def _parse(name: str, default: Any, value: Any) -> Any:
    """A field's value as the parameter value (lists from ``a,b`` or JSON; text stays text).

    Raises:
        ConfigError: Naming the parameter, when a list or JSON value does not parse.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if isinstance(default, list | tuple):
        try:
            items = (json.loads(text) if text.startswith("[")
                     else [int(v) for v in text.replace(" ", "").split(",") if v])
        except ValueError:
            raise ConfigError(f"{name} must be integers separated by commas (or a JSON list), but got {value!r}",
                              field=name) from None
        if not isinstance(items, list):
            raise ConfigError(f"{name} must be a list, but got {value!r}", field=name)
        return items
    if isinstance(default, str):
        return text
    if default is None and not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word is text


class NetPicker:
    """A builder chooser with one field per builder parameter.

    Args:
        config: The config to show.
        kind: ``table`` or ``image``: which builders the dropdown offers.

    Attributes:
        choice: The combo box: a known name or a typed ``module:function``.
        fields: The current builder's parameter fields, by parameter name.
        box: The widget to display.
    """

    def __init__(self, config: TrainConfig | None = None, kind: str = "table") -> None:
        self.kind = kind
        self.choice = widgets.Combobox(description="network", ensure_option=False, style=FIELD_STYLE,
                                       layout=FIELD_LAYOUT)
        self.refresh_button = widgets.Button(description="↻", tooltip="list builders registered since",
                                             layout={"width": "40px"})
        self.status = widgets.HTML()
        self.fields: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {}
        self.listeners: list[Callable[[], None]] = []
        self.fields_box = widgets.VBox()
        self.box = widgets.VBox([widgets.HBox([self.choice, self.refresh_button]), self.fields_box, self.status])
        self.refresh_button.on_click(lambda _: self.refresh())
        self.choice.observe(self._picked, names="value")
        self.show(config or TrainConfig())

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the network or one of its parameter fields changes."""
        self.listeners.append(callback)

    # -- what the Train panel calls ------------------------------------------------------------
    def refresh(self) -> None:
        """List the built-ins and every builder registered in this kernel so far that take :attr:`kind`."""
        from kit import nets

        self.choice.options = nets.names(self.kind)
        zoo = [n for n in self.choice.options if n in nets.BUILTINS]
        self.choice.placeholder = f"{', '.join(zoo)} or module:function"

    def show(self, config: TrainConfig, kind: str | None = None) -> None:
        """Show ``config``'s network and its parameter values (the builder's defaults elsewhere).

        Args:
            config: The config.
            kind: The kind of data now loaded (``table`` or ``image``); ``None``: unchanged.
        """
        self.kind = kind or self.kind
        self.refresh()
        self.choice.value = config.net
        self._chosen(config.net, config.net_kwargs())

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the picked network and the parameters whose fields differ from the defaults.

        Raises:
            ConfigError: On an unknown builder or a field that does not parse (naming it).
        """
        from kit import nets

        name = self.choice.value.strip()
        builder = nets.resolve(name)
        if builder.ref != self._shown:
            self._chosen(name)
        values = {p: _parse(p, self.defaults[p], w.value) for p, w in self.fields.items()
                  if not (self.defaults[p] is inspect.Parameter.empty and w.value == "")}
        same = name == config.net
        given = config.net_kwargs() if same else {}
        # Parameters the picker has no field for (a builder taking **params) stay as the config holds them.
        params = {p: v for p, v in config.net_params.items() if p not in self.fields} if same else {}
        shorthand: dict[str, Any] = {f: None for f in MLP_FIELDS}
        for p, v in values.items():
            if p in given and not _differs(v, given[p]):
                v = given[p]  # the config's own value, where it already was (a tuned config comes back exactly)
            elif not _differs(v, self.defaults[p]):
                continue
            if p in MLP_FIELDS and not (same and p in config.net_params):
                shorthand[p] = v
            else:
                params[p] = v
        return config.replace(net=name, net_params=params, **shorthand)

    # -- internals -----------------------------------------------------------------------------
    _shown: str | None = None

    def _chosen(self, name: str, values: dict[str, Any] | None = None) -> None:
        from kit import nets

        name = (name or "").strip()
        if not name or (name not in nets.names() and ":" not in name):
            return  # still typing (a known builder of another kind is shown: training names the kind it takes)
        try:
            builder = nets.resolve(name)
            params = builder.parameters()
        except KitError as exc:
            self.status.value = f"<span style='color:#b00020'>{html.escape(exc.message)}</span>"
            self.fields, self.defaults, self._shown = {}, {}, None
            self.fields_box.children = []
            return
        self.defaults = {p: (list(q.default) if isinstance(q.default, tuple) else q.default)
                         for p, q in params.items()}
        self.fields = {p: _widget(p, d) for p, d in self.defaults.items()}
        for p, widget in self.fields.items():
            shown = (values or {}).get(p, self.defaults[p])
            widget.value = _show(self.defaults[p], shown)
        self.fields_box.children = list(self.fields.values())
        for widget in self.fields.values():
            widget.observe(lambda _change: self._notify(), names="value")
        doc = (inspect.getdoc(builder.fn) or "").split("\n\n")[0].replace("``", "")
        self.status.value = f"<small><code>{html.escape(builder.target)}</code>: {html.escape(doc)}</small>"
        self._shown = builder.ref

    def _picked(self, change: dict[str, Any]) -> None:
        self._chosen(change["new"])
        self._notify()

    def _notify(self) -> None:
        for callback in self.listeners:
            callback()


def _differs(value: Any, default: Any) -> bool:
    if default is inspect.Parameter.empty:
        return True
    plain = list(default) if isinstance(default, tuple) else default
    return bool(value != plain)
