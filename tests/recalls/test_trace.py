"""The trace of a lot: forward to every consignee at every tier, backward to the manufacturer,
with each partner's figures from the ledger; the recursive query and the per-tier path agree."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from batches.models import StockBalance
from orders.models import ShipmentLine
from recalls.selectors import trace_backward, trace_forward, trace_lot

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: set DATABASE_URL=postgres://..."
)


def figures(trace, member) -> dict:
    node = trace.node(member.partner.pk)
    return {
        "tier": node.tier,
        "shipped_in": node.shipped_in,
        "received": node.received,
        "returned": node.returned,
        "shipped_onward": node.shipped_onward,
        "on_hand": node.on_hand,
        "in_transit": node.in_transit,
    }


def test_forward_trace_reaches_every_tier_with_ledger_figures(traded):
    c = traded

    trace = trace_forward(batch=c.lot_a)

    assert trace.origin_id == c.manufacturer.partner.pk
    assert [[node.partner_id for node in tier] for tier in trace.tiers()] == [
        [c.manufacturer.partner.pk],
        sorted([c.north.partner.pk, c.south.partner.pk]),
        sorted([c.p1.partner.pk, c.p2.partner.pk, c.hospital.partner.pk]),
    ]
    assert figures(trace, c.manufacturer) | {"tier": 0} == {
        "tier": 0,
        "shipped_in": 0,
        "received": 0,
        "returned": 0,
        "shipped_onward": 520,
        "on_hand": 0,
        "in_transit": 0,
    }
    # North: 300 + the 20 units of lot A in the split delivery; 120 sold on; 10 came back.
    assert figures(trace, c.north) == {
        "tier": 1,
        "shipped_in": 320,
        "received": 320,
        "returned": 0,
        "shipped_onward": 120,
        "on_hand": 210,
        "in_transit": 0,
    }
    assert figures(trace, c.south) == {
        "tier": 1,
        "shipped_in": 200,
        "received": 200,
        "returned": 0,
        "shipped_onward": 70,
        "on_hand": 130,
        "in_transit": 40,
    }
    assert figures(trace, c.p1) == {
        "tier": 2,
        "shipped_in": 50,
        "received": 50,
        "returned": 10,
        "shipped_onward": 0,
        "on_hand": 40,
        "in_transit": 0,
    }
    # Pharmacy Two is supplied by both wholesalers: one partner, both edges.
    assert figures(trace, c.p2)["shipped_in"] == 100
    assert figures(trace, c.hospital) == {
        "tier": 2,
        "shipped_in": 40,
        "received": 0,
        "returned": 0,
        "shipped_onward": 0,
        "on_hand": 0,
        "in_transit": 0,
    }
    assert trace.node(c.hospital.partner.pk).contact_email == c.hospital.partner.contact_email


def test_a_split_delivery_counts_under_each_lot(traded):
    """One delivery of 100 units carried 20 of lot A and 80 of lot B: each lot's trace holds
    its own part only."""
    c = traded
    lines = {line.batch_id: line.quantity for line in c.split.lines.all()}
    assert lines == {c.lot_a.pk: 20, c.lot_b.pk: 80}

    trace_b = trace_forward(batch=c.lot_b)

    assert [node.partner_id for node in trace_b.consignees] == [c.north.partner.pk]
    assert trace_b.node(c.north.partner.pk).shipped_in == 80
    assert trace_b.node(c.north.partner.pk).on_hand == 80
    edge_a = next(
        edge
        for edge in trace_forward(batch=c.lot_a).edges
        if edge.consignee_id == c.north.partner.pk
    )
    assert (edge_a.shipped, edge_a.lines) == (320, 2)


def test_backward_trace_climbs_to_the_manufacturer(traded):
    c = traded

    trace = trace_backward(batch=c.lot_a, holder=c.p2.partner)

    assert trace.direction == "backward"
    levels = {node.partner_id: node.tier for node in trace.nodes}
    assert levels == {
        c.p2.partner.pk: 0,
        c.north.partner.pk: 1,
        c.south.partner.pk: 1,
        c.manufacturer.partner.pk: 2,
    }
    assert {(edge.supplier_id, edge.consignee_id, edge.shipped) for edge in trace.edges} == {
        (c.north.partner.pk, c.p2.partner.pk, 70),
        (c.south.partner.pk, c.p2.partner.pk, 30),
        (c.manufacturer.partner.pk, c.north.partner.pk, 320),
        (c.manufacturer.partner.pk, c.south.partner.pk, 200),
    }
    # Pharmacy One and the hospital are not on Pharmacy Two's supply chain.
    assert c.p1.partner.pk not in levels


def test_a_forward_trace_from_a_wholesaler_covers_its_own_customers_only(traded):
    c = traded

    trace = trace_forward(batch=c.lot_a, origin=c.north.partner)

    assert {node.partner_id for node in trace.consignees} == {
        c.p1.partner.pk,
        c.p2.partner.pk,
    }
    assert trace.node(c.p2.partner.pk).shipped_in == 70


def test_the_trace_reads_a_fixed_number_of_queries_per_tier(traded):
    """Never one query per partner: the walk costs one query per tier on the portable path (one
    in all on PostgreSQL), and the partners' names and ledger figures one query more."""
    c = traded
    with CaptureQueriesContext(connection) as portable:
        trace_lot(batch=c.lot_a, portable=True)
    # three tiers: each one's frontier queried once (the last finds no edge onward)
    assert len(portable.captured_queries) == 3 + 1
    if connection.vendor == "postgresql":
        with CaptureQueriesContext(connection) as recursive:
            trace_lot(batch=c.lot_a, portable=False)
        assert len(recursive.captured_queries) == 1 + 1


