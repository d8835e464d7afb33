"""Reads of the recalls app: the trace of a lot through the distribution chain, and recalls.

The trace follows the lot's shipment lines (the edges of the trace graph, seller → buyer) from
an origin partner: forward to every consignee at every tier, or backward up its supply chain to
the manufacturer. Each partner it reaches carries the lot's figures from the ledger: units
shipped to it, received, returned, shipped onward, on hand, in transit, destroyed and written
off. A delivery that mixes several lots counts under each lot separately, since every shipment
line carries exactly one lot.

Two paths give the same :class:`Trace`:
- PostgreSQL: one recursive query walks the graph (``WITH RECURSIVE``), a few milliseconds even
  over hundreds of thousands of shipment lines;
- any database (SQLite): one set-based query per tier, never one per partner.
One more query then reads the names, contacts and ledger figures of every partner reached,
whatever their number: a trace on PostgreSQL is two queries. A shipment line of which nothing
was picked (``quantity`` 0 after dispatch) carried nothing and is no edge of the trace.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from django.db import connection
from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Sum, Value, When

from batches.hooks import Hold
from batches.models import Batch, MoveKind, StockBalance, StockMove
from orders.models import (
    SHIPMENT_SENT_STATUSES,
    Order,
    ReturnLine,
    ReturnStatus,
    Shipment,
    ShipmentLine,
)
from partners.models import Location, LocationKind, Partner

from .models import Recall, RecallConsignee, RecallLot

Direction = Literal["forward", "backward"]
DIRECTIONS: tuple[Direction, ...] = ("forward", "backward")
# Returned units have left the customer once the seller received them.
RETURNED_STATUSES = (ReturnStatus.RECEIVED, ReturnStatus.DISPOSED)
# A real chain has three or four tiers; the bound only stops a cycle (A sells to B, B to A).
MAX_TIERS = 32


@dataclass(frozen=True)
class TraceEdge:
    """Units of the lot that went from ``supplier_id`` to ``consignee_id`` (all their lines).

    ``tier`` is, forward, the consignee's distance from the origin through this edge; backward,
    the supplier's distance above the origin.
    """

    supplier_id: int
    consignee_id: int
    tier: int
    shipped: int
    received: int
    lines: int


@dataclass(frozen=True)
class TraceNode:
    """A partner reached by the trace, with the lot's figures there (from the ledger)."""

    partner_id: int
    name: str
    gln: str
    kind: str
    region: str
    contact_email: str
    contact_phone: str
    tier: int  # 0: the origin; forward, tiers below it; backward, levels above it
    shipped_in: int = 0  # units shipped to it
    received: int = 0  # units it checked in (sound and damaged)
    returned: int = 0  # units it sent back, received by its supplier
    shipped_onward: int = 0  # units it shipped to its own customers
    on_hand: int = 0  # units in its storage, quarantine and returns locations
    in_transit: int = 0  # units it dispatched that its customers have not received yet
    destroyed: int = 0  # units it destroyed
    written_off: int = 0  # units that left the network from it otherwise (dispensed, lost)


@dataclass(frozen=True)
class Trace:
    """The trace of one lot from one partner, in one direction."""

    batch_id: int
    direction: Direction
    origin_id: int
    nodes: tuple[TraceNode, ...]
    edges: tuple[TraceEdge, ...]

    def node(self, partner_id: int) -> TraceNode:
        return next(node for node in self.nodes if node.partner_id == partner_id)

    @property
    def consignees(self) -> tuple[TraceNode, ...]:
        """Every partner reached but the origin."""
        return tuple(node for node in self.nodes if node.partner_id != self.origin_id)

    def tiers(self) -> list[list[TraceNode]]:
        """The nodes in columns: the origin's tier first."""
        columns: dict[int, list[TraceNode]] = defaultdict(list)
        for node in self.nodes:
            columns[node.tier].append(node)
        return [columns[tier] for tier in sorted(columns)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch_id,
            "direction": self.direction,
            "origin": self.origin_id,
            "nodes": [asdict(node) for node in self.nodes],
            "edges": [asdict(edge) for edge in self.edges],
        }


