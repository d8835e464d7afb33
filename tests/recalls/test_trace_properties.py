"""The trace against an independent recomputation from the ledger, on random networks
(hypothesis): every unit of the lot is attributed to exactly one holder, to the road, or to its
leaving the network, and each partner's figures are what its own moves say.

The networks are traded through the real services (``tests/recalls/conftest.py``'s Chain):
sales down and across the chain, receipts with damaged and short units, shipments left in
transit, returns received by the supplier. Each example runs in a savepoint rolled back after it.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batches.models import MoveKind, StockBalance, StockMove
from orders import services as orders
from orders.models import Shipment
from partners.models import Location
from recalls.selectors import trace_forward, trace_lot
from tests.conftest import build_network
from tests.recalls.conftest import Chain

MADE = 400

# One sale: seller and buyer by index into [manufacturer, north, south, pharmacy 1..3], the
# share of the seller's stock sold, and what happens at the buyer's dock.
docks = st.sampled_from(["received", "in_transit", "damaged", "short"])
sale = st.tuples(
    st.integers(0, 2),  # seller: the manufacturer or a wholesaler
    st.integers(1, 5),  # buyer: a wholesaler or a pharmacy
    st.integers(1, 100),  # percent of the seller's stock
    docks,
    st.integers(0, 100),  # percent of what arrived sent back (returns), 0 for none
)
# The manufacturer first supplies both wholesalers (received, so they have stock to sell on),
# then anything goes.
sales = st.tuples(
    st.tuples(st.just(0), st.just(1), st.integers(20, 60), st.just("received"), st.just(0)),
    st.tuples(st.just(0), st.just(2), st.integers(20, 90), st.just("received"), st.just(0)),
).flatmap(lambda first: st.lists(sale, min_size=1, max_size=6).map(lambda rest: [*first, *rest]))


def storage_stock(chain, member, lot) -> int:
    balance = StockBalance.objects.filter(batch=lot, location=member.storage).first()
    return balance.on_hand - balance.allocated if balance else 0


def trade(chain, lot, plan) -> int:
    """Run the plan's sales that the sellers' stock allows; the number of shipments made."""
    c = chain
    made = 0
    members = [c.manufacturer, c.north, c.south, *c.pharmacies]
    for seller_index, buyer_index, percent, dock, give_back in plan:
        seller, buyer = members[seller_index], members[buyer_index]
        if seller is buyer:
            continue
        quantity = storage_stock(c, seller, lot) * percent // 100
        if quantity < 3:
            continue
        receive = dock != "in_transit"
        shipment = c.ship(
            seller,
            buyer,
            quantity,
            receive=receive,
            damaged=1 if dock == "damaged" else 0,
            short=1 if dock == "short" else 0,
        )
        made += 1
        arrived = shipment.lines.get().received_quantity or 0
        back = arrived * give_back // 100
        if receive and back:
            c.give_back(shipment, buyer, seller, back)
    return made


def ledger_figures(lot) -> dict[int, dict[str, int]]:
    """Each partner's figures from the moves alone: what sits in its places (the road apart),
    what left the network from it, what it sent back, what was dispatched to it and delivered."""
    partner_of = dict(Location.objects.values_list("pk", "site__partner_id"))
    transit = set(Location.objects.filter(kind="in_transit").values_list("pk", flat=True))
    buyer_of = {
        f"shipment:{number}": buyer
        for number, buyer in Shipment.objects.values_list("number", "order__buyer_id")
    }
    figures: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for kind, source, target, units, reference in StockMove.objects.filter(batch=lot).values_list(
        "kind", "from_location_id", "to_location_id", "quantity", "reference"
    ):
        if source is not None:
            key = "in_transit" if source in transit else "on_hand"
            figures[partner_of[source]][key] -= units
            if target is None:
                gone = "destroyed" if kind == MoveKind.DESTRUCTION else "written_off"
                figures[partner_of[source]][gone] += units
            if kind == MoveKind.RETURN:
                figures[partner_of[source]]["returned"] += units
            if kind == MoveKind.SHIPMENT:
                figures[buyer_of[reference]]["shipped_in"] += units
        if target is not None:
            key = "in_transit" if target in transit else "on_hand"
            figures[partner_of[target]][key] += units
            if kind == MoveKind.DELIVERY:
                figures[partner_of[target]]["received"] += units
    return figures


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=sales)
def test_every_unit_is_attributed_once_as_the_ledger_says(db, plan):
    with transaction.atomic():
        c = Chain(build_network())
        c.pharmacies = [c.add(f"Pharmacy {n}") for n in range(1, 4)]
        lot = c.lot("PROP", MADE)
        assert trade(c, lot, plan) >= 2

        trace = trace_forward(batch=lot)
        expected = ledger_figures(lot)

        # every unit made is in exactly one place: a holder's shelves, the road, or gone
        assert (
            sum(n.on_hand + n.in_transit + n.destroyed + n.written_off for n in trace.nodes) == MADE
        )
        for node in trace.nodes:
            own = expected.get(node.partner_id, {})
            for name in (
                "on_hand",
                "in_transit",
                "destroyed",
                "written_off",
                "returned",
                "shipped_in",
                "received",
            ):
                assert getattr(node, name) == own.get(name, 0), (node.partner_id, name)
        # and nobody holding the lot is missing from the trace
        holders = {p for p, own in expected.items() if own.get("on_hand") or own.get("in_transit")}
        assert holders <= {node.partner_id for node in trace.nodes}
        if connection.vendor == "postgresql":
            assert trace_lot(batch=lot, portable=True) == trace_lot(batch=lot, portable=False)
        transaction.set_rollback(True)


def test_a_line_picked_short_to_nothing_is_no_edge(traded):
    """North ships a pharmacy lot B only: the line of lot A it planned was not picked and keeps
    quantity 0 after dispatch. Lot A's trace does not reach the pharmacy (nor count the line);
    lot B's does."""
    c = traded
    p3 = c.add("Pharmacy Three")
    c._agree(c.north, p3)
    order = orders.order_create(
        buyer=p3.partner,
        seller=c.north.partner,
        ship_to=p3.site,
        lines=[{"product": c.product, "quantity": 250}],
        actor=p3.buyer,
        reason="order",
    )
    orders.order_submit(order=order, actor=p3.buyer, reason="send")
    orders.order_confirm(order=order, actor=c.north.desk, reason="ok")
    orders.order_allocate(order=order, actor=c.north.desk, reason="allocate")
    shipment = orders.shipment_create_from_order(order=order, actor=c.north.desk, reason="plan")
    lines = {line.batch_id: line for line in shipment.lines.all()}
    assert set(lines) == {c.lot_a.pk, c.lot_b.pk}  # FEFO: lot A first, then lot B
    orders.shipment_pick(
        shipment=shipment,
        batch=c.lot_b,
        quantity=lines[c.lot_b.pk].quantity,
        location=c.north.storage,
        actor=c.north.warehouse,
        reason="picked",
    )
    orders.shipment_dispatch(shipment=shipment, actor=c.north.warehouse, reason="dispatch")
    lines[c.lot_a.pk].refresh_from_db()
    assert lines[c.lot_a.pk].quantity == 0

    paths = [True, False] if connection.vendor == "postgresql" else [True]
    for portable in paths:
        trace_a = trace_lot(batch=c.lot_a, portable=portable)
        assert p3.partner.pk not in {node.partner_id for node in trace_a.nodes}
        assert all(edge.shipped > 0 for edge in trace_a.edges)
        trace_b = trace_lot(batch=c.lot_b, portable=portable)
        assert trace_b.node(p3.partner.pk).shipped_in == lines[c.lot_b.pk].quantity
        assert trace_b.node(p3.partner.pk).in_transit == 0
        assert trace_b.node(c.north.partner.pk).in_transit == lines[c.lot_b.pk].quantity
