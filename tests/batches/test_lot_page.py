"""The lot page `/lots/<id>/`: the lot, its complete audit trail, its signatures with their
status, and the signing form for its manufacturer's QA officer while it is in quarantine."""

from __future__ import annotations

import pytest

from audit.models import Signature
from batches import services
from batches.models import Batch, BatchStatus, MoveKind
from tests.factories import TEST_PASSWORD, BatchFactory, ProductFactory

WRONG = "not-the-password-123"
FORM = 'data-testid="signing-form"'
TRAIL = 'data-testid="audit-trail"'


@pytest.fixture
def lot(network) -> Batch:
    lot = BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer, name="Insulin glargine"),
        lot_number="IG2601",
        status=BatchStatus.QUARANTINE,
    )
    services.batch_update_dates(
        batch=lot,
        expires_on=lot.expires_on.replace(day=1),
        actor=network.qa,
        reason="expiry corrected from the CoA",
    )
    return lot


def page(client, user, lot):
    client.force_login(user)
    return client.get(f"/lots/{lot.pk}/")


def sign_form(client, lot, decision="release", password=TEST_PASSWORD, reason="BR reviewed"):
    return client.post(
        f"/lots/{lot.pk}/", {"decision": decision, "password": password, "reason": reason}
    )


def test_the_page_needs_sign_in(client, lot):
    response = client.get(f"/lots/{lot.pk}/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_the_qa_officer_sees_the_lot_its_audit_trail_and_the_signing_form(client, network, lot):
    response = page(client, network.qa, lot)

    html = response.content.decode()
    assert response.status_code == 200
    assert "Insulin glargine" in html
    assert "IG2601" in html
    assert "Quarantine" in html
    assert TRAIL in html
    # every version: who, why and what changed
    assert "test fixture" in html
    assert "expiry corrected from the CoA" in html
    assert "expires_on" in html
    assert network.qa.get_full_name() in html
    assert FORM in html
    assert "By signing you confirm" in html
    assert 'name="password"' in html
    assert 'value="release"' in html
    assert 'value="reject"' in html


@pytest.mark.parametrize("who", ["warehouse", "admin", "regulator", "wholesaler_qa"])
def test_others_see_the_audit_trail_but_no_signing_form(client, network, lot, who):
    services.stock_post_move(
        batch=lot,
        quantity=5,
        kind=MoveKind.RECEIPT,
        actor=network.wholesaler_qa,
        reason="received",
        to_location=network.wholesaler_quarantine,
    )

    response = page(client, getattr(network, who), lot)

    html = response.content.decode()
    assert response.status_code == 200
    assert TRAIL in html
    assert FORM not in html


def test_a_lot_the_user_cannot_see_is_not_found(client, network, lot):
    assert page(client, network.other_user, lot).status_code == 404


def test_posting_the_form_with_the_password_releases_the_lot(client, network, lot):
    client.force_login(network.qa)

    response = sign_form(client, lot, reason="executed batch record reviewed")

    assert response.status_code == 302
    lot.refresh_from_db()
    assert lot.status == BatchStatus.RELEASED
    signature = Signature.objects.get()
    assert signature.user == network.qa
    assert signature.reason == "executed batch record reviewed"
    html = client.get(response["Location"]).content.decode()
    assert "Lot IG2601 released: signed by" in html
    assert 'data-testid="signatures"' in html
    assert ">valid<" in html
    assert FORM not in html  # decided: nothing more to sign


def test_rejecting_from_the_page(client, network, lot):
    client.force_login(network.qa)

    assert sign_form(client, lot, "reject", reason="assay out of specification").status_code == 302

    lot.refresh_from_db()
    assert lot.status == BatchStatus.REJECTED
    assert Signature.objects.get().meaning == "rejected"


def test_a_wrong_password_is_shown_and_nothing_is_signed(client, network, lot):
    client.force_login(network.qa)

    response = sign_form(client, lot, password=WRONG, reason="keep this reason")

    html = response.content.decode()
    assert response.status_code == 403
    assert 'data-testid="refusal"' in html
    assert "invalid_signature_password" in html
    assert 'value="keep this reason"' in html
    assert FORM in html
    lot.refresh_from_db()
    assert lot.status == BatchStatus.QUARANTINE
    assert not Signature.objects.exists()


def test_a_locked_account_is_told_so_on_the_page(client, network, lot):
    client.force_login(network.qa)
    for _ in range(4):
        sign_form(client, lot, password=WRONG)

    response = sign_form(client, lot, password=WRONG)

    html = response.content.decode()
    assert response.status_code == 403
    assert "account_locked" in html
    assert "IG2601" in html  # still the lot page, not a bare lockout page
    assert sign_form(client, lot).status_code == 403
    lot.refresh_from_db()
    assert lot.status == BatchStatus.QUARANTINE


def test_a_missing_reason_is_refused(client, network, lot):
    client.force_login(network.qa)

    response = sign_form(client, lot, reason="")

    assert response.status_code == 400
    assert "reason_required" in response.content.decode()
    assert not Signature.objects.exists()


def test_posting_as_someone_other_than_the_qa_officer_is_refused(client, network, lot):
    client.force_login(network.admin)

    response = sign_form(client, lot)

    assert response.status_code == 403
    assert "role_not_permitted" in response.content.decode()
    lot.refresh_from_db()
    assert lot.status == BatchStatus.QUARANTINE


def test_an_edit_after_signing_shows_changed_after_signature(client, network, lot):
    client.force_login(network.qa)
    sign_form(client, lot)
    services.batch_change_status(
        batch=lot, to_status=BatchStatus.QUARANTINE, actor=network.qa, reason="deviation opened"
    )

    html = client.get(f"/lots/{lot.pk}/").content.decode()

    assert "changed after signature" in html
    assert "deviation opened" in html


def test_the_home_page_links_each_lot_to_its_page(client, network, lot):
    services.stock_post_move(
        batch=lot,
        quantity=7,
        kind=MoveKind.RECEIPT,
        actor=network.warehouse,
        reason="production output",
        to_location=network.manufacturer_quarantine,
    )
    client.force_login(network.qa)

    html = client.get("/").content.decode()

    assert f'href="/lots/{lot.pk}/"' in html