# --- the walk: which edges, at which tier ----------------------------------------------------

_LINE, _SHIPMENT, _ORDER = (
    ShipmentLine._meta.db_table,
    Shipment._meta.db_table,
    Order._meta.db_table,
)
_RECEIVED_UNITS = (
    "CASE WHEN sl.received_quantity IS NULL THEN 0"
    " ELSE sl.received_quantity + sl.damaged_quantity END"
)


def _recursive_sql(direction: Direction) -> str:
    """The PostgreSQL walk: lot edges aggregated per (supplier, consignee), the partners reached
    at their least depth, and each edge leaving (forward) or entering (backward) one of them.

    A line of which nothing was picked keeps ``quantity`` 0 after dispatch: it carried nothing
    and is no edge (``sl.quantity > 0``). The lot's lines, their shipments and orders are read
    from the covering indexes of migration 0002 (index-only nested loops, no scan of the
    shipments)."""
    if direction == "forward":
        step = "SELECT e.consignee_id, w.depth + 1 FROM walk w JOIN lot_edges e"
        step += " ON e.supplier_id = w.partner_id WHERE w.depth < %(max)s"
        anchor = "e.supplier_id"
    else:
        step = "SELECT e.supplier_id, w.depth + 1 FROM walk w JOIN lot_edges e"
        step += " ON e.consignee_id = w.partner_id WHERE w.depth < %(max)s"
        anchor = "e.consignee_id"
    # Table names come from the models; every value is bound as a parameter.
    return (
        "WITH RECURSIVE lot_edges AS ("  # noqa: S608
        " SELECT o.seller_id AS supplier_id, o.buyer_id AS consignee_id,"
        " SUM(sl.quantity) AS shipped,"
        f" SUM({_RECEIVED_UNITS}) AS received, COUNT(*) AS lines"
        f" FROM {_LINE} sl JOIN {_SHIPMENT} s ON s.id = sl.shipment_id"
        f" JOIN {_ORDER} o ON o.id = s.order_id"
        " WHERE sl.batch_id = %(batch)s AND sl.quantity > 0 AND s.status = ANY(%(statuses)s)"
        " GROUP BY o.seller_id, o.buyer_id),"
        " walk(partner_id, depth) AS ("
        f" SELECT CAST(%(origin)s AS bigint), 0 UNION {step}),"
        " reached AS (SELECT partner_id, MIN(depth) AS depth FROM walk GROUP BY partner_id)"
        " SELECT e.supplier_id, e.consignee_id, r.depth + 1, e.shipped, e.received, e.lines"
        f" FROM lot_edges e JOIN reached r ON r.partner_id = {anchor}"
        " WHERE r.depth < %(max)s"
        " ORDER BY 3, 1, 2"
    )


def _walk_params(batch_id: int, origin_id: int) -> dict[str, Any]:
    return {
        "batch": batch_id,
        "origin": origin_id,
        "statuses": [str(status) for status in SHIPMENT_SENT_STATUSES],
        "max": MAX_TIERS,
    }


def recursive_walk_query(
    batch_id: int, origin_id: int, direction: Direction = "forward"
) -> tuple[str, dict[str, Any]]:
    """The PostgreSQL walk as SQL and parameters: what ``bench/recall.py`` times bare."""
    return _recursive_sql(direction), _walk_params(batch_id, origin_id)


def _walk_recursive(batch_id: int, origin_id: int, direction: Direction) -> list[TraceEdge]:
    with connection.cursor() as cursor:
        cursor.execute(*recursive_walk_query(batch_id, origin_id, direction))
        return [TraceEdge(*row) for row in cursor.fetchall()]


def _lot_lines(batch_id: int) -> QuerySet:
    """The lot's lines that carried units (ShipmentLine.objects.shipped() decides)."""
    return ShipmentLine.objects.shipped().filter(batch_id=batch_id)


