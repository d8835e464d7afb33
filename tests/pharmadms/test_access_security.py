"""Access security: every sign-in, sign-out, failure, lockout and refused request is in the
audit trail; five failures lock a username; idle sessions end; weak passwords are refused."""

from __future__ import annotations

import datetime

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audit import chain
from audit.models import AuditAction, AuditEntry
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD

API = "/api/v1"
WRONG = "not-the-password-123"


def sign_in(client, username="qa", password=TEST_PASSWORD):
    return client.post("/login/", {"username": username, "password": password})


def events(action: str):
    return AuditEntry.objects.filter(action=action).order_by("sequence")


# --- sign-in, sign-out, failures --------------------------------------------------------------


def test_sign_in_and_sign_out_are_in_the_audit_trail(client, network):
    assert sign_in(client).status_code == 302
    assert client.post("/logout/").status_code == 302

    (login,) = events(AuditAction.LOGIN)
    (logout,) = events(AuditAction.LOGOUT)
    assert login.user == logout.user == network.qa
    assert login.partner_id == network.manufacturer.pk
    assert login.payload["path"] == "/login/"
    assert login.sequence < logout.sequence
    assert chain.verify().ok


def test_a_failed_sign_in_is_in_the_audit_trail_without_the_password(client, network):
    response = sign_in(client, password=WRONG)

    assert response.status_code == 200
    (failed,) = events(AuditAction.LOGIN_FAILED)
    assert failed.payload["username"] == "qa"
    assert WRONG not in str(failed.payload)
    assert failed.user is None


def test_five_failed_sign_ins_lock_the_username(client, network):
    """The fifth failure locks it: the sign-in page says so, and the right password is refused
    there and at the token endpoint until the cool-off ends."""
    for _ in range(4):
        assert sign_in(client, password=WRONG).status_code == 200

    fifth = sign_in(client, password=WRONG)
    right = sign_in(client)

    for response in (fifth, right):
        assert response.status_code == 403
        html = response.content.decode()
        assert 'data-testid="locked-out"' in html
        assert "This account is locked after 5 failed attempts" in html
        assert f"try again in {settings.AXES_COOLOFF_MINUTES} minutes" in html
    assert "_auth_user_id" not in client.session
    token = APIClient().post(
        f"{API}/auth/token/", {"username": "qa", "password": TEST_PASSWORD}, format="json"
    )
    assert token.status_code == 403
    assert token.json()["code"] == "account_locked"
    locked = events(AuditAction.LOCKED_OUT)
    assert locked.count() >= 1
    assert locked.first().user == network.qa
    assert locked.first().payload["username"] == "qa"
    assert chain.verify().ok


def test_the_lock_ends_with_the_cool_off(client, network):
    for _ in range(5):
        sign_in(client, password=WRONG)
    assert sign_in(client).status_code == 403

    cool_off = datetime.timedelta(minutes=settings.AXES_COOLOFF_MINUTES)
    AccessAttempt.objects.update(attempt_time=timezone.now() - cool_off - datetime.timedelta(1))

    assert sign_in(client).status_code == 302


def test_another_username_is_not_locked(client, network):
    """The lock is per username: others signing in from the same address are not affected."""
    for _ in range(5):
        sign_in(client, password=WRONG)

    assert sign_in(client, username="warehouse").status_code == 302


def test_the_token_endpoint_counts_failures_too(network):
    client = APIClient()
    codes = [
        client.post(
            f"{API}/auth/token/", {"username": "qa", "password": WRONG}, format="json"
        ).json()["code"]
        for _ in range(5)
    ]

    assert codes == ["invalid_credentials"] * 4 + ["account_locked"]


# --- refused requests -------------------------------------------------------------------------


def test_a_refused_api_request_is_in_the_audit_trail(network):
    response = client_for(network.regulator).post(f"{API}/batches/", {"reason": "x"}, format="json")

    assert response.status_code == 403
    (denied,) = events(AuditAction.DENIED)
    assert denied.user == network.regulator
    assert denied.payload == {
        "username": "regulator",
        "method": "POST",
        "path": f"{API}/batches/",
        "status": 403,
        "ip": "127.0.0.1",
        "code": "permission_denied",
    }
    assert chain.verify().ok


def test_an_anonymous_refusal_is_in_the_audit_trail(api_client, db):
    response = api_client.get(f"{API}/batches/")

    assert response.status_code == 401
    (denied,) = events(AuditAction.DENIED)
    assert denied.user is None
    assert denied.payload["status"] == 401
    assert denied.payload["path"] == f"{API}/batches/"


def test_a_refused_page_is_in_the_audit_trail(network):
    """The CSRF refusal of a form post without its token, for one."""
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(network.qa)

    response = strict.post("/logout/")

    assert response.status_code == 403
    (denied,) = events(AuditAction.DENIED)
    assert denied.user == network.qa
    assert denied.payload["path"] == "/logout/"


def test_an_answered_request_is_not_recorded_as_denied(client, network):
    client.force_login(network.qa)

    assert client.get("/").status_code == 200
    assert client_for(network.qa).get(f"{API}/batches/").status_code == 200

    assert not events(AuditAction.DENIED).exists()


