"""Webhook endpoints (register, change, ping), their signed deliveries, and event e-mail.

Business events come from ``orders.signals.business_event`` after the order's transaction has
committed (``receivers.py``). :func:`business_event_dispatch` turns one event into a delivery row
per subscribed endpoint and hands each to Celery, and an e-mail task per partner; nothing here
can refuse or undo the order that caused the event.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Iterable
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from audit.history import check_editable, create_with_reason, update_with_reason
from orders.signals import EVENTS, EVENTS_WITH_OWN_LETTER
from partners.models import Partner, Role, User
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from pharmadms.permissions import require_role

from .models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

PING_EVENT = "ping"
ENDPOINT_FIELDS = {"url", "events", "is_active"}
SIGNATURE_HEADER = "X-PharmaDMS-Signature"
USER_AGENT = "PharmaDMS-Webhooks/1"


# --- endpoints -------------------------------------------------------------------------------


def _require_partner_admin(actor: User, partner: Partner) -> None:
    """A partner's admin manages its own endpoints; platform superusers manage any."""
    if actor.is_superuser:
        return
    require_role(actor, Role.ADMIN)
    if actor.partner_id != partner.pk:
        raise NotPermitted("you can only manage your own organisation's webhooks")


# Host names that never leave the machine or the site's own network.
_LOCAL_NAMES = (".localhost", ".local", ".internal", ".home.arpa")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _private_address(address: str) -> bool:
    """Whether ``address`` is not on the public internet (loopback, private, link-local such as
    a cloud's metadata service, reserved, multicast)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _names_a_private_host(host: str) -> bool:
    try:
        return _private_address(host)
    except ValueError:  # a name: private only by its form here; its addresses are checked later
        return host.lower().endswith(_LOCAL_NAMES) or _is_loopback(host)


def webhook_url_check(url: str) -> str:
    """An absolute https:// URL without credentials, to a public host (http:// only with DEBUG,
    or on loopback where private hosts are allowed: WEBHOOK_ALLOW_PRIVATE_HOSTS)."""
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InvalidInput("a webhook URL is an absolute https:// URL", code="invalid_url")
    if parts.username or parts.password:
        raise InvalidInput(
            "a webhook URL carries no credentials: the signature authenticates us",
            code="invalid_url",
        )
    private_allowed = settings.WEBHOOK_ALLOW_PRIVATE_HOSTS
    if not private_allowed and _names_a_private_host(parts.hostname):
        raise InvalidInput(
            f"{parts.hostname} is not a public host: events are sent only to the internet",
            code="private_host",
        )
    if parts.scheme == "http" and not (
        settings.DEBUG or (private_allowed and _is_loopback(parts.hostname))
    ):
        raise InvalidInput("a webhook URL must use https://", code="https_required")
    return url


def webhook_events_check(events: Any) -> list[str]:
    """A non-empty list of known business events, without repeats, in the order of EVENTS."""
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidInput("events: a non-empty list of event names", code="invalid_events")
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidInput(
            f"unknown events: {', '.join(unknown)} (known: {', '.join(EVENTS)})",
            code="unknown_event",
        )
    return [event for event in EVENTS if event in events]


def webhook_secret_new() -> str:
    """256 random bits, URL-safe: the key both sides use for the HMAC."""
    return secrets.token_urlsafe(32)


@transaction.atomic
def webhook_endpoint_create(
    *,
    partner: Partner,
    actor: User,
    reason: str,
    url: str,
    events: list[str],
    is_active: bool = True,
) -> WebhookEndpoint:
    """Register ``url`` for ``events`` of ``partner``; the caller shows the new secret once."""
    _require_partner_admin(actor, partner)
    return create_with_reason(
        WebhookEndpoint,
        actor=actor,
        reason=reason,
        partner=partner,
        url=webhook_url_check(url),
        events=webhook_events_check(events),
        is_active=is_active,
        secret=webhook_secret_new(),
    )


@transaction.atomic
def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, actor: User, reason: str, **changes: Any
) -> WebhookEndpoint:
    """Change the URL, the events or the active flag (the secret never changes here)."""
    _require_partner_admin(actor, endpoint.partner)
    check_editable(changes, ENDPOINT_FIELDS)
    if "url" in changes:
        changes["url"] = webhook_url_check(changes["url"])
    if "events" in changes:
        changes["events"] = webhook_events_check(changes["events"])
    return update_with_reason(
        endpoint, actor=actor, reason=reason, changes=changes, editable=ENDPOINT_FIELDS
    )


@transaction.atomic
def webhook_endpoint_ping(*, endpoint: WebhookEndpoint, actor: User) -> WebhookDelivery:
    """Send a ``ping`` event to one endpoint, whatever it subscribed to, to test the receiver."""
    _require_partner_admin(actor, endpoint.partner)
    if not endpoint.is_active:
        raise RuleViolation("the endpoint is inactive: activate it first", code="webhook_inactive")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event=PING_EVENT,
        payload={"endpoint": endpoint.pk, "partner": endpoint.partner_id, "by": actor.username},
    )
    _deliver_after_commit(delivery.pk)
    return delivery


# --- dispatch of business events ----------------------------------------------------------


def _json_ready(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as plain JSON types (a Decimal or datetime would not cross the broker)."""
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


