"""Electronic signatures (21 CFR 11.50, 11.70, 11.200): the password re-entered at the moment of
signing, the manifestation, the binding to one version of one record, and the lockout."""

from __future__ import annotations

import datetime

import pytest
from axes.models import AccessAttempt
from django.db import DatabaseError, transaction
from django.test import RequestFactory
from django.utils import timezone

from audit import chain
from audit.models import AuditAction, AuditEntry, Signature, SignatureMeaning
from audit.selectors import signature_list_for_record
from audit.services import (
    SIGNATURE_CHANGED,
    SIGNATURE_VALID,
    signature_apply,
    signature_sign,
    signature_status,
    signature_verify_password,
)
from batches import services as batch_services
from batches.models import Batch, BatchStatus
from pharmadms.exceptions import InvalidInput, NotPermitted
from tests.factories import TEST_PASSWORD, BatchFactory, ProductFactory, UserFactory

WRONG = "not-the-password-123"


@pytest.fixture
def lot(network) -> Batch:
    return BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer), status=BatchStatus.QUARANTINE
    )


def sign(user, record, *, password=TEST_PASSWORD, meaning=SignatureMeaning.REVIEWED, **kwargs):
    fields = {"reason": "batch record reviewed", **kwargs}
    return signature_sign(signer=user, password=password, meaning=meaning, record=record, **fields)


def refusal_code(callable_, *args, **kwargs) -> tuple[str, int]:
    with pytest.raises((NotPermitted, InvalidInput)) as refusal:
        callable_(*args, **kwargs)
    return refusal.value.code, refusal.value.status_code


# --- what a signature records ---------------------------------------------------------------


def test_a_signature_records_signer_name_time_meaning_reason_and_the_signed_version(network, lot):
    """The manifestation (printed name, UTC time, meaning, reason) and the binding to the
    record: its model, id, the history_id of the signed version and the hash of its content."""
    before = timezone.now()

    signature = sign(network.qa, lot, reason="executed batch record reviewed")

    stored = Batch.objects.get(pk=lot.pk)
    assert signature.user == network.qa
    assert signature.printed_name == network.qa.get_full_name()
    assert signature.meaning == SignatureMeaning.REVIEWED
    assert signature.reason == "executed batch record reviewed"
    assert before <= signature.signed_at <= timezone.now()
    assert signature.signed_at.utcoffset() == datetime.timedelta(0)
    assert signature.object_model == "batches.batch"
    assert signature.object_id == str(lot.pk)
    assert signature.record_version == stored.history.latest("history_id").history_id
    assert signature.content_hash == chain.content_hash(chain.row_content(stored))
    assert signature_status(signature) == SIGNATURE_VALID


def test_the_printed_name_falls_back_to_the_username(network, lot):
    nameless = UserFactory(
        username="qa2", first_name="", last_name="", partner=network.manufacturer
    )

    assert sign(nameless, lot).printed_name == "qa2"


def test_every_signature_is_sealed_into_the_chain_once(network, lot):
    """One chain entry per signature, in the signature's transaction; the chain verifies."""
    first = sign(network.qa, lot)
    second = sign(network.qa, lot, meaning=SignatureMeaning.APPROVED, reason="approved")

    for signature in (first, second):
        (entry,) = AuditEntry.objects.filter(source="audit.signature", record_id=signature.pk)
        assert entry.action == AuditAction.SIGNED
        assert entry.user == network.qa
        assert entry.object_model == "batches.batch"
        assert entry.object_id == str(lot.pk)
        assert entry.reason == signature.reason
        assert entry.occurred_at == signature.signed_at
    assert chain.verify().ok


def test_a_signature_cannot_be_changed_or_deleted(network, lot):
    """The table is append-only in the database itself."""
    signature = sign(network.qa, lot)
    other = BatchFactory(product=lot.product)

    with pytest.raises(DatabaseError), transaction.atomic():
        Signature.objects.filter(pk=signature.pk).update(object_id=str(other.pk))
    with pytest.raises(DatabaseError), transaction.atomic():
        Signature.objects.filter(pk=signature.pk).delete()

    signature.refresh_from_db()
    assert signature.object_id == str(lot.pk)


# --- the password, re-entered at the moment of signing --------------------------------------


def test_a_wrong_password_signs_nothing_and_is_counted_as_a_failed_sign_in(network, lot):
    assert refusal_code(sign, network.qa, lot, password=WRONG) == (
        "invalid_signature_password",
        403,
    )

    assert not Signature.objects.exists()
    assert AccessAttempt.objects.get(username="qa").failures_since_start == 1
    failed = AuditEntry.objects.get(action=AuditAction.LOGIN_FAILED)
    assert failed.payload["username"] == "qa"
    assert chain.verify().ok


def test_no_password_never_signs(network, lot):
    """A session or a token alone never signs: an empty password is refused before any check."""
    assert refusal_code(sign, network.qa, lot, password="") == ("password_required", 400)
    assert not Signature.objects.exists()
    assert not AccessAttempt.objects.exists()


def test_another_users_password_does_not_sign(network, lot):
    """The password is checked against the signer's own account."""
    network.warehouse.set_password("warehouse-own-password-9")
    network.warehouse.save(update_fields=["password"])

    code, _ = refusal_code(sign, network.qa, lot, password="warehouse-own-password-9")

    assert code == "invalid_signature_password"
    assert not Signature.objects.exists()


