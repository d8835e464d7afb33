"""``seed_network`` loads a synthetic network whose ledger is whole (moves and balances agree)
and whose trace is real, and refuses any database that is not empty."""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from batches.models import Batch, StockBalance, StockMove
from orders.models import Shipment, ShipmentLine
from partners.models import Partner, PartnerKind
from pharmadms.exceptions import RuleViolation
from recalls.selectors import trace_forward
from recalls.synthetic import LOTS_PER_PHARMACY, seed_network
from tests.factories import PartnerFactory


@pytest.fixture
def seeded(db):
    return seed_network(pharmacies=40, wholesalers=3, lots=12, seed=3)


def test_the_ledger_of_the_synthetic_network_is_whole(seeded):
    """Every balance is the sum of the moves in and out of its place, nothing is below zero,
    and every unit produced of each lot is somewhere on hand or in transit."""
    expected: dict[tuple[int, int], int] = defaultdict(int)
    for batch, source, target, quantity in StockMove.objects.values_list(
        "batch_id", "from_location_id", "to_location_id", "quantity"
    ):
        if source:
            expected[(batch, source)] -= quantity
        if target:
            expected[(batch, target)] += quantity
    balances = {(row.batch_id, row.location_id): row.on_hand for row in StockBalance.objects.all()}
    assert balances == dict(expected)
    assert min(balances.values()) >= 0
    for lot in Batch.objects.all():
        produced = StockMove.objects.filter(batch=lot, kind="receipt").aggregate(
            units=Sum("quantity")
        )["units"]
        assert (
            StockBalance.objects.filter(batch=lot).aggregate(units=Sum("on_hand"))["units"]
            == produced
        )


def test_the_synthetic_network_has_the_asked_shape_and_a_real_trace(seeded):
    assert Partner.objects.filter(kind=PartnerKind.WHOLESALER).count() == 3
    assert Partner.objects.filter(kind=PartnerKind.PHARMACY).count() == 40
    assert seeded.shipment_lines == ShipmentLine.objects.count()
    # every wholesaler buys every lot; every pharmacy its share of the lots
    assert seeded.shipment_lines == 3 * 12 + 40 * min(12, LOTS_PER_PHARMACY)
    assert Shipment.objects.filter(status="dispatched").exists()  # some still in transit
    lot = Batch.objects.order_by("pk").first()
    trace = trace_forward(batch=lot)
    assert {node.tier for node in trace.nodes} == {0, 1, 2}
    produced = StockMove.objects.filter(batch=lot, kind="receipt").get().quantity
    held = sum(node.on_hand + node.in_transit for node in trace.nodes)
    assert held == produced
    # what each consignee got is what the lines of the lot say
    for node in trace.consignees:
        shipped = ShipmentLine.objects.filter(
            batch=lot, shipment__order__buyer_id=node.partner_id
        ).aggregate(units=Sum("quantity"))["units"]
        assert node.shipped_in == shipped


def test_a_database_that_is_not_empty_is_refused(seeded):
    """Run twice: the second run is refused and adds nothing."""
    partners = Partner.objects.count()
    with pytest.raises(RuleViolation) as refused:
        seed_network(pharmacies=1, wholesalers=1, lots=1)
    assert refused.value.code == "database_not_empty"
    assert Partner.objects.count() == partners


def test_the_command_refuses_a_database_with_real_partners(db):
    PartnerFactory()
    with pytest.raises(CommandError, match="database_not_empty"):
        call_command("seed_network", pharmacies=2, wholesalers=1, lots=1)
    assert Partner.objects.count() == 1


def test_the_command_loads_and_says_what_it_is(db, capsys):
    call_command("seed_network", pharmacies=5, wholesalers=2, lots=3)
    out = capsys.readouterr().out
    assert "8 partners" in out  # the manufacturer, 2 wholesalers, 5 pharmacies
    assert "synthetic data for drills and benchmarks" in out