def test_more_partners_do_not_cost_more_queries(chain):
    c = chain
    lot = c.lot("BIG", 400)
    wholesalers = [c.north, c.south]
    pharmacies = [c.add(f"Pharmacy {index}") for index in range(6)]
    c.ship(c.manufacturer, c.north, 100)
    c.ship(c.manufacturer, c.south, 100)
    for index, pharmacy in enumerate(pharmacies):
        c.ship(wholesalers[index % 2], pharmacy, 5)
    with CaptureQueriesContext(connection) as queries:
        trace = trace_lot(batch=lot, portable=True)
    assert len(trace.consignees) == 8
    assert len(queries.captured_queries) == 3 + 1


# --- both paths, and an independent recomputation, on random networks ---------------------


def random_network(chain, seed: int):
    """A manufacturer, the two wholesalers and five pharmacies trading two lots at random."""
    rng = random.Random(seed)
    c = chain
    c.lot("RA", 300, expires_in=300)
    c.lot("RB", 300, expires_in=500)
    pharmacies = [c.add(f"Pharmacy {seed}-{n}") for n in range(5)]
    wholesalers = [c.north, c.south]
    for wholesaler in wholesalers:
        c.ship(c.manufacturer, wholesaler, rng.randint(120, 260))
    for _ in range(6):
        seller = rng.choice(wholesalers)
        held = sum(
            StockBalance.objects.filter(location=seller.storage).values_list("on_hand", flat=True)
        )
        if held < 10:
            continue
        c.ship(
            seller,
            rng.choice(pharmacies),
            rng.randint(1, min(held, 60)),
            receive=rng.random() > 0.2,
        )
    # a sub-wholesale sale between the wholesalers
    held = sum(
        StockBalance.objects.filter(location=c.north.storage).values_list("on_hand", flat=True)
    )
    if held:
        c.ship(c.north, c.south, rng.randint(1, held))
    return c


def recompute(batch, origin_id: int) -> dict[int, tuple[int, int, int]]:
    """Forward figures from first principles: walk every shipped line of the lot in Python."""
    edges = defaultdict(list)
    for line in ShipmentLine.objects.filter(
        batch=batch, shipment__status__in=["dispatched", "delivered", "received"]
    ).select_related("shipment__order"):
        if line.quantity:  # a line picked short to nothing carried no unit
            edges[line.shipment.order.seller_id].append(line)
    tiers, frontier = {origin_id: 0}, [origin_id]
    shipped_in: dict[int, int] = defaultdict(int)
    received: dict[int, int] = defaultdict(int)
    while frontier:
        following = []
        for seller in frontier:
            for line in edges[seller]:
                buyer = line.shipment.order.buyer_id
                shipped_in[buyer] += line.quantity
                if line.received_quantity is not None:
                    received[buyer] += line.received_quantity + line.damaged_quantity
                if buyer not in tiers:
                    tiers[buyer] = tiers[seller] + 1
                    following.append(buyer)
        frontier = following
    return {p: (tiers[p], shipped_in[p], received[p]) for p in tiers if p != origin_id}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_trace_matches_an_independent_recomputation(chain, seed):
    """Every unit of the lot is where the trace says: each consignee's tier, units shipped in
    and received match a recomputation from the shipment lines, and the units held, in transit
    or gone from the network add up to what the manufacturer made, counted once each."""
    c = random_network(chain, seed)
    for batch in c.product.batches.all():
        trace = trace_forward(batch=batch)
        expected = recompute(batch, c.manufacturer.partner.pk)
        assert {
            node.partner_id: (node.tier, node.shipped_in, node.received)
            for node in trace.consignees
        } == expected
        made = 300
        placed = sum(
            node.on_hand + node.in_transit + node.destroyed + node.written_off
            for node in trace.nodes
        )
        assert placed == made


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("seed", [4, 5])
def test_the_recursive_query_and_the_per_tier_path_give_the_same_trace(chain, seed):
    c = random_network(chain, seed)
    compared = 0
    for batch in c.product.batches.all():
        for direction, origins in (
            ("forward", [None, c.north.partner]),
            ("backward", [m.partner for m in c.members.values()]),
        ):
            for origin in origins:
                recursive = trace_lot(
                    batch=batch, origin=origin, direction=direction, portable=False
                )
                portable = trace_lot(batch=batch, origin=origin, direction=direction, portable=True)
                assert recursive == portable
                compared += bool(recursive.edges)
    assert compared >= 4  # the comparison covered traces with something in them


@pytest.mark.postgres
@needs_postgres
def test_the_recursive_query_stops_on_a_cycle(chain):
    """North sells to South and South back to North: the walk ends, each partner once."""
    c = chain
    lot = c.lot("CYC", 100)
    c.ship(c.manufacturer, c.north, 60)
    c.ship(c.north, c.south, 30)
    c.ship(c.south, c.north, 10)
    recursive = trace_lot(batch=lot, portable=False)
    assert recursive == trace_lot(batch=lot, portable=True)
    assert {node.partner_id: node.tier for node in recursive.nodes} == {
        c.manufacturer.partner.pk: 0,
        c.north.partner.pk: 1,
        c.south.partner.pk: 2,
    }
