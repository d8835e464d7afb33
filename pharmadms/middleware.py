"""Access security at the edge: refused requests are recorded (a flood of them counted), a lockout
is answered clearly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from audit import chain
from audit.models import AuditAction
from audit.services import lockout_message

logger = logging.getLogger(__name__)

DENIED_STATUSES = frozenset({401, 403})


def _actor(request: HttpRequest):
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


class DeniedRequestAuditMiddleware:
    """Seal every 401 and 403 answer into the audit chain as a ``denied`` event.

    Written after the response, in a transaction of its own, so it never changes what the
    client gets: should the audit write fail, the failure is logged and the response stands.

    Each client (the user, else its address: :func:`client_address`) has
    ``AUDIT_DENIED_PER_MINUTE`` entries a minute, counted in the cache. The first refusal beyond
    them is sealed too, with ``throttled`` set; the rest of that minute's are counted, not
    sealed, and the client's next sealed refusal (the next minute's first, or later) names how
    many went unsealed since its last (``unsealed_before``). Every entry takes the chain's
    head, which every regulated write waits for: a flood of refused requests must not hold
    them all up.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code in DENIED_STATUSES:
            self._record(request, response)
        return response

    def _record(self, request: HttpRequest, response: HttpResponse) -> None:
        try:
            user = _actor(request)
            address = client_address(request)
            allowance = _allowance(f"user:{user.pk}" if user is not None else f"ip:{address}")
            if allowance is None:
                return
            detail = {
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ip": address,
                **allowance,
            }
            data = getattr(response, "data", None)  # a DRF answer names its refusal
            if isinstance(data, dict) and isinstance(data.get("code"), str):
                detail["code"] = data["code"]
            with transaction.atomic():
                chain.record_event(action=AuditAction.DENIED, user=user, detail=detail)
        except Exception:  # the audit must not turn a refusal into a server error
            logger.exception(
                "could not record a denied request (%s %s)", request.method, request.path
            )


# How long a client's count of refusals not sealed one by one waits for its next sealed one.
_UNSEALED_KEPT_SECONDS = 7 * 24 * 3600


def _minute() -> int:
    return int(time.time() // 60)


def client_address(request: HttpRequest) -> str:
    """The client's address: behind the proxy (``BEHIND_TLS_PROXY``), the one the proxy appends
    to X-Forwarded-For (what the client itself sent there is not trusted); else the
    connection's. DRF's throttles count by the same address (``NUM_PROXIES``)."""
    if settings.BEHIND_TLS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR", "")


def _allowance(client: str) -> dict[str, int | bool] | None:
    """Whether this refusal of ``client`` is sealed: None if not, else what its entry adds
    (``throttled`` on the first beyond the minute's allowance; ``unsealed_before``: how many of
    the client's refusals went unsealed since its last sealed one)."""
    limit = settings.AUDIT_DENIED_PER_MINUTE
    key = f"audit:denied:{client}:{_minute()}"
    unsealed_key = f"audit:denied-unsealed:{client}"
    try:
        count = _incr(key, timeout=120)
        if count > limit + 1:
            _incr(unsealed_key, timeout=_UNSEALED_KEPT_SECONDS)
            return None
        unsealed = cache.get(unsealed_key, 0)
        if unsealed:
            cache.decr(unsealed_key, unsealed)  # what was counted meanwhile waits its turn
    except Exception:  # no cache to count in: seal every refusal rather than none
        logger.exception("could not count refused requests; sealing each")
        return {}
    extra: dict[str, int | bool] = {}
    if unsealed:
        extra["unsealed_before"] = unsealed
    if count == limit + 1:
        logger.warning(
            "more than %s refused requests this minute from %s: the rest are counted, not sealed",
            limit,
            client,
        )
        extra["throttled"] = True
    return extra


def _incr(key: str, *, timeout: int) -> int:
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # gone between add and incr (expired, evicted): count afresh
        cache.set(key, 1, timeout=timeout)
        return 1


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials=None
) -> HttpResponse:
    """The answer to an authentication refused because the account is locked.

    django-axes calls this (``AXES_LOCKOUT_CALLABLE``) for a request on which it saw the
    lockout. A view that already answered it itself (the lot page's signing form answers 403
    with the lot still on screen) keeps its answer; the API answers ``account_locked`` in its
    own error format; a sign-in page shows the sign-in form with the lockout message.
    """
    if original_response is not None and original_response.status_code == 403:
        return original_response
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "account_locked", "detail": lockout_message()}, status=403)
    form = AuthenticationForm(request, data=request.POST or None)
    context = {
        "form": form,
        "locked_out": True,
        "lockout_message": lockout_message(),
        "next": request.POST.get("next", request.GET.get("next", "")),
    }
    return render(request, "registration/login.html", context, status=403)
