"""Excursions: lots held until QA decides, QA notified, acknowledgement, signed disposition."""

from __future__ import annotations

import pytest
from django.core import mail

from audit.models import Signature
from audit.services import SIGNATURE_VALID, signature_status
from batches.hooks import lot_holds
from coldchain import services
from coldchain.models import Excursion, ExcursionStatus
from coldchain.services import ingest_messages
from pharmadms.exceptions import NotPermitted, RuleViolation
from tests.coldchain.conftest import message, series
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD, ExcursionRuleFactory, StorageClassFactory

API = "/api/v1"


@pytest.fixture
def excursion(trip, django_capture_on_commit_callbacks):
    ExcursionRuleFactory(profile=trip.profile, kind="instant")
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages([message("LG-0001", series(trip, [5, 9.5, 12, 5]))])
    return Excursion.objects.get()


def test_the_lots_of_a_shipment_with_an_open_excursion_are_held_at_the_buyers(trip, excursion):
    lot = trip.trade.lot_200
    (hold,) = lot_holds(lot)
    assert hold.code == "excursion_hold"
    assert hold.reference == excursion.number
    assert excursion.number in hold.detail
    assert trip.shipment.number in hold.detail
    # At the buyer's locations, not at the seller's or a third partner's.
    assert lot_holds(lot, trip.net.wholesaler_storage)
    assert lot_holds(lot, trip.net.manufacturer_storage) == []
    assert lot_holds(lot, trip.net.other_storage) == []
    # A lot that was not on the shipment is not held.
    assert lot_holds(trip.trade.lot_600) == []


def test_a_product_of_another_storage_class_on_the_same_truck_is_not_held(trip, excursion):
    room = StorageClassFactory(code="15-25c", name="Room", min_celsius=15, max_celsius=25)
    lot = trip.trade.lot_200
    lot.product.storage_class = room
    lot.product._change_reason = "test: another class"
    lot.product.save()
    lot.refresh_from_db()
    assert lot_holds(lot) == []


def test_both_partners_hear_of_the_excursion(trip, excursion, settings):
    recipients = {address for sent in mail.outbox for address in sent.to}
    assert {trip.trade.seller.contact_email, trip.trade.buyer.contact_email} <= recipients
    assert any(excursion.number in sent.subject for sent in mail.outbox)


def test_qa_acknowledges_then_closes_with_a_signed_disposition(trip, excursion):
    buyer_qa = trip.net.wholesaler_qa
    services.excursion_acknowledge(
        excursion=excursion, actor=buyer_qa, comment="stock quarantined, asking the MAH"
    )
    excursion.refresh_from_db()
    assert excursion.status == ExcursionStatus.ACKNOWLEDGED
    assert lot_holds(trip.trade.lot_200)  # still held while acknowledged

    decision = services.excursion_close(
        excursion=excursion,
        disposition="accept",
        signer=trip.net.qa,
        password=TEST_PASSWORD,
        reason="stability data cover 12 °C for 15 minutes",
    )

    excursion.refresh_from_db()
    assert (excursion.status, excursion.disposition) == ("closed", "accept")
    assert excursion.closed_by == trip.net.qa
    signature = decision.signature
    assert signature.meaning == "excursion_disposition"
    assert (signature.object_model, signature.object_id) == (
        "coldchain.excursion",
        str(excursion.pk),
    )
    assert signature.record_version == excursion.history.latest().history_id
    assert signature_status(signature) == SIGNATURE_VALID
    assert lot_holds(trip.trade.lot_200) == []


def test_a_wrong_password_closes_nothing(trip, excursion):
    from audit.services import InvalidSignaturePassword

    with pytest.raises(InvalidSignaturePassword):
        services.excursion_close(
            excursion=excursion,
            disposition="reject",
            signer=trip.net.qa,
            password="wrong",
            reason="too warm",
        )
    excursion.refresh_from_db()
    assert excursion.status == ExcursionStatus.OPEN
    assert not Signature.objects.exists()


def test_only_the_trades_qa_decides(trip, excursion):
    with pytest.raises(NotPermitted):
        services.excursion_acknowledge(excursion=excursion, actor=trip.net.warehouse, comment="x")
    from tests.factories import UserFactory

    stranger = UserFactory(username="sqa", partner=trip.net.other, role="qa_officer")
    with pytest.raises(NotPermitted):
        services.excursion_acknowledge(excursion=excursion, actor=stranger, comment="x")


def test_a_closed_excursion_cannot_be_acknowledged(trip, excursion):
    services.excursion_close(
        excursion=excursion,
        disposition="reject",
        signer=trip.net.qa,
        password=TEST_PASSWORD,
        reason="too warm for too long",
    )
    with pytest.raises(RuleViolation) as refused:
        services.excursion_acknowledge(excursion=excursion, actor=trip.net.qa, comment="late")
    assert refused.value.code == "invalid_status_transition"


def test_excursions_over_the_api(trip, excursion):
    net = trip.net
    listed = client_for(net.wholesaler_qa).get(f"{API}/excursions/?status=open")
    assert [row["number"] for row in listed.json()["results"]] == [excursion.number]
    assert client_for(net.other_user).get(f"{API}/excursions/{excursion.pk}/").status_code == 404

    url = f"{API}/excursions/{excursion.pk}"
    acknowledged = client_for(net.wholesaler_qa).post(
        f"{url}/acknowledge/", {"comment": "held at receipt"}, format="json"
    )
    assert acknowledged.status_code == 200, acknowledged.content
    assert acknowledged.json()["status"] == "acknowledged"

    regulator = client_for(net.regulator).post(
        f"{url}/close/",
        {"disposition": "accept", "password": TEST_PASSWORD, "reason": "x"},
        format="json",
    )
    assert regulator.status_code == 403
    bad = client_for(net.qa).post(
        f"{url}/close/",
        {"disposition": "keep", "password": TEST_PASSWORD, "reason": "x"},
        format="json",
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_disposition")
    closed = client_for(net.qa).post(
        f"{url}/close/",
        {"disposition": "accept", "password": TEST_PASSWORD, "reason": "within stability data"},
        format="json",
    )
    assert closed.status_code == 200, closed.content
    body = closed.json()
    assert (body["status"], body["disposition"]) == ("closed", "accept")
    assert body["signature"]["meaning"] == "excursion_disposition"
    assert client_for(net.qa).get(f"{url}/history/").status_code == 200
