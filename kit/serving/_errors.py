"""The errors the service answers with a 4xx (each a :class:`~kit.errors.KitError` with its status code)."""

from __future__ import annotations

from kit.errors import KitError


class BadRequestError(KitError):
    """The request body is not what the endpoint reads (not JSON, wrong shape)."""


class UnauthorizedError(KitError):
    """Missing or wrong bearer token."""

    status_code = 401


class NotAvailableError(KitError):
    """The endpoint needs something this model was packaged without (e.g. a SHAP background)."""

    status_code = 409


class PayloadTooLargeError(KitError):
    """The request body is larger than the configured limit."""

    status_code = 413


class MethodNotAllowedError(KitError):
    """The endpoint takes another HTTP method (``GET /predict``)."""

    status_code = 405
