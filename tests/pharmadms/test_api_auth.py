"""API authentication: expiring tokens stored as digests, revocation, and session auth with CSRF."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import CSRF_ALLOWED_CHARS
from django.utils import timezone
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient

from partners.models import ApiToken, Site
from tests.factories import TEST_PASSWORD, gln

API = "/api/v1"
TOKEN_URL = f"{API}/auth/token/"


def obtain_token(client: APIClient, username: str, password: str = TEST_PASSWORD):
    return client.post(TOKEN_URL, {"username": username, "password": password}, format="json")


def token_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


@pytest.fixture
def raw_token(network, api_client) -> str:
    response = obtain_token(api_client, "qa")
    assert response.status_code == 201, response.content
    return response.data["token"]


def assert_challenged(response) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] in ("authentication_failed", "not_authenticated")


def site_body(**changes) -> dict:
    return {
        "name": "Plant 2",
        "gln": gln(600_001),
        "address_line": "Werkstraße 2",
        "postal_code": "80331",
        "city": "München",
        "country": "DE",
        "reason": "new plant",
        **changes,
    }


# --- tokens -----------------------------------------------------------------------------------


def test_a_token_authenticates_api_calls(network, raw_token):
    response = token_client(raw_token).get(f"{API}/sites/")

    assert response.status_code == 200
    assert {row["id"] for row in response.data["results"]} == {network.manufacturer_site.pk}


def test_a_token_expires_after_its_time_to_live(network, api_client):
    before = timezone.now()
    response = obtain_token(api_client, "qa")
    expires_at = datetime.datetime.fromisoformat(response.json()["expires_at"])

    assert before + settings.API_TOKEN_TTL <= expires_at <= timezone.now() + settings.API_TOKEN_TTL


def test_the_database_holds_only_the_tokens_digest(network, raw_token):
    token = ApiToken.objects.get()

    assert token.digest == hashlib.sha256(raw_token.encode()).hexdigest()
    assert token.user == network.qa
    stored = [str(value) for value in ApiToken.objects.values_list().get()]
    assert not any(raw_token in value for value in stored)
    # The prefix that tells tokens apart is too short to be the token.
    assert len(token.prefix) == 8
    assert raw_token.startswith(token.prefix)


def test_an_expired_token_is_refused(network, raw_token):
    ApiToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))

    assert_challenged(token_client(raw_token).get(f"{API}/sites/"))


def test_a_revoked_token_is_refused(network, raw_token):
    client = token_client(raw_token)

    revoked = client.delete(TOKEN_URL)

    assert revoked.status_code == 204
    assert ApiToken.objects.get().revoked_at is not None
    assert_challenged(client.get(f"{API}/sites/"))
    assert_challenged(client.delete(TOKEN_URL))


def test_revoking_one_token_leaves_the_others(network, api_client, raw_token):
    other = obtain_token(api_client, "qa").data["token"]

    assert token_client(raw_token).delete(TOKEN_URL).status_code == 204

    assert token_client(other).get(f"{API}/sites/").status_code == 200


@pytest.mark.parametrize("signed_in", [False, True])
def test_revoking_needs_a_token(network, signed_in):
    """Without a token there is nothing to revoke: a 401 with its challenge, not a 500 or 204."""
    client = APIClient()
    if signed_in:
        client.force_authenticate(user=network.qa)

    response = client.delete(TOKEN_URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_token_authenticated"


def test_a_deactivated_users_token_is_refused(network, raw_token):
    network.qa.is_active = False
    network.qa.save(update_fields=["is_active"])

    assert_challenged(token_client(raw_token).get(f"{API}/sites/"))


@pytest.mark.parametrize(
    "header",
    ["Token", "Token a b", "Token not-a-real-token", "token " + "x" * 43],
)
def test_a_malformed_or_unknown_token_is_refused(network, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert_challenged(client.get(f"{API}/sites/"))


def test_a_wrong_password_is_refused_with_a_code(network, api_client):
    response = obtain_token(api_client, "qa", "wrong-password-123")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"
    assert response.json()["detail"]
    assert not ApiToken.objects.exists()


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(network, api_client):
    """The answer must not tell an attacker which usernames exist."""
    unknown = obtain_token(api_client, "nobody", "wrong-password-123")
    wrong = obtain_token(api_client, "qa", "wrong-password-123")

    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())


def test_a_deactivated_user_gets_no_token(network, api_client):
    network.qa.is_active = False
    network.qa.save(update_fields=["is_active"])

    response = obtain_token(api_client, "qa")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("body", [{"username": "qa"}, {"password": TEST_PASSWORD}, {}])
def test_a_token_request_needs_username_and_password(network, api_client, body):
    response = api_client.post(TOKEN_URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "required"
    assert not ApiToken.objects.exists()


def test_a_token_user_writes_with_their_own_name_in_the_history(network, api_client):
    raw = obtain_token(api_client, "mfadmin").data["token"]

    response = token_client(raw).post(f"{API}/sites/", site_body(), format="json")

    assert response.status_code == 201, response.content
    version = Site.objects.get(pk=response.data["id"]).history.get()
    assert version.history_user == network.admin
    assert version.history_change_reason == "new plant"


def test_token_writes_need_no_csrf_token(network, api_client):
    """A token is not sent by the browser on its own, so it cannot be forged cross-site."""
    raw = obtain_token(api_client, "mfadmin").data["token"]
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")

    assert client.post(f"{API}/sites/", site_body(), format="json").status_code == 201


# --- sessions ---------------------------------------------------------------------------------


@pytest.fixture
def session_client(network) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    # django-axes checks every authentication against its request: login() must pass one.
    assert client.login(request=HttpRequest(), username="mfadmin", password=TEST_PASSWORD)
    return client


def test_a_session_reads_without_csrf(network, session_client):
    response = session_client.get(f"{API}/sites/")
    assert response.status_code == 200
    assert {row["id"] for row in response.data["results"]} == {network.manufacturer_site.pk}


def test_a_session_write_without_csrf_is_forbidden(network, session_client):
    before = Site.objects.count()

    response = session_client.post(f"{API}/sites/", site_body(), format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "CSRF" in response.json()["detail"]
    assert Site.objects.count() == before


def test_a_session_write_with_csrf_goes_through(network, session_client):
    csrf = get_random_string(32, CSRF_ALLOWED_CHARS)
    session_client.cookies[settings.CSRF_COOKIE_NAME] = csrf

    response = session_client.post(
        f"{API}/sites/", site_body(), format="json", HTTP_X_CSRFTOKEN=csrf
    )

    assert response.status_code == 201, response.content


def test_a_session_patch_without_csrf_is_forbidden(network, session_client):
    site = network.manufacturer_site

    response = session_client.patch(
        f"{API}/sites/{site.pk}/", {"city": "Augsburg", "reason": "move"}, format="json"
    )

    assert response.status_code == 403
    site.refresh_from_db()
    assert site.city != "Augsburg"


def test_after_logout_the_session_is_refused(network, session_client):
    session_client.logout()
    assert_challenged(session_client.get(f"{API}/sites/"))


def test_a_client_still_sending_its_expired_token_can_get_a_new_one(network, raw_token):
    """The token request's credentials are the username and password, not the old token."""
    ApiToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    client = token_client(raw_token)

    response = obtain_token(client, "qa")

    assert response.status_code == 201, response.content
    assert token_client(response.data["token"]).get(f"{API}/sites/").status_code == 200


def test_password_guessing_at_the_token_endpoint_is_throttled(db):
    """After ten attempts a minute from one address, the endpoint answers 429 with a code.

    Each attempt names another username: five failures on one username lock it out (403
    account_locked, tests/pharmadms/test_access_security.py); the throttle slows guessing
    across usernames."""
    client = APIClient()

    def body(n: int) -> dict:
        return {"username": f"nobody{n}", "password": "guess"}

    answers = [
        client.post("/api/v1/auth/token/", body(n), format="json").status_code for n in range(11)
    ]
    assert answers[:10] == [400] * 10
    response = client.post("/api/v1/auth/token/", body(11), format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
