"""The one error family of kit.

Every error a user can cause derives from :class:`KitError` and carries structured fields
(``field``, ``row``, ``file``) so a CLI can print one clear line and the service can answer
a 4xx whose JSON body names what was wrong.
"""

from __future__ import annotations

from typing import Any


class KitError(Exception):
    """Base class for every error kit raises on purpose.

    Args:
        message: A sentence saying what is wrong and, where it helps, how to fix it.
        field: The column, parameter or config field at fault, if any.
        row: The 0-based row index at fault, if any.
        file: The file at fault, if any.
    """

    status_code: int = 400

    def __init__(
        self, message: str, *, field: str | None = None, row: int | None = None, file: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.row = row
        self.file = file

    def to_dict(self) -> dict[str, Any]:
        """Return the error as a JSON-able dict (what the service sends back)."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        for key in ("field", "row", "file"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class ConfigError(KitError):
    """A config value or parameter is invalid."""


class DataError(KitError):
    """A dataset, file or column cannot be used as given."""


class SchemaError(DataError):
    """Input rows do not match the model's schema (missing, extra or wrongly typed fields)."""

    status_code = 422


class NotFittedError(KitError):
    """An estimator was used before it was fitted."""


class IntegrityError(KitError):
    """A stored artifact is missing, changed or corrupt."""


class DependencyError(KitError):
    """An optional dependency needed by a step is not installed."""


class BuilderError(ConfigError):
    """A network builder is unknown, cannot be imported, or breaks its contract (names the builder)."""


class CodeChangedError(BuilderError):
    """A builder's source differs from the one a bundle was trained with (``allow_changed_code=True`` overrides)."""


def require(module: str, extra: str) -> Any:
    """Import an optional heavy dependency, or raise with an install hint.

    Args:
        module: The module to import, e.g. ``"torch"``.
        extra: The ``kit`` extra that provides it, e.g. ``"train"``.

    Returns:
        The imported module.

    Raises:
        DependencyError: If the module is not installed.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"{module} is required for this step but is not installed; run: pip install 'kit[{extra}]'",
            field=module,
        ) from exc