def test_a_flood_of_refusals_is_sealed_up_to_the_allowance_then_counted(
    api_client, network, settings, monkeypatch, caplog
):
    """21 CFR 11.300(d): refused requests are reported, yet a flood of them cannot hold up
    every regulated write on the chain's head: each client's first refusals of a minute are
    sealed, the first beyond says so, and the client's next sealed refusal counts the rest."""
    settings.AUDIT_DENIED_PER_MINUTE = 3
    minute = [29_000_000]
    monkeypatch.setattr("pharmadms.middleware._minute", lambda: minute[0])

    answers = [api_client.get(f"{API}/batches/").status_code for _ in range(7)]
    other = client_for(network.regulator).post(f"{API}/batches/", {"reason": "x"}, format="json")

    assert answers == [401] * 7  # what the client gets never changes
    assert other.status_code == 403
    anonymous = [e.payload for e in events(AuditAction.DENIED).filter(user=None)]
    assert [p.get("throttled", False) for p in anonymous] == [False, False, False, True]
    assert "more than 3 refused requests this minute from ip:127.0.0.1" in caplog.text
    # Another client has its own allowance.
    (regulator,) = events(AuditAction.DENIED).filter(user=network.regulator)
    assert "throttled" not in regulator.payload

    minute[0] += 5  # however long the client stays away, its next sealed refusal counts them
    assert api_client.get(f"{API}/batches/").status_code == 401
    latest = events(AuditAction.DENIED).filter(user=None).last()
    assert latest.payload["unsealed_before"] == 3  # the 5th, 6th and 7th of the flood
    assert "throttled" not in latest.payload
    assert api_client.get(f"{API}/batches/").status_code == 401
    assert "unsealed_before" not in events(AuditAction.DENIED).last().payload  # counted once
    assert chain.verify().ok


def test_behind_the_proxy_each_client_is_counted_by_the_address_the_proxy_saw(
    api_client, db, settings
):
    settings.AUDIT_DENIED_PER_MINUTE = 1
    settings.BEHIND_TLS_PROXY = True

    def refused_from(address: str) -> None:
        # The client may write anything into X-Forwarded-For; the proxy appends what it saw.
        forwarded = f"10.9.9.9, {address}"
        api_client.get(f"{API}/batches/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR="10.0.0.1")

    for _ in range(3):
        refused_from("203.0.113.7")
    refused_from("198.51.100.2")

    sealed = [(e.payload["ip"], e.payload.get("throttled", False)) for e in events("denied")]
    assert sealed == [("203.0.113.7", False), ("203.0.113.7", True), ("198.51.100.2", False)]


def test_not_behind_a_proxy_a_forwarded_address_is_not_believed(api_client, db):
    api_client.get(f"{API}/batches/", HTTP_X_FORWARDED_FOR="203.0.113.7")

    assert events(AuditAction.DENIED).get().payload["ip"] == "127.0.0.1"


def test_without_a_cache_to_count_in_every_refusal_is_sealed(api_client, db, monkeypatch):
    def unavailable(*args, **kwargs):
        raise ConnectionError("cache unavailable")

    monkeypatch.setattr("pharmadms.middleware.cache.add", unavailable)

    assert [api_client.get(f"{API}/batches/").status_code for _ in range(3)] == [401] * 3
    assert events(AuditAction.DENIED).count() == 3


def test_a_failing_audit_write_never_breaks_the_response(network, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(chain, "record_event", broken)

    response = client_for(network.regulator).post(f"{API}/batches/", {"reason": "x"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "could not record a denied request" in caplog.text


# --- sessions and passwords -------------------------------------------------------------------


def test_an_idle_session_is_signed_out_after_the_session_age(client, network, monkeypatch):
    """Each request restarts the idle timer; a session idle for longer than
    SESSION_COOKIE_AGE is signed out."""
    age = datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    start = timezone.now()
    clock = {"now": start}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    assert sign_in(client).status_code == 302

    clock["now"] = start + age - datetime.timedelta(minutes=1)
    assert client.get("/").status_code == 200  # active: the timer restarts here
    clock["now"] += age - datetime.timedelta(minutes=1)
    assert client.get("/").status_code == 200

    clock["now"] += age + datetime.timedelta(seconds=1)
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_session_ages_are_set():
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST
    assert settings.SESSION_EXPIRE_AT_BROWSER_CLOSE


@pytest.mark.parametrize(
    "password",
    [
        "short1!",  # fewer than 10 characters
        "password123",  # a common password
        "48151623424815",  # numbers only
        "qa-officer-qa",  # too like the username and name
    ],
)
def test_a_weak_password_is_refused(network, password):
    network.qa.first_name, network.qa.last_name = "Qa", "Officer"
    with pytest.raises(ValidationError):
        validate_password(password, user=network.qa)


def test_a_strong_password_is_accepted(network):
    validate_password("amber-lighthouse-percolates-72", user=network.qa)


def test_axes_guards_every_authentication_and_its_middleware_is_last():
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_LOCKOUT_PARAMETERS == ["username"]
    assert settings.AXES_RESET_ON_SUCCESS
    assert "pharmadms.middleware.DeniedRequestAuditMiddleware" in settings.MIDDLEWARE