def test_an_inactive_user_cannot_sign(network, lot):
    network.qa.is_active = False
    network.qa.save(update_fields=["is_active"])

    assert refusal_code(sign, network.qa, lot)[0] == "signer_inactive"
    assert not Signature.objects.exists()


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"reason": "  "}, "reason_required"),
        ({"meaning": "approved-by-email"}, "invalid_meaning"),
    ],
)
def test_a_signature_needs_a_reason_and_a_known_meaning(network, lot, changes, code):
    """Refused before the password is checked: no attempt is counted."""
    assert refusal_code(sign, network.qa, lot, **changes)[0] == code
    assert not Signature.objects.exists()
    assert not AccessAttempt.objects.exists()


def test_an_unsaved_record_cannot_be_signed(network, lot):
    unsaved = Batch(product=lot.product, lot_number="NEW1", manufactured_on=lot.manufactured_on)

    assert refusal_code(sign, network.qa, unsaved)[0] == "record_not_saved"
    assert not Signature.objects.exists()


def test_one_password_check_makes_one_signature(network, lot):
    verified = signature_verify_password(signer=network.qa, password=TEST_PASSWORD)
    signature_apply(verified=verified, meaning="reviewed", reason="first", record=lot)

    with pytest.raises(NotPermitted) as refusal:
        signature_apply(verified=verified, meaning="reviewed", reason="second", record=lot)

    assert refusal.value.code == "password_required"
    assert Signature.objects.count() == 1


def test_a_password_check_expires(network, lot, monkeypatch):
    verified = signature_verify_password(signer=network.qa, password=TEST_PASSWORD)
    later = timezone.now() + datetime.timedelta(minutes=3)
    monkeypatch.setattr(timezone, "now", lambda: later)

    with pytest.raises(NotPermitted) as refusal:
        signature_apply(verified=verified, meaning="reviewed", reason="late", record=lot)

    assert refusal.value.code == "password_required"
    assert not Signature.objects.exists()


def test_the_request_is_the_one_counted(network, lot):
    """The signing request's address is kept with the failed attempt and its audit entry."""
    request = RequestFactory().post("/lots/1/", REMOTE_ADDR="203.0.113.7")

    refusal_code(sign, network.qa, lot, password=WRONG, request=request)

    assert AccessAttempt.objects.get().ip_address == "203.0.113.7"
    assert AuditEntry.objects.get(action=AuditAction.LOGIN_FAILED).payload["ip"] == "203.0.113.7"


# --- lockout ----------------------------------------------------------------------------------


def test_five_failed_signing_attempts_lock_the_account(network, lot, client):
    """The fifth failure locks the username: the right password is then refused too, both for
    signing and for signing in, and the lockout is in the audit trail."""
    codes = [refusal_code(sign, network.qa, lot, password=WRONG)[0] for _ in range(5)]

    assert codes == ["invalid_signature_password"] * 4 + ["account_locked"]
    assert refusal_code(sign, network.qa, lot) == ("account_locked", 403)
    assert not Signature.objects.exists()
    response = client.post("/login/", {"username": "qa", "password": TEST_PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session
    locked = AuditEntry.objects.filter(action=AuditAction.LOCKED_OUT)
    assert locked.exists()
    assert {entry.user for entry in locked} == {network.qa}
    assert chain.verify().ok


def test_a_correct_signing_password_resets_the_failure_count(network, lot):
    for _ in range(4):
        refusal_code(sign, network.qa, lot, password=WRONG)
    sign(network.qa, lot)

    codes = [refusal_code(sign, network.qa, lot, password=WRONG)[0] for _ in range(4)]

    assert codes == ["invalid_signature_password"] * 4
    assert sign(network.qa, lot).pk


# --- status: valid, or changed after signature -------------------------------------------------


def test_an_edit_after_signing_shows_as_changed_after_signature(network, lot):
    signature = sign(network.qa, lot)

    batch_services.batch_update_dates(
        batch=lot,
        expires_on=lot.expires_on - datetime.timedelta(days=30),
        actor=network.qa,
        reason="expiry corrected from the certificate of analysis",
    )

    assert signature_status(signature) == SIGNATURE_CHANGED
    (listed,) = signature_list_for_record(record=lot)
    assert listed.status == SIGNATURE_CHANGED
    assert chain.verify().ok


def test_a_status_change_after_release_shows_as_changed_after_signature(network, lot):
    decision = batch_services.batch_release(
        batch=lot, signer=network.qa, password=TEST_PASSWORD, reason="batch record reviewed"
    )
    assert signature_status(decision.signature) == SIGNATURE_VALID

    batch_services.batch_change_status(
        batch=lot, to_status=BatchStatus.QUARANTINE, actor=network.qa, reason="deviation opened"
    )

    assert signature_status(decision.signature) == SIGNATURE_CHANGED


def test_a_signature_vouches_only_for_its_own_record(network, lot):
    """The status is checked against the record the signature names: a copy naming another
    record (same content hash) is not valid there, and a record lists only its own."""
    signature = sign(network.qa, lot)
    other = BatchFactory(product=lot.product, status=BatchStatus.QUARANTINE)
    copy = Signature(
        **{
            field.attname: getattr(signature, field.attname)
            for field in Signature._meta.concrete_fields
            if field.attname != "id"
        }
    )
    copy.object_id = str(other.pk)

    assert signature_status(copy) == SIGNATURE_CHANGED
    assert signature_list_for_record(record=other) == []
    assert [s.pk for s in signature_list_for_record(record=lot)] == [signature.pk]
