"""Signal receivers of the audit app: seal history rows, record access events."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from . import chain
from .models import AuditAction


def seal_history_row(sender, history_instance, **kwargs) -> None:
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


def connect_access_events() -> None:
    user_logged_in.connect(on_login, dispatch_uid="audit.login")
    user_logged_out.connect(on_logout, dispatch_uid="audit.logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="audit.login_failed")