@transaction.atomic
def business_event_dispatch(
    *, event: str, payload: dict[str, Any], partner_ids: Iterable[int]
) -> list[WebhookDelivery]:
    """One delivery per active endpoint of ``partner_ids`` subscribed to ``event``, and one
    e-mail per active partner; all handed to Celery once these rows have committed."""
    partner_ids = sorted(set(partner_ids))
    payload = _json_ready(payload)
    endpoints = WebhookEndpoint.objects.filter(
        partner_id__in=partner_ids, is_active=True, partner__is_active=True
    ).order_by("pk")
    # Subscriptions are matched here rather than in SQL: a JSON-array containment lookup
    # is not available on SQLite, and a partner has a handful of endpoints.
    deliveries = [
        WebhookDelivery.objects.create(endpoint=endpoint, event=event, payload=payload)
        for endpoint in endpoints
        if endpoint.subscribes_to(event)
    ]
    for delivery in deliveries:
        _deliver_after_commit(delivery.pk)
    if event in EVENTS_WITH_OWN_LETTER:
        return deliveries
    recipients = Partner.objects.filter(pk__in=partner_ids, is_active=True).exclude(
        contact_email=""
    )
    for partner_id in recipients.values_list("pk", flat=True):
        _email_after_commit(event, payload, partner_id)
    return deliveries


def _deliver_after_commit(delivery_id: int) -> None:
    from .tasks import deliver_webhook

    transaction.on_commit(partial(_hand_to_celery, deliver_webhook, delivery_id))


def _email_after_commit(event: str, payload: dict[str, Any], partner_id: int) -> None:
    from .tasks import send_event_email

    transaction.on_commit(partial(_hand_to_celery, send_event_email, event, payload, partner_id))


def _hand_to_celery(task: Any, *args: Any) -> None:
    """``task.delay(*args)``, never raising: an unreachable broker, or (with tasks run
    in-process) a failing task, is logged and must not turn a committed order into an error.
    A delivery left pending this way is picked up again by ``webhook_deliveries_requeue``."""
    try:
        task.delay(*args)
    except Exception:
        logger.exception("could not run %s%r", task.name, args)


# --- one delivery attempt ------------------------------------------------------------------


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed with the secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def webhook_body(delivery: WebhookDelivery) -> bytes:
    """The JSON sent, identical on every attempt (a receiver deduplicates on the delivery id)."""
    envelope = {
        "id": delivery.pk,
        "event": delivery.event,
        "created_at": delivery.created_at,
        "data": delivery.payload,
    }
    return json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


class _PrivateAddress(Exception):
    """The host resolved to an address that is not public (see _private_address)."""