def _walk_by_tier(batch_id: int, origin_id: int, direction: Direction) -> list[TraceEdge]:
    """The portable walk: breadth first, one grouped query for each tier's whole frontier.

    Breadth first reaches each partner first at its least depth, as the recursive query's
    ``MIN(depth)`` does, and each partner's edges are read once, from that depth.
    """
    near, far = (
        ("shipment__order__seller_id", "shipment__order__buyer_id")
        if direction == "forward"
        else ("shipment__order__buyer_id", "shipment__order__seller_id")
    )
    edges: list[TraceEdge] = []
    seen, frontier, depth = {origin_id}, {origin_id}, 0
    while frontier and depth < MAX_TIERS:
        rows = (
            _lot_lines(batch_id)
            .filter(**{f"{near}__in": sorted(frontier)})
            .values(
                supplier_id=F("shipment__order__seller_id"),
                consignee_id=F("shipment__order__buyer_id"),
            )
            .annotate(
                shipped=Sum("quantity"),
                received=Sum(
                    Case(
                        When(received_quantity__isnull=True, then=Value(0)),
                        default=F("received_quantity") + F("damaged_quantity"),
                        output_field=IntegerField(),
                    )
                ),
                lines=Count("id"),
            )
            .values_list("supplier_id", "consignee_id", "shipped", "received", "lines")
        )
        tier_edges = [
            TraceEdge(supplier, consignee, depth + 1, shipped, received, lines)
            for supplier, consignee, shipped, received, lines in rows
        ]
        edges.extend(tier_edges)
        reached = {
            edge.consignee_id if direction == "forward" else edge.supplier_id for edge in tier_edges
        }
        frontier = reached - seen
        seen |= frontier
        depth += 1
    edges.sort(key=lambda edge: (edge.tier, edge.supplier_id, edge.consignee_id))
    return edges


# --- the figures of every partner reached ----------------------------------------------------


def _node_tiers(origin_id: int, edges: list[TraceEdge], direction: Direction) -> dict[int, int]:
    tiers = {origin_id: 0}
    for edge in edges:  # sorted by tier: the first time a partner is met is its least tier
        partner = edge.consignee_id if direction == "forward" else edge.supplier_id
        tiers.setdefault(partner, edge.tier)
    return tiers


def _nodes_sql() -> str:
    """Each reached partner's name and contact, with the lot's ledger figures there, in one
    statement: balances (storage, quarantine, returns apart from in transit), returns it sent
    back that its supplier received, and units that left the network from it (destroyed, or
    otherwise: dispensed, lost). Each aggregate reads the lot's own rows by index."""
    balance, location, site = (
        StockBalance._meta.db_table,
        Location._meta.db_table,
        Location._meta.get_field("site").related_model._meta.db_table,
    )
    return_line, return_request, move, partner = (
        ReturnLine._meta.db_table,
        ReturnLine._meta.get_field("return_request").related_model._meta.db_table,
        StockMove._meta.db_table,
        Partner._meta.db_table,
    )
    if connection.vendor == "postgresql":
        among = "p.id = ANY(%(partners)s)"
    else:  # SQLite: the ids as one JSON array, however many there are
        among = "p.id IN (SELECT value FROM json_each(%(partners)s))"
    return (
        "SELECT p.id, p.name, p.gln, p.kind, p.region, p.contact_email, p.contact_phone,"  # noqa: S608
        " COALESCE(b.on_hand, 0), COALESCE(b.in_transit, 0), COALESCE(r.returned, 0),"
        " COALESCE(g.destroyed, 0), COALESCE(g.written_off, 0)"
        f" FROM {partner} p"
        " LEFT JOIN (SELECT s.partner_id,"
        " SUM(CASE WHEN l.kind = %(in_transit)s THEN 0 ELSE b.on_hand END) AS on_hand,"
        " SUM(CASE WHEN l.kind = %(in_transit)s THEN b.on_hand ELSE 0 END) AS in_transit"
        f" FROM {balance} b JOIN {location} l ON l.id = b.location_id"
        f" JOIN {site} s ON s.id = l.site_id"
        " WHERE b.batch_id = %(batch)s AND b.on_hand > 0 GROUP BY s.partner_id) b"
        " ON b.partner_id = p.id"
        " LEFT JOIN (SELECT rr.customer_id AS partner_id, SUM(rl.quantity) AS returned"
        f" FROM {return_line} rl JOIN {return_request} rr ON rr.id = rl.return_request_id"
        " WHERE rl.batch_id = %(batch)s AND rr.status IN (%(received)s, %(disposed)s)"
        " GROUP BY rr.customer_id) r ON r.partner_id = p.id"
        " LEFT JOIN (SELECT s.partner_id,"
        " SUM(CASE WHEN m.kind = %(destruction)s THEN m.quantity ELSE 0 END) AS destroyed,"
        " SUM(CASE WHEN m.kind = %(destruction)s THEN 0 ELSE m.quantity END) AS written_off"
        f" FROM {move} m JOIN {location} l ON l.id = m.from_location_id"
        f" JOIN {site} s ON s.id = l.site_id"
        " WHERE m.batch_id = %(batch)s AND m.to_location_id IS NULL"
        " GROUP BY s.partner_id) g ON g.partner_id = p.id"
        f" WHERE {among}"
    )


