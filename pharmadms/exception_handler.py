"""The API's one exception handler: every refusal as ``{"code", "detail"}`` with a 4xx status.

DRF's own errors and Django's validation errors are rendered in the same shape as the
services' ApplicationError, so a client reads one format.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .exceptions import ApplicationError, public_code


def _first_message(detail: Any) -> str:
    """The first human message inside DRF's nested error structure."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            message = _first_message(value)
            return message if key in ("non_field_errors", "detail") else f"{key}: {message}"
    if isinstance(detail, list | tuple) and detail:
        return _first_message(detail[0])
    return str(detail)


def _first_code(codes: Any) -> str:
    if isinstance(codes, dict):
        return _first_code(next(iter(codes.values()), "invalid"))
    if isinstance(codes, list | tuple) and codes:
        return _first_code(codes[0])
    return str(codes) if codes else "invalid"


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render every refusal as ``{"code", "detail"}`` (plus field ``errors`` when there are)."""
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, drf_exceptions.APIException):
        return response
    body: dict[str, Any] = {
        "code": public_code(_first_code(exc.get_codes())),
        "detail": _first_message(exc.detail),
    }
    if isinstance(exc, drf_exceptions.ValidationError):
        body["errors"] = exc.detail
    response.data = body
    return response
