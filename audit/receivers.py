"""Signal receivers of the audit app: seal history rows, record access events (and lockouts)."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from . import chain
from .models import AuditAction


def seal_history_row(sender, history_instance, **kwargs) -> None:
    # SealedHistoricalRecords wrote and sealed the row together; any other writer is sealed here.
    if not getattr(history_instance, "_sealed", False):
        chain.seal_history_row(history_instance)


def _client(request) -> dict:
    if request is None:
        return {}
    return {
        "ip": request.META.get("REMOTE_ADDR", ""),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200],
        "path": request.path,
    }


def on_login(sender, request, user, **kwargs) -> None:
    chain.record_event(action=AuditAction.LOGIN, user=user, detail=_client(request))


def on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        chain.record_event(action=AuditAction.LOGOUT, user=user, detail=_client(request))


def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    # Django has already masked the password in ``credentials``; keep only the username.
    username = str(credentials.get("username", ""))[:150]
    chain.record_event(action=AuditAction.LOGIN_FAILED, username=username, detail=_client(request))


def on_locked_out(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    """django-axes locked a username out, or refused another attempt while it stays locked."""
    username = str(username or "")[:150]
    user = get_user_model().objects.filter(username=username).first() if username else None
    failures = getattr(request, "axes_failures_since_start", None)
    detail = {**_client(request), "failures": failures, "limit": settings.AXES_FAILURE_LIMIT}
    if ip_address and not detail.get("ip"):
        detail["ip"] = ip_address
    chain.record_event(
        action=AuditAction.LOCKED_OUT,
        user=user,
        username=username,
        reason="too many failed attempts to sign in or to sign electronically",
        detail=detail,
    )


def connect_access_events() -> None:
    user_logged_in.connect(on_login, dispatch_uid="audit.login")
    user_logged_out.connect(on_logout, dispatch_uid="audit.logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="audit.login_failed")
    user_locked_out.connect(on_locked_out, dispatch_uid="audit.locked_out")
