"""An excursion opened or closed is e-mailed to the QA officers of the shipment's seller and
buyer (a Celery task after the commit, Django's mail backend), besides the partner event."""

from __future__ import annotations

import pytest
from django.core import mail

from coldchain import services
from coldchain.models import Excursion
from coldchain.services import ingest_messages
from tests.coldchain.conftest import message, series
from tests.factories import TEST_PASSWORD, ExcursionRuleFactory, UserFactory


@pytest.fixture
def people(trip):
    """Besides the network's QA officers (Acme's ``qa``, North's ``wqa``): a second QA officer
    at North, one without an address, a deactivated one, a warehouse operator, and a QA
    officer of a partner outside the trade."""
    net = trip.net
    return {
        "north_qa2": UserFactory(username="wqa2", partner=net.wholesaler, role="qa_officer"),
        "no_address": UserFactory(
            username="wqa3", partner=net.wholesaler, role="qa_officer", email=""
        ),
        "former": UserFactory(
            username="wqa4", partner=net.wholesaler, role="qa_officer", is_active=False
        ),
        "outsider": UserFactory(username="sqa", partner=net.other, role="qa_officer"),
    }


def open_excursion(trip, capture) -> Excursion:
    ExcursionRuleFactory(profile=trip.profile, kind="instant")
    with capture(execute=True):
        ingest_messages([message("LG-0001", series(trip, [5, 9.5, 12, 5]))])
    return Excursion.objects.get()


def test_an_opened_excursion_is_mailed_to_each_qa_officer_of_seller_and_buyer(
    trip, people, django_capture_on_commit_callbacks
):
    mail.outbox.clear()
    excursion = open_excursion(trip, django_capture_on_commit_callbacks)

    notices = [m for m in mail.outbox if m.subject.startswith("PharmaDMS: Temperature")]
    recipients = sorted(address for sent in notices for address in sent.to)
    net = trip.net
    assert recipients == sorted([net.qa.email, net.wholesaler_qa.email, people["north_qa2"].email])
    assert all(len(sent.to) == 1 for sent in notices)  # one message each: no shared addresses
    notice = notices[0]
    assert notice.subject == (
        f"PharmaDMS: Temperature excursion {excursion.number} on shipment "
        f"{trip.shipment.number}: lots held"
    )
    assert "Peak: 12.00 °C" in notice.body
    assert "V200 (Vaccine)" in notice.body
    assert "LG-0001" in notice.body
    # The partners' contact addresses still get the business event's notice.
    contacts = {address for sent in mail.outbox for address in sent.to}
    assert {trip.trade.seller.contact_email, trip.trade.buyer.contact_email} <= contacts


def test_nothing_is_mailed_before_the_commit(trip, people, django_capture_on_commit_callbacks):
    ExcursionRuleFactory(profile=trip.profile, kind="instant")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest_messages([message("LG-0001", series(trip, [5, 12]))])
    assert callbacks  # the evaluation waits for the readings' commit
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.readings_evaluate([(trip.shipment.pk, trip.logger.pk, None)])
    assert Excursion.objects.filter(shipment=trip.shipment).exists()  # found, in the transaction
    assert mail.outbox == []  # ... and its notices wait for the commit
    assert callbacks


def test_a_closed_excursion_is_mailed_with_the_disposition(
    trip, people, django_capture_on_commit_callbacks
):
    excursion = open_excursion(trip, django_capture_on_commit_callbacks)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.excursion_close(
            excursion=excursion,
            disposition="accept",
            signer=trip.net.qa,
            password=TEST_PASSWORD,
            reason="stability data cover it",
        )

    notices = [m for m in mail.outbox if m.subject.startswith("PharmaDMS: Temperature")]
    assert len(notices) == 3
    assert notices[0].subject.endswith(": closed (qa disposition)")
    assert "QA disposition: Accept the stock" in notices[0].body


def test_the_task_sends_nothing_for_an_unknown_excursion(db):
    from coldchain.tasks import notify_qa_officers

    mail.outbox.clear()
    assert notify_qa_officers.delay(999_999, "excursion.opened").get() == 0
    assert mail.outbox == []
