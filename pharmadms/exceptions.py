"""One family of refusals for every service.

A service raises an ApplicationError subclass carrying a machine-readable ``code``; the API
(pharmadms.exception_handler) answers it as ``{"code": ..., "detail": ...}`` with a 4xx status.
This module imports nothing of DRF, so models and services can use it freely.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A refusal by the application: bad input or a broken business rule."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail, **self.extra}


class InvalidInput(ApplicationError):
    """The request is malformed or a value is not acceptable (400)."""


class RuleViolation(ApplicationError):
    """The request is well-formed but a business rule forbids it (409)."""

    status_code = 409
    default_code = "rule_violation"


class NotPermitted(ApplicationError):
    """The acting user may not do this (403)."""

    status_code = 403
    default_code = "permission_denied"


class NotFound(ApplicationError):
    """The object does not exist or is not visible to the acting user (404)."""

    status_code = 404
    default_code = "not_found"


def public_code(code: str | None) -> str:
    """The code a client sees for a validator's code (Django says "unique", we say "duplicate")."""
    return {"unique": "duplicate", None: "invalid", "": "invalid"}.get(code, code)
