"""QA lot decisions over the API: `POST /api/v1/batches/<id>/release/` and `/reject/`, each an
electronic signature made with the QA officer's password, re-entered for it."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit import chain
from audit.models import AuditAction, AuditEntry, Signature
from batches import services
from batches.models import Batch, BatchStatus, MoveKind
from partners.models import Role
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD, BatchFactory, ProductFactory, UserFactory

API = "/api/v1"
WRONG = "not-the-password-123"


@pytest.fixture
def lot(network) -> Batch:
    return BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer),
        lot_number="Q0001",
        status=BatchStatus.QUARANTINE,
    )


def decide(client: APIClient, lot: Batch, decision: str = "release", **body):
    body = {"password": TEST_PASSWORD, "reason": "batch record reviewed, CoA conforms", **body}
    return client.post(f"{API}/batches/{lot.pk}/{decision}/", body, format="json")


def token_client(username: str) -> APIClient:
    response = APIClient().post(
        f"{API}/auth/token/", {"username": username, "password": TEST_PASSWORD}, format="json"
    )
    assert response.status_code == 201, response.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


def assert_nothing_decided(lot: Batch, versions: int = 1) -> None:
    lot.refresh_from_db()
    assert lot.status == BatchStatus.QUARANTINE
    assert lot.history.count() == versions
    assert not Signature.objects.exists()


# --- the signed decision ----------------------------------------------------------------------


def test_release_with_the_password_answers_the_lot_and_its_signature(network, lot):
    """The answer is the lot, released, and the signature's manifestation: printed name, UTC
    time, meaning and reason; the signature is bound to the released version."""
    before = timezone.now()

    response = decide(token_client("qa"), lot)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == lot.pk
    assert body["status"] == BatchStatus.RELEASED
    manifestation = body["signature"]
    assert manifestation["printed_name"] == network.qa.get_full_name()
    assert manifestation["signer"] == "qa"
    assert manifestation["meaning"] == "released"
    assert manifestation["meaning_display"] == "Released"
    assert manifestation["reason"] == "batch record reviewed, CoA conforms"
    assert manifestation["status"] == "valid"
    assert manifestation["signed_at"].endswith("Z")
    signed_at = datetime.datetime.fromisoformat(manifestation["signed_at"])
    assert before <= signed_at <= timezone.now()

    lot.refresh_from_db()
    signature = Signature.objects.get()
    released = lot.history.latest("history_id")
    assert released.status == BatchStatus.RELEASED
    assert released.history_user == network.qa
    assert released.history_change_reason == "batch record reviewed, CoA conforms"
    assert signature.record_version == released.history_id
    assert signature.content_hash == chain.content_hash(chain.row_content(lot))
    assert chain.verify().ok


def test_reject_is_signed_with_the_meaning_rejected(network, lot):
    response = decide(client_for(network.qa), lot, "reject", reason="assay out of specification")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == BatchStatus.REJECTED
    assert response.json()["signature"]["meaning"] == "rejected"
    lot.refresh_from_db()
    assert lot.status == BatchStatus.REJECTED


def test_a_token_alone_never_signs(network, lot):
    """Without the password re-entered, the request is refused and nothing changes."""
    client = token_client("qa")

    response = client.post(f"{API}/batches/{lot.pk}/release/", {"reason": "ok"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "password_required"
    empty = decide(client, lot, password="")
    assert empty.status_code == 400
    assert empty.json()["code"] == "password_required"
    assert_nothing_decided(lot)


def test_a_wrong_password_signs_nothing(network, lot):
    response = decide(token_client("qa"), lot, password=WRONG)

    assert response.status_code == 403
    assert response.json()["code"] == "invalid_signature_password"
    assert_nothing_decided(lot)
    assert AuditEntry.objects.filter(action=AuditAction.LOGIN_FAILED).count() == 1


def test_a_reason_is_required(network, lot):
    response = decide(client_for(network.qa), lot, reason=" ")

    assert response.status_code == 400
    assert response.json()["code"] == "reason_required"
    assert_nothing_decided(lot)


def test_client_supplied_time_and_signer_are_ignored(network, lot):
    """Who signs is the authenticated user, when is the server's clock."""
    response = decide(
        client_for(network.qa),
        lot,
        signed_at="2001-01-01T00:00:00Z",
        user=network.admin.pk,
    )

    assert response.status_code == 200, response.content
    signature = Signature.objects.get()
    assert signature.user == network.qa
    assert timezone.now() - signature.signed_at < datetime.timedelta(minutes=1)
    assert response.json()["signature"]["signer"] == "qa"


def test_other_unknown_fields_are_still_refused(network, lot):
    response = decide(client_for(network.qa), lot, status="rejected")

    assert response.status_code == 400
    assert response.json()["code"] == "unknown_field"
    assert_nothing_decided(lot)


# --- who may decide ---------------------------------------------------------------------------