def _connect(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A connection to the first of ``addresses`` that answers."""
    failure: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as error:
            failure = error
    raise failure or OSError("no address to connect to")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the addresses that were checked, not to what the name resolves to by then:
    a name that changed its answer in between (DNS rebinding) cannot turn the request inward."""

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses

    def connect(self) -> None:
        self.sock = _connect(self.addresses, self.port, self.timeout)


def tls_context() -> ssl.SSLContext:
    """How webhook servers are trusted: the system's certificate authorities, the host name
    checked (tests trust their own authority here)."""
    return ssl.create_default_context()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As _PinnedHTTPConnection, over TLS: the certificate is still checked against the host."""

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=tls_context())
        self.addresses = addresses

    def connect(self) -> None:
        sock = _connect(self.addresses, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _addresses_of(host: str, port: int) -> list[str]:
    """The addresses to send to, as the host resolves now; every one must be public unless
    private hosts are allowed (a name with one private answer could be steered to it)."""
    found = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    if not settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        private = [address for address in found if _private_address(address)]
        if private:
            raise _PrivateAddress(f"{host} resolves to {private[0]}, which is not a public address")
    return list(dict.fromkeys(found))


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """POST and return (status code, error); a network failure is (None, what happened).

    A redirect is an answer, not a new target: following it could carry a signed event to an
    address nobody registered, so a 3xx is a failed attempt like any other status."""
    # The scheme and the host were checked when the URL was saved; the address is checked here.
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    connection = None
    try:
        addresses = _addresses_of(parts.hostname, port)
        kind = _PinnedHTTPSConnection if secure else _PinnedHTTPConnection
        connection = kind(parts.hostname, port, addresses=addresses, timeout=timeout)
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if 200 <= response.status < 300:
            return response.status, ""
        return response.status, f"HTTP {response.status} {response.reason}"
    except _PrivateAddress as refused:
        return None, f"refused: {refused}"
    except (OSError, http.client.HTTPException, ValueError) as error:
        return None, f"{type(error).__name__}: {error}"
    finally:
        if connection is not None:
            connection.close()


def webhook_delivery_attempt(*, delivery: WebhookDelivery) -> WebhookAttempt | None:
    """POST a pending delivery once and record the attempt; ``None`` if there is nothing to send.

    2xx is success; any other status, a redirect, a timeout or a network error is a failed
    attempt, recorded with its status code or error and its duration. No database transaction
    is held open during the request.
    """
    if delivery.status != DeliveryStatus.PENDING:
        return None
    endpoint = delivery.endpoint
    if not endpoint.is_active and delivery.event != PING_EVENT:
        webhook_delivery_fail(delivery=delivery, error="the endpoint was deactivated")
        return None
    body = webhook_body(delivery)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-PharmaDMS-Event": delivery.event,
        "X-PharmaDMS-Delivery": str(delivery.pk),
        "X-PharmaDMS-Timestamp": timestamp,
        SIGNATURE_HEADER: webhook_signature(endpoint.secret, timestamp, body),
    }
    started_at = timezone.now()
    clock = time.monotonic()
    status_code, error = _post(endpoint.url, body, headers)
    duration_ms = round((time.monotonic() - clock) * 1000)
    succeeded = status_code is not None and 200 <= status_code < 300
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
        attempt = WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts + 1,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=status_code,
            error=error,
            succeeded=succeeded,
        )
        delivery.attempts = attempt.number
        delivery.last_status_code = status_code
        delivery.last_error = error
        delivery.last_attempt_at = started_at
        if succeeded:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.completed_at = timezone.now()
        delivery.save(
            update_fields=[
                "attempts",
                "last_status_code",
                "last_error",
                "last_attempt_at",
                "status",
                "completed_at",
            ]
        )
    if not succeeded:
        logger.warning(
            "webhook delivery %s to %s, attempt %s: %s",
            delivery.pk,
            endpoint.url,
            attempt.number,
            error or status_code,
        )
    return attempt


def webhook_delivery_fail(*, delivery: WebhookDelivery, error: str = "") -> WebhookDelivery:
    """Give up on a delivery (attempts exhausted, or nowhere to send it)."""
    delivery.status = DeliveryStatus.FAILED
    delivery.completed_at = timezone.now()
    fields = ["status", "completed_at"]
    if error:
        delivery.last_error = error
        fields.append("last_error")
    delivery.save(update_fields=fields)
    return delivery


def webhook_retry_delay(attempt_number: int) -> float:
    """Seconds before the next attempt: base × 2^(attempt − 1) — 30 s, 1, 2, 4 min by default."""
    return settings.WEBHOOK_BACKOFF_SECONDS * 2 ** (attempt_number - 1)


def webhook_deliveries_requeue(*, older_than_seconds: float = 600) -> int:
    """Hand pending deliveries that nobody is working on back to Celery (the broker was down
    when they were made, or a worker died); the task skips any that finish meanwhile."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, created_at__lt=cutoff)
    stale = stale.exclude(last_attempt_at__gte=cutoff).values_list("pk", flat=True)
    count = 0
    for delivery_id in list(stale):
        _deliver_after_commit(delivery_id)
        count += 1
    return count


# --- e-mail ----------------------------------------------------------------------------------


def event_email_send(*, event: str, payload: dict[str, Any], partner_id: int) -> bool:
    """A short notice of ``event`` to the partner's contact address; False if there is none."""
    partner = Partner.objects.filter(pk=partner_id, is_active=True).first()
    if partner is None or not partner.contact_email:
        return False
    reference = payload.get("number") or payload.get("order_number") or payload.get("id") or ""
    subject = f"PharmaDMS: {event} {reference}".strip()
    details = "\n".join(
        f"  {key}: {value}"
        for key, value in sorted(payload.items())
        if isinstance(value, str | int | float | bool)
    )
    body = (
        f"Hello {partner.name},\n\n"
        f"PharmaDMS records the event {event}.\n\n"
        f"{details}\n\n"
        "Sign in to PharmaDMS for the details. This message was sent to the contact address "
        "your organisation registered.\n"
    )
    send_mail(subject, body, None, [partner.contact_email])
    return True