_NODE_FIELDS = ("name", "gln", "kind", "region", "contact_email", "contact_phone")
_FIGURE_FIELDS = ("on_hand", "in_transit", "returned", "destroyed", "written_off")


def _nodes(batch_id: int, partner_ids: Iterable[int]) -> dict[int, tuple]:
    """partner id → (name … contact_phone, on_hand, in_transit, returned, destroyed,
    written_off), one query whatever the number of partners."""
    ids = sorted(partner_ids)
    params = {
        "batch": batch_id,
        "partners": ids if connection.vendor == "postgresql" else json.dumps(ids),
        "in_transit": str(LocationKind.IN_TRANSIT),
        "received": str(RETURNED_STATUSES[0]),
        "disposed": str(RETURNED_STATUSES[1]),
        "destruction": str(MoveKind.DESTRUCTION),
    }
    with connection.cursor() as cursor:
        cursor.execute(_nodes_sql(), params)
        return {row[0]: row[1:] for row in cursor.fetchall()}


def _assemble(batch_id: int, origin_id: int, direction: Direction, edges: list[TraceEdge]) -> Trace:
    tiers = _node_tiers(origin_id, edges, direction)
    flows: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # in, received, onward
    for edge in edges:
        flows[edge.consignee_id][0] += edge.shipped
        flows[edge.consignee_id][1] += edge.received
        flows[edge.supplier_id][2] += edge.shipped
    found = _nodes(batch_id, tiers)
    nodes = []
    for partner_id, tier in sorted(tiers.items(), key=lambda item: (item[1], item[0])):
        name, gln, kind, region, email, phone, on_hand, in_transit, returned, destroyed, gone = (
            found[partner_id]
        )
        shipped_in, received, onward = flows.get(partner_id, (0, 0, 0))
        nodes.append(
            TraceNode(
                partner_id,
                name,
                gln,
                kind,
                region,
                email,
                phone,
                tier,
                int(shipped_in),
                int(received),
                int(returned),
                int(onward),
                int(on_hand),
                int(in_transit),
                int(destroyed),
                int(gone),
            )
        )
    return Trace(
        batch_id=batch_id,
        direction=direction,
        origin_id=origin_id,
        nodes=tuple(nodes),
        edges=tuple(edges),
    )