def holder_lot(network, lot) -> Batch:
    """Make the lot visible to the North wholesaler: it holds some of it."""
    services.stock_post_move(
        batch=lot,
        quantity=5,
        kind=MoveKind.RECEIPT,
        actor=network.wholesaler_qa,
        reason="received from the manufacturer",
        to_location=network.wholesaler_quarantine,
    )
    return lot


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        ("warehouse", 403, "permission_denied"),  # the API refuses the role outright
        ("admin", 403, "role_not_permitted"),  # may write lots, but only QA decides
        ("wholesaler_qa", 403, "not_your_organisation"),  # sees the lot, is not its maker
        ("regulator", 403, "permission_denied"),
        ("other_user", 403, "permission_denied"),
        ("other_qa", 404, "not_found"),  # a QA officer who cannot see the lot at all
    ],
)
def test_only_the_manufacturers_qa_officer_decides(network, lot, who, status, code):
    holder_lot(network, lot)
    network.other_qa = UserFactory(username="oqa", partner=network.other, role=Role.QA_OFFICER)

    response = decide(client_for(getattr(network, who)), lot)

    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert_nothing_decided(lot)


def test_a_superuser_does_not_sign_for_qa(network, lot):
    root = UserFactory(username="root", partner=None, is_superuser=True, is_staff=True)

    response = decide(client_for(root), lot)

    assert response.status_code == 403
    assert response.json()["code"] == "role_not_permitted"
    assert_nothing_decided(lot)


def test_anonymous_is_refused(api_client, lot):
    response = decide(api_client, lot)

    assert response.status_code == 401
    assert_nothing_decided(lot)


# --- the lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "decision"),
    [
        (BatchStatus.RELEASED, "release"),
        (BatchStatus.RELEASED, "reject"),
        (BatchStatus.REJECTED, "release"),
        (BatchStatus.RECALLED, "release"),
    ],
)
def test_only_a_quarantined_lot_is_decided(network, start, decision):
    lot = BatchFactory(product=ProductFactory(manufacturer=network.manufacturer), status=start)

    response = decide(client_for(network.qa), lot, decision)

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_status_transition"
    lot.refresh_from_db()
    assert lot.status == start
    assert not Signature.objects.exists()


def test_a_rejected_lot_cannot_be_rejected_again(network, lot):
    client = client_for(network.qa)
    assert decide(client, lot, "reject").status_code == 200

    response = decide(client, lot, "reject")

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_status_transition"
    assert Signature.objects.count() == 1


def test_a_lot_held_again_after_release_shows_its_signature_changed(network, lot):
    client = client_for(network.qa)
    decide(client, lot)
    services.batch_change_status(
        batch=lot, to_status=BatchStatus.QUARANTINE, actor=network.qa, reason="deviation opened"
    )

    response = client.get(f"{API}/batches/{lot.pk}/signatures/")

    assert response.status_code == 200
    (signature,) = response.json()
    assert signature["status"] == "changed after signature"
    assert signature["meaning"] == "released"


def test_the_signatures_of_a_lot_are_read_as_the_lot_is(network, lot):
    decide(client_for(network.qa), lot)

    assert client_for(network.regulator).get(f"{API}/batches/{lot.pk}/signatures/").json()
    hidden = client_for(network.other_user).get(f"{API}/batches/{lot.pk}/signatures/")
    assert hidden.status_code == 404


# --- lockout and the chain --------------------------------------------------------------------


def test_five_failed_signing_attempts_lock_the_account(network, lot):
    """Four wrong passwords answer invalid_signature_password, the fifth locks the account;
    then even the right password is refused, at signing and at the token endpoint."""
    client = token_client("qa")

    codes = [decide(client, lot, password=WRONG).json()["code"] for _ in range(5)]
    sixth = decide(client, lot)

    assert codes == ["invalid_signature_password"] * 4 + ["account_locked"]
    assert sixth.status_code == 403
    assert sixth.json()["code"] == "account_locked"
    assert_nothing_decided(lot)
    token = APIClient().post(
        f"{API}/auth/token/", {"username": "qa", "password": TEST_PASSWORD}, format="json"
    )
    assert token.status_code == 403
    assert token.json()["code"] == "account_locked"
    assert AuditEntry.objects.filter(action=AuditAction.LOCKED_OUT, user=network.qa).exists()


def test_every_signature_has_one_chain_entry_and_the_chain_holds(network):
    """After releases, rejections, refusals and a lockout, each signature has exactly one chain
    entry and the whole chain verifies."""
    product = ProductFactory(manufacturer=network.manufacturer)
    lots = [BatchFactory(product=product, status=BatchStatus.QUARANTINE) for _ in range(4)]
    qa = client_for(network.qa)
    assert decide(qa, lots[0]).status_code == 200
    assert decide(qa, lots[1], "reject").status_code == 200
    assert decide(qa, lots[0], "reject").status_code == 409
    assert decide(client_for(network.admin), lots[2]).status_code == 403
    assert decide(qa, lots[2], password=WRONG).status_code == 403
    assert decide(qa, lots[2]).status_code == 200
    for _ in range(5):
        decide(qa, lots[3], password=WRONG)
    assert decide(qa, lots[3]).json()["code"] == "account_locked"

    signatures = list(Signature.objects.all())
    assert len(signatures) == 3
    for signature in signatures:
        assert (
            AuditEntry.objects.filter(source="audit.signature", record_id=signature.pk).count() == 1
        )
    assert AuditEntry.objects.filter(source="audit.signature").count() == 3
    assert chain.verify().ok
