"""Opening a recall (signed) blocks its lots at once, lists and notifies the consignees; they
answer; reminders follow; closing is signed and refuses consignees unaccounted for."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import Signature
from batches import hooks
from batches.models import (
    BATCH_TRANSITIONS,
    Batch,
    BatchStatus,
    StockAllocation,
    StockBalance,
)
from orders import services as orders
from partners.services import system_account
from pharmadms.exceptions import ApplicationError
from recalls import services
from recalls.models import NoticeKind, Recall, RecallConsignee, RecallNotice, RecallStatus
from tests.factories import TEST_PASSWORD

TERMS = {
    "classification": "I",
    "depth": "retail",
    "recall_reason": "sterility failure of the fill line",
    "health_hazard": "risk of serious infection on injection",
    "strategy": "recall to retail level; return to supplier; level A checks",
    "instructions": "stop dispensing; quarantine all units; return them to your supplier",
    "effectiveness_level": "A",
}


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run what a committed transaction hands on (notifications) when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def open_recall(c, lots=None, *, signer=None, password=TEST_PASSWORD, **overrides):
    return services.recall_open(
        lots=lots or [c.lot_a],
        signer=signer or c.manufacturer.qa,
        password=password,
        reason="QA decision: recall opened",
        **(TERMS | overrides),
    )


def recall_letters(outbox, prefix="URGENT: DRUG RECALL"):
    """The recall communications among the mails sent (event notices may be there too)."""
    return [mail for mail in outbox if mail.subject.startswith(prefix)]


def refused(code: str, call, *args, **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.detail
    return caught.value


def test_opening_blocks_the_lot_lists_and_notifies_every_consignee(traded, mailoutbox, committed):
    c = traded

    with committed():
        decision = open_recall(c)

    recall = Recall.objects.get()
    assert decision.recall == recall
    assert recall.number.startswith(f"RC-{timezone.localdate().year}-")
    c.lot_a.refresh_from_db()
    assert c.lot_a.status == BatchStatus.RECALLED
    # signed by the manufacturer's QA officer, meaning "recall opened"
    signature = Signature.objects.get(object_model="recalls.recall", object_id=str(recall.pk))
    assert (signature.user, signature.meaning) == (c.manufacturer.qa, "recall_opened")
    # the forward trace at opening is the consignee list
    rows = {
        row.partner_id: (row.tier, row.supplier_id, row.quantity_shipped)
        for row in RecallConsignee.objects.filter(recall=recall)
    }
    mfr = c.manufacturer.partner.pk
    assert rows == {
        c.north.partner.pk: (1, mfr, 320),
        c.south.partner.pk: (1, mfr, 200),
        c.p1.partner.pk: (2, c.north.partner.pk, 50),
        c.p2.partner.pk: (2, c.north.partner.pk, 100),
        c.hospital.partner.pk: (2, c.south.partner.pk, 40),
    }
    assert recall.lots.get().quantity_distributed == 520
    # notified after the commit: e-mail (21 CFR 7.49 content), in-app notice; in progress
    recall.refresh_from_db()
    assert recall.status == RecallStatus.IN_PROGRESS
    assert RecallConsignee.objects.filter(recall=recall, notified_at__isnull=True).count() == 0
    assert RecallNotice.objects.filter(recall=recall, kind=NoticeKind.NOTIFICATION).count() == 5
    letters = recall_letters(mailoutbox)
    assert sorted(m.to[0] for m in letters) == sorted(
        m.partner.contact_email for m in (c.north, c.south, c.p1, c.p2, c.hospital)
    )
    mail = next(m for m in letters if m.to == [c.p1.partner.contact_email])
    assert mail.subject.startswith(f"URGENT: DRUG RECALL {recall.number}")
    for content in (
        c.product.gtin,
        "lot LOTA",
        "50 units shipped to you",
        TERMS["recall_reason"],
        TERMS["health_hazard"],
        TERMS["instructions"],
        f"/recalls/{recall.pk}/",
    ):
        assert content in mail.body, content


def test_nothing_is_written_when_the_password_is_wrong(traded, mailoutbox):
    c = traded

    refused("invalid_signature_password", open_recall, c, password="wrong-password")

    assert not Recall.objects.exists()
    assert not RecallConsignee.objects.exists()
    assert Batch.objects.get(pk=c.lot_a.pk).status == BatchStatus.RELEASED
    assert mailoutbox == []


def test_only_the_manufacturers_qa_officer_opens_a_recall(traded):
    c = traded
    refused("not_your_organisation", open_recall, c, signer=c.north.qa)
    refused("role_not_permitted", open_recall, c, signer=c.manufacturer.desk)
    assert not Recall.objects.exists()


def test_a_second_open_recall_of_a_lot_is_refused(traded):
    c = traded
    first = open_recall(c).recall

    error = refused("lot_already_under_recall", open_recall, c, lots=[c.lot_b, c.lot_a])

    assert first.number in error.detail
    assert Recall.objects.count() == 1
    assert Batch.objects.get(pk=c.lot_b.pk).status == BatchStatus.RELEASED


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"classification": "IV"}, "invalid_classification"),
        ({"depth": "shelf"}, "invalid_depth"),
        ({"effectiveness_level": "F"}, "invalid_effectiveness_level"),
        ({"effectiveness_level": "B"}, "invalid_effectiveness_percent"),
        (
            {"effectiveness_level": "C", "effectiveness_percent": 50},
            "invalid_effectiveness_percent",
        ),
        ({"recall_reason": " "}, "reason_required"),
        ({"health_hazard": ""}, "health_hazard_required"),
    ],
)
def test_bad_terms_are_refused_and_nothing_is_written(traded, overrides, code):
    refused(code, open_recall, traded, **overrides)
    assert not Recall.objects.exists()


def test_a_wholesale_level_recall_stops_at_the_distributors(traded):
    c = traded
    recall = open_recall(c, depth="wholesale").recall
    assert set(recall.consignees.values_list("partner_id", flat=True)) == {
        c.north.partner.pk,
        c.south.partner.pk,
    }


def test_level_b_samples_its_share_of_consignees(traded):
    recall = open_recall(traded, effectiveness_level="B", effectiveness_percent=40).recall
    sampled = set(
        recall.consignees.filter(sampled_for_check=True).values_list("partner_id", flat=True)
    )
    assert len(sampled) == 2  # 40% of 5 consignees


def test_a_lot_still_in_quarantine_is_held_by_the_recall(chain):
    """A lot in quarantine becomes recalled where ``BATCH_TRANSITIONS`` allows it and keeps its
    status otherwise; either way the hold check refuses it by the recall."""
    c = chain
    lot = c.lot("LOTQ", 10)
    lot.status = BatchStatus.QUARANTINE
    lot._change_reason = "test: QA hold"
    lot.save()

    recall = open_recall(c, lots=[lot]).recall

    lot.refresh_from_db()
    may_be_recalled = BatchStatus.RECALLED in BATCH_TRANSITIONS[BatchStatus.QUARANTINE]
    assert lot.status == (BatchStatus.RECALLED if may_be_recalled else BatchStatus.QUARANTINE)
    assert recall.lots.get().status_before == BatchStatus.QUARANTINE
    (hold,) = hooks.lot_holds(lot)
    assert (hold.code, hold.reference) == ("lot_recalled", recall.number)


# --- blocked everywhere: the hold check ----------------------------------------------------


def test_the_hold_check_names_the_recall(traded):
    c = traded
    assert hooks.lot_holds(c.lot_a) == []
    recall = open_recall(c).recall

    (hold,) = hooks.lot_holds(c.lot_a, c.north.storage)

    assert hold.code == "lot_recalled"
    assert hold.reference == recall.number
    assert recall.number in hold.detail
    assert hooks.lot_holds(c.lot_b) == []


def test_allocation_never_takes_a_recalled_lot(traded):
    """North holds only lot A (210 units) and lot B (80): after the recall of A an order of 100
    takes the 80 of B and backorders the rest; no unit of A is reserved."""
    c = traded
    open_recall(c)
    c._agree(c.north, c.p1)
    order = orders.order_create(
        buyer=c.p1.partner,
        seller=c.north.partner,
        ship_to=c.p1.site,
        lines=[{"product": c.product, "quantity": 100}],
        actor=c.p1.buyer,
        reason="order",
    )
    orders.order_submit(order=order, actor=c.p1.buyer, reason="send")
    orders.order_confirm(order=order, actor=c.north.desk, reason="ok")

    orders.order_allocate(order=order, actor=c.north.desk, reason="allocate")

    line = order.lines.get()
    assert (line.quantity_allocated, line.quantity_backordered) == (80, 20)
    reserved = StockAllocation.objects.filter(reference=line.allocation_reference)
    assert set(reserved.values_list("batch_id", flat=True)) == {c.lot_b.pk}


def test_a_shipment_planned_before_the_recall_is_refused_at_dispatch(traded):
    c = traded
    c._agree(c.north, c.p2)
    order = orders.order_create(
        buyer=c.p2.partner,
        seller=c.north.partner,
        ship_to=c.p2.site,
        lines=[{"product": c.product, "quantity": 10}],
        actor=c.p2.buyer,
        reason="order",
    )
    orders.order_submit(order=order, actor=c.p2.buyer, reason="send")
    orders.order_confirm(order=order, actor=c.north.desk, reason="ok")
    orders.order_allocate(order=order, actor=c.north.desk, reason="allocate")
    shipment = orders.shipment_create_from_order(order=order, actor=c.north.desk, reason="plan")
    assert shipment.lines.get().batch_id == c.lot_a.pk
    recall = open_recall(c).recall

    error = refused(
        "lot_recalled",
        orders.shipment_dispatch,
        shipment=shipment,
        actor=c.north.warehouse,
        reason="dispatch",
    )

    assert recall.number in error.detail
    shipment.refresh_from_db()
    assert shipment.status == "planned"


def test_units_in_transit_at_the_recall_are_received_into_quarantine(traded):
    c = traded
    open_recall(c)

    c.receive(c.in_transit, c.hospital)

    held = StockBalance.objects.get(batch=c.lot_a, location=c.hospital.quarantine)
    assert held.on_hand == 40
    assert not StockBalance.objects.filter(
        batch=c.lot_a, location=c.hospital.storage, on_hand__gt=0
    ).exists()


# --- answers, reminders --------------------------------------------------------------------


def test_a_consignee_acknowledges_with_its_figures(traded):
    c = traded
    recall = open_recall(c).recall

    row = services.recall_acknowledge(
        recall=recall, actor=c.p1.buyer, quantity_on_hand=30, quantity_returned=10
    )

    assert row.acknowledged_by == c.p1.buyer
    assert (row.quantity_on_hand_reported, row.quantity_returned_reported) == (30, 10)
    assert row.history.first().history_change_reason == "recall acknowledged"


def test_acknowledgements_out_of_bounds_are_refused(traded):
    c = traded
    recall = open_recall(c).recall
    outsider = c.add("Never Supplied")

    refused(
        "not_a_consignee",
        services.recall_acknowledge,
        recall=recall,
        actor=outsider.buyer,
        quantity_on_hand=0,
        quantity_returned=0,
    )
    refused(
        "returned_exceeds_shipped",
        services.recall_acknowledge,
        recall=recall,
        actor=c.p1.buyer,
        quantity_on_hand=0,
        quantity_returned=51,
    )
    refused(
        "accounted_exceeds_shipped",
        services.recall_acknowledge,
        recall=recall,
        actor=c.p1.buyer,
        quantity_on_hand=45,
        quantity_returned=10,
    )
    refused(
        "invalid_quantity",
        services.recall_acknowledge,
        recall=recall,
        actor=c.p1.buyer,
        quantity_on_hand=-1,
        quantity_returned=0,
    )
    assert not recall.consignees.filter(acknowledged_at__isnull=False).exists()


def test_a_consignee_of_two_lots_answers_for_each(traded):
    c = traded
    recall = open_recall(c, lots=[c.lot_a, c.lot_b]).recall
    kwargs = {"recall": recall, "actor": c.north.qa, "quantity_on_hand": 0, "quantity_returned": 0}

    refused("lot_required", services.recall_acknowledge, **kwargs)
    row = services.recall_acknowledge(batch=c.lot_b, **kwargs | {"quantity_on_hand": 80})

    assert (row.batch_id, row.quantity_on_hand_reported) == (c.lot_b.pk, 80)


def test_silent_consignees_are_reminded(traded, mailoutbox, committed):
    c = traded
    with committed():
        recall = open_recall(c).recall
    services.recall_acknowledge(
        recall=recall, actor=c.p1.buyer, quantity_on_hand=40, quantity_returned=10
    )
    mailoutbox.clear()

    assert services.recall_reminders_send() == 0  # too early
    later = timezone.now() + datetime.timedelta(hours=25)
    with committed():
        reminded = services.recall_reminders_send(now=later)

    assert reminded == 4
    letters = recall_letters(mailoutbox, "REMINDER")
    assert {m.to[0] for m in letters} == {
        c.north.partner.contact_email,
        c.south.partner.contact_email,
        c.p2.partner.contact_email,
        c.hospital.partner.contact_email,
    }
    assert len(letters) == 4
    assert recall.consignees.get(partner=c.p2.partner).reminders_sent == 1
    assert recall.consignees.get(partner=c.p1.partner).reminders_sent == 0
    assert services.recall_reminders_send(now=later) == 0  # once per interval


# --- closing -------------------------------------------------------------------------------


def close(c, recall, **kwargs):
    return services.recall_close(
        recall=recall,
        signer=c.manufacturer.qa,
        password=TEST_PASSWORD,
        reason="recall complete",
        **kwargs,
    )


def test_closing_with_silent_consignees_needs_a_signed_justification(traded, committed):
    c = traded
    with committed():
        recall = open_recall(c).recall

    error = refused("consignees_unaccounted", close, c, recall)
    assert error.extra == {"unaccounted": 5}
    assert Recall.objects.get().status == RecallStatus.IN_PROGRESS

    decision = close(c, recall, justification="hospital closed; regulator informed")

    assert decision.recall.status == RecallStatus.COMPLETED
    assert decision.recall.closing_justification == "hospital closed; regulator informed"
    assert decision.signature.meaning == "recall_closed"
    refused(
        "recall_not_running",
        services.recall_acknowledge,
        recall=recall,
        actor=c.p1.buyer,
        quantity_on_hand=0,
        quantity_returned=0,
    )


def test_a_recall_answered_by_all_closes_and_then_terminates(traded):
    c = traded
    recall = open_recall(c).recall
    for member in (c.north, c.south, c.p1, c.p2, c.hospital):
        services.recall_acknowledge(
            recall=recall, actor=member.buyer, quantity_on_hand=0, quantity_returned=0
        )
    close(c, recall)

    decision = services.recall_terminate(
        recall=recall,
        signer=c.manufacturer.qa,
        password=TEST_PASSWORD,
        reason="FDA termination letter of 2026-12-01",
    )

    assert decision.recall.status == RecallStatus.TERMINATED
    meanings = list(
        Signature.objects.filter(object_id=str(recall.pk), object_model="recalls.recall")
        .order_by("id")
        .values_list("meaning", flat=True)
    )
    assert meanings == ["recall_opened", "recall_closed", "recall_closed"]
    # the lot stays held after the recall ends
    assert hooks.lot_holds(c.lot_a)[0].reference == recall.number


def test_a_pick_of_a_recalled_lot_is_refused_naming_the_recall(traded):
    c = traded
    c._agree(c.north, c.p1)
    order = orders.order_create(
        buyer=c.p1.partner,
        seller=c.north.partner,
        ship_to=c.p1.site,
        lines=[{"product": c.product, "quantity": 10}],
        actor=c.p1.buyer,
        reason="order",
    )
    orders.order_submit(order=order, actor=c.p1.buyer, reason="send")
    orders.order_confirm(order=order, actor=c.north.desk, reason="ok")
    orders.order_allocate(order=order, actor=c.north.desk, reason="allocate")
    shipment = orders.shipment_create_from_order(order=order, actor=c.north.desk, reason="plan")
    recall = open_recall(c).recall

    error = refused(
        "lot_recalled",
        orders.shipment_pick,
        shipment=shipment,
        batch=c.lot_a,
        quantity=5,
        location=c.north.storage,
        actor=c.north.warehouse,
        reason="pick",
    )

    assert recall.number in error.detail
    assert shipment.lines.get().picked_quantity == 0


def test_running_recalls_get_a_status_report_on_schedule(traded, django_assert_num_queries):
    """21 CFR 7.53(b): the schedule makes a status report of every running recall whose last
    one is older than the interval, made by the platform's own account; a drill is not
    reported, and a recall reported within the interval is not reported again."""
    c = traded
    first = open_recall(c).recall
    second = open_recall(c, [c.lot_b], recall_reason="label mix-up").recall
    drill = services.recall_drill_run(lots=[c.lot_a], actor=c.manufacturer.qa, reason="drill")
    reports_of_drill = drill.status_reports.count()

    assert services.status_reports_due() == 2
    for recall in (first, second):
        (report,) = recall.status_reports.all()
        assert report.scheduled
        assert report.generated_by == system_account()
    assert drill.status_reports.count() == reports_of_drill

    # Nothing is due within the interval: the running recalls and their last reports are read
    # in one statement, whatever their number.
    with django_assert_num_queries(1):
        assert services.status_reports_due() == 0

    # Once the interval has passed since the last report, each is due again.
    interval = services.status_report_interval()
    just_before = timezone.now() + interval - datetime.timedelta(minutes=1)
    assert services.status_reports_due(now=just_before) == 0
    later = timezone.now() + interval + datetime.timedelta(seconds=1)
    assert services.status_reports_due(now=later) == 2
    assert [first.status_reports.count(), second.status_reports.count()] == [2, 2]


def test_a_drills_statements_do_not_grow_with_its_consignees(traded):
    """EU GDP 6.5: the drill proves the recall can be run quickly; its statements stay the same
    in number however many consignees the lot reached (no query per consignee)."""
    c = traded
    qa = c.manufacturer.qa

    def drill_statements() -> tuple[Recall, int]:
        with CaptureQueriesContext(connection) as captured:
            drill = services.recall_drill_run(lots=[c.lot_a], actor=qa, reason="drill")
        return drill, len(captured)

    drill_statements()  # the first of the year also starts the year's drill numbers
    first, before = drill_statements()
    for name in ("Pharmacy Three", "Pharmacy Four", "Pharmacy Five"):
        c.ship(c.north, c.add(name), 5)
    second, after = drill_statements()

    assert second.consignees.count() == first.consignees.count() + 3
    assert after == before