def trace_lot(
    *,
    batch: Batch,
    origin: Partner | None = None,
    direction: Direction = "forward",
    portable: bool | None = None,
) -> Trace:
    """The trace of ``batch`` from ``origin`` (its manufacturer by default).

    ``portable`` forces the per-tier path (True) or the recursive query (False, PostgreSQL
    only); by default PostgreSQL takes the recursive query and other databases the per-tier
    path.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction is forward or backward, not {direction!r}")
    origin_id = origin.pk if origin is not None else batch.product.manufacturer_id
    if portable is None:
        portable = connection.vendor != "postgresql"
    walk = _walk_by_tier if portable else _walk_recursive
    edges = walk(batch.pk, origin_id, direction)
    return _assemble(batch.pk, origin_id, direction, edges)


def trace_forward(*, batch: Batch, origin: Partner | None = None, **kwargs: Any) -> Trace:
    """Every consignee of ``batch`` at every tier below ``origin`` (the manufacturer)."""
    return trace_lot(batch=batch, origin=origin, direction="forward", **kwargs)


def trace_backward(*, batch: Batch, holder: Partner, **kwargs: Any) -> Trace:
    """The supply chain of ``batch`` above ``holder``, up to the manufacturer."""
    return trace_lot(batch=batch, origin=holder, direction="backward", **kwargs)


# --- recalls ---------------------------------------------------------------------------------


def visible_recalls(user) -> QuerySet[Recall]:
    """Recalls the user may read: their partner's own (the recalling firm), those naming their
    partner as a consignee, and every recall for regulators and platform superusers."""
    queryset = Recall.objects.select_related("firm", "product", "opened_by")
    if user.sees_everything:
        return queryset
    consigned = RecallConsignee.objects.filter(partner_id=user.partner_id).values("recall_id")
    return queryset.filter(Q(firm_id=user.partner_id) | Q(pk__in=consigned))


def recall_returns(
    recall: Recall, *, consigned: set[tuple[int, int]] | None = None
) -> list[dict[str, Any]]:
    """The returns that bring the recalled units back, tied to the recall from the ledger:
    every return of one of its lots by one of its consignees (for that lot) that the supplier
    received since the recall was opened. Their units wait in the supplier's returns or
    quarantine location (``orders.services.return_receive``) and, the lot being held, can only
    be destroyed. ``consigned``: the (partner, lot) pairs of its consignees, when the caller
    has them already."""
    if consigned is None:
        consigned = set(recall.consignees.values_list("partner_id", "batch_id"))
    rows = (
        ReturnLine.objects.filter(
            batch_id__in=recall.lots.values("batch_id"),
            return_request__status__in=RETURNED_STATUSES,
            return_request__received_at__gte=recall.opened_at,
        )
        .order_by("return_request__received_at", "return_request_id", "id")
        .values(
            "batch_id",
            "quantity",
            "reason_code",
            "disposition",
            number=F("return_request__number"),
            partner_id=F("return_request__customer_id"),
            partner=F("return_request__customer__name"),
            supplier=F("return_request__seller__name"),
            lot=F("batch__lot_number"),
            received_at=F("return_request__received_at"),
            held_in=F("return_request__returns_location__kind"),
        )
    )
    return [row for row in rows if (row["partner_id"], row["batch_id"]) in consigned]


def recall_holds(batch: Batch, location=None) -> list[Hold]:
    """The hold check registered with ``batches.hooks``: a lot under a recall (not a drill) is
    held everywhere (``location`` does not matter), naming the latest recall.

    Every recall of the lot holds it, whatever the recall's status: a recalled lot never goes
    back to saleable stock, even after its recall is completed or terminated.
    """
    row = (
        RecallLot.objects.filter(batch_id=batch.pk, recall__is_drill=False)
        .select_related("recall")
        .order_by("-recall__opened_at", "-recall_id")
        .first()
    )
    if row is None:
        return []
    recall = row.recall
    return [
        Hold(
            "lot_recalled",
            f"lot {batch.lot_number} is under recall {recall.number} "
            f"(class {recall.classification}): {recall.reason}",
            recall.number,
        )
    ]


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100 * part / whole, 1)


def _bucket() -> dict[str, Any]:
    return {
        "partners": set(),
        "notified": set(),
        "acknowledged": set(),
        "sampled": set(),
        "sampled_acknowledged": set(),
        "distributed": 0,
        "returned": 0,
        "returned_received": 0,
        "destroyed": 0,
        "on_hand": 0,
        "accounted": 0,
    }


CONSIGNEE_FIGURES = (
    "tier",
    "partner_id",
    "batch_id",
    "notified_at",
    "acknowledged_at",
    "quantity_shipped",
    "quantity_on_hand_reported",
    "quantity_returned_reported",
    "quantity_destroyed_reported",
    "sampled_for_check",
)


def returns_received_by_consignee(recall: Recall) -> dict[tuple[int, int], int]:
    """(partner, lot) → units its supplier received back from it under the recall."""
    received: dict[tuple[int, int], int] = defaultdict(int)
    for row in recall_returns(recall):
        received[(row["partner_id"], row["batch_id"])] += row["quantity"]
    return received


def recall_effectiveness(
    recall: Recall,
    *,
    rows: Iterable[dict[str, Any]] | None = None,
    returned: dict[tuple[int, int], int] | None = None,
) -> dict[str, Any]:
    """How far the recall has reached, per tier and in total (21 CFR 7.42(b)(3), 7.53):
    consignees notified and acknowledged (partners), units accounted for against units
    distributed to them, and the effectiveness-check sample.

    A consignee's units are accounted for by its own answer (returned, destroyed, on hand) and
    by the ledger: the units its supplier received back from it under the recall
    (:func:`recall_returns`) count as returned even before it answers, never less than it says
    it returned, and never more than it was shipped in all. ``rows`` and ``returned`` (the
    consignee figures and the ledger's returns) may be given by a caller that read them already.
    """
    if rows is None:
        rows = recall.consignees.values(*CONSIGNEE_FIGURES)
    if returned is None:
        returned = returns_received_by_consignee(recall)
    tiers: dict[int, dict[str, Any]] = defaultdict(_bucket)
    total = _bucket()
    for row in rows:
        partner, shipped = row["partner_id"], row["quantity_shipped"]
        reported = row["quantity_returned_reported"] or 0
        received = returned.get((partner, row["batch_id"]), 0)
        destroyed = row["quantity_destroyed_reported"] or 0
        on_hand = row["quantity_on_hand_reported"] or 0
        accounted = min(shipped, max(reported, received) + destroyed + on_hand)
        for bucket in (tiers[row["tier"]], total):
            bucket["partners"].add(partner)
            if row["notified_at"]:
                bucket["notified"].add(partner)
            if row["acknowledged_at"]:
                bucket["acknowledged"].add(partner)
            if row["sampled_for_check"]:
                bucket["sampled"].add(partner)
                if row["acknowledged_at"]:
                    bucket["sampled_acknowledged"].add(partner)
            bucket["distributed"] += shipped
            bucket["returned"] += reported
            bucket["returned_received"] += received
            bucket["destroyed"] += destroyed
            bucket["on_hand"] += on_hand
            bucket["accounted"] += accounted

    def figures(bucket: dict[str, Any]) -> dict[str, Any]:
        partners = len(bucket["partners"])
        return {
            "consignees": partners,
            "notified": len(bucket["notified"]),
            "acknowledged": len(bucket["acknowledged"]),
            "notified_percent": _share(len(bucket["notified"]), partners),
            "acknowledged_percent": _share(len(bucket["acknowledged"]), partners),
            "units_distributed": bucket["distributed"],
            "units_returned": bucket["returned"],
            "units_returned_received": bucket["returned_received"],
            "units_destroyed": bucket["destroyed"],
            "units_on_hand_reported": bucket["on_hand"],
            "units_accounted": bucket["accounted"],
            "units_accounted_percent": _share(bucket["accounted"], bucket["distributed"]),
            "sampled": len(bucket["sampled"]),
            "sampled_acknowledged": len(bucket["sampled_acknowledged"]),
        }

    return {
        "level": recall.effectiveness_level,
        "level_percent": recall.effectiveness_percent,
        "total": figures(total),
        "tiers": [{"tier": tier, **figures(tiers[tier])} for tier in sorted(tiers)],
    }
