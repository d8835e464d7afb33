"""A recall as a GS1 EPCIS 2.0 JSON-LD document: the trace's shipping events and the recall.

For each lot of the recall, the forward trace from the recalling firm gives:

- one ``shipping`` ObjectEvent per shipment that carried the lot to a consignee (disposition
  ``in_transit``; the quantity of that lot only), built by ``orders.epcis`` as the shipment's
  own document builds it;
- one ObjectEvent per site that holds units of the lot (storage, quarantine, returns, from the
  ledger at the time of the export): bizStep ``holding``, disposition ``recalled``, set as a
  persistent disposition (EPCIS 2.0: it stays until unset), with the recall number as a
  business transaction of the recalling firm. A drill recalls nothing: its document carries
  the shipping events only.

Class-level identification (LGTIN or GS1 Digital Link), sites and parties are named exactly as
in ``orders.epcis``. A fixed number of queries per lot, whatever the number of consignees.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from batches.models import Batch, StockBalance
from orders.epcis import (  # the builders of a shipment's own EPCIS document
    EPCIS_CONTEXT,
    epcis_time,
    lot_class_id,
    object_event,
    quantity_list,
    site_id,
)
from orders.models import ShipmentLine
from partners.models import LocationKind

from .models import Recall
from .selectors import Trace, trace_forward


def _shipping_events(batch: Batch, trace: Trace) -> list[dict[str, Any]]:
    """The shipping event of every shipment carrying ``batch`` along an edge of the trace."""
    edges = {(edge.supplier_id, edge.consignee_id) for edge in trace.edges}
    lines = (
        ShipmentLine.objects.shipped()
        .filter(batch=batch)
        .select_related(
            "batch__product__manufacturer",
            "shipment__order__buyer",
            "shipment__order__seller",
            "shipment__from_site",
            "shipment__to_site",
        )
        .order_by("shipment__dispatched_at", "shipment_id", "id")
    )
    by_shipment: dict[int, list[ShipmentLine]] = defaultdict(list)
    for line in lines:
        order = line.shipment.order
        if (order.seller_id, order.buyer_id) in edges:
            by_shipment[line.shipment_id].append(line)
    return [
        object_event(
            shipment=shipment_lines[0].shipment,
            when=shipment_lines[0].shipment.dispatched_at,
            biz_step="shipping",
            disposition="in_transit",
            quantities=quantity_list(shipment_lines, lambda line: line.quantity),
            site_gln=shipment_lines[0].shipment.from_site.gln,
            at_location=False,
        )
        for shipment_lines in by_shipment.values()
    ]


def _recalled_events(recall: Recall, batch: Batch, trace: Trace, when) -> list[dict[str, Any]]:
    """Per site of a partner in the trace that holds units of ``batch`` now: they are recalled."""
    partners = {node.partner_id for node in trace.nodes}
    held = (
        StockBalance.objects.filter(batch=batch, on_hand__gt=0)
        .exclude(location__kind=LocationKind.IN_TRANSIT)
        .values_list("location__site__partner_id", "location__site__gln")
        .annotate(units=Sum("on_hand"))
        .order_by("location__site__gln")
    )
    epc_class = lot_class_id(batch.product, batch.lot_number)
    transaction = f"urn:epcglobal:cbv:bt:{recall.firm.gln}:{recall.number}"
    return [
        {
            "type": "ObjectEvent",
            "eventTime": epcis_time(when),
            "eventTimeZoneOffset": "+00:00",
            "action": "OBSERVE",
            "bizStep": "holding",
            "disposition": "recalled",
            "persistentDisposition": {"set": ["recalled"]},
            "quantityList": [{"epcClass": epc_class, "quantity": units}],
            "readPoint": {"id": site_id(gln)},
            "bizLocation": {"id": site_id(gln)},
            "bizTransactionList": [{"bizTransaction": transaction}],
        }
        for partner_id, gln, units in held
        if partner_id in partners
    ]


def recall_epcis_document(recall: Recall) -> dict[str, Any]:
    """The EPCIS 2.0 document of a recall: per lot, the trace's shipping events and (unless a
    drill) the ``recalled`` events where its units are held now."""
    recall = Recall.objects.select_related("firm", "product__manufacturer").get(pk=recall.pk)
    now = timezone.now()
    events: list[dict[str, Any]] = []
    lots = Batch.objects.filter(recall_lots__recall=recall).select_related("product__manufacturer")
    for batch in lots.order_by("lot_number"):
        trace = trace_forward(batch=batch, origin=recall.firm)
        events.extend(_shipping_events(batch, trace))
        if not recall.is_drill:
            events.extend(_recalled_events(recall, batch, trace, now))
    return {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": epcis_time(now),
        "epcisBody": {"eventList": events},
    }
