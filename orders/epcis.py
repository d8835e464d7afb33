"""A shipment as a GS1 EPCIS 2.0 JSON-LD document: the shipping and receiving ObjectEvents.

Class-level identification (lot, not serial): each lot is an LGTIN
``urn:epc:class:lgtin:<company prefix>.<indicator + item reference>.<lot>`` when the GS1
company prefix is known (biip's prefix table, or the partner's recorded prefix), and otherwise
the GS1 Digital Link ``https://id.gs1.org/01/<gtin>/10/<lot>``, which EPCIS 2.0 accepts as well.
Sites are named by GS1 Digital Link (``https://id.gs1.org/414/<gln>``), parties by their party
GLN (``https://id.gs1.org/417/<gln>``).
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

from biip import ParseError
from biip.gtin import Gtin
from django.utils import timezone

from batches.models import Product

from .models import Shipment, ShipmentLine, ShipmentStatus

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
DIGITAL_LINK = "https://id.gs1.org"

# Characters an EPC URI component may carry unescaped (GS1 EPC Tag Data Standard, GS3A3).
_EPC_SAFE = "!'()*+,-.:;=_"


def _company_prefix(product: Product) -> str | None:
    try:
        parsed = Gtin.parse(product.gtin)
    except ParseError:
        return None
    if parsed.company_prefix is not None:
        return parsed.company_prefix.value
    prefix = product.manufacturer.gs1_company_prefix
    gtin13 = product.gtin[-13:]
    return prefix if prefix and gtin13.startswith(prefix) else None


def lot_class_id(product: Product, lot_number: str) -> str:
    """The EPC class of a lot: an LGTIN URN, or its GS1 Digital Link when no prefix is known."""
    gtin14 = product.gtin.zfill(14)
    prefix = _company_prefix(product)
    if prefix is None:
        return f"{DIGITAL_LINK}/01/{gtin14}/10/{quote(lot_number, safe='')}"
    indicator, rest = gtin14[0], gtin14[1:13]  # drop the check digit
    item_reference = rest[len(prefix) :]
    lot = quote(lot_number, safe=_EPC_SAFE)
    return f"urn:epc:class:lgtin:{prefix}.{indicator}{item_reference}.{lot}"


def site_id(gln: str) -> str:
    return f"{DIGITAL_LINK}/414/{gln}"


def party_id(gln: str) -> str:
    return f"{DIGITAL_LINK}/417/{gln}"


def epcis_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def quantity_list(lines: list[ShipmentLine], quantity_of) -> list[dict[str, Any]]:
    totals: dict[str, int] = {}
    for line in lines:
        quantity = quantity_of(line)
        if quantity:
            key = lot_class_id(line.batch.product, line.batch.lot_number)
            totals[key] = totals.get(key, 0) + quantity
    # A count of trade items: CBV leaves uom out for a count.
    return [{"epcClass": key, "quantity": quantity} for key, quantity in totals.items()]


def object_event(
    *,
    shipment: Shipment,
    when: datetime.datetime,
    biz_step: str,
    disposition: str,
    quantities: list[dict[str, Any]],
    site_gln: str,
    at_location: bool,
) -> dict[str, Any]:
    order = shipment.order
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": epcis_time(when),
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "bizStep": biz_step,
        "disposition": disposition,
        "quantityList": quantities,
        "readPoint": {"id": site_id(site_gln)},
    }
    if at_location:  # the goods are at the site after receipt; in transit after shipping
        event["bizLocation"] = {"id": site_id(site_gln)}
    event["bizTransactionList"] = [
        {"type": "po", "bizTransaction": f"urn:epcglobal:cbv:bt:{order.buyer.gln}:{order.number}"},
        {
            "type": "desadv",
            "bizTransaction": f"urn:epcglobal:cbv:bt:{order.seller.gln}:{shipment.number}",
        },
    ]
    event["sourceList"] = [
        {"type": "owning_party", "source": party_id(order.seller.gln)},
        {"type": "location", "source": site_id(shipment.from_site.gln)},
    ]
    event["destinationList"] = [
        {"type": "owning_party", "destination": party_id(order.buyer.gln)},
        {"type": "location", "destination": site_id(shipment.to_site.gln)},
    ]
    return event


def shipment_epcis_document(shipment: Shipment) -> dict[str, Any]:
    """The EPCIS 2.0 document of a shipment: shipping once dispatched, receiving once received
    (sound units ``in_progress``, damaged units ``damaged``)."""
    shipment = Shipment.objects.select_related(
        "order__buyer", "order__seller", "from_site", "to_site"
    ).get(pk=shipment.pk)
    # The lots that left: a line of which nothing was picked is no event of its lot.
    lines = list(
        shipment.lines.shipped().select_related("batch__product__manufacturer").order_by("id")
    )
    events: list[dict[str, Any]] = []
    if shipment.dispatched_at is not None:
        events.append(
            object_event(
                shipment=shipment,
                when=shipment.dispatched_at,
                biz_step="shipping",
                disposition="in_transit",
                quantities=quantity_list(lines, lambda line: line.quantity),
                site_gln=shipment.from_site.gln,
                at_location=False,
            )
        )
    if shipment.status == ShipmentStatus.RECEIVED and shipment.received_at is not None:
        sound = quantity_list(lines, lambda line: line.received_quantity or 0)
        if sound:
            events.append(
                object_event(
                    shipment=shipment,
                    when=shipment.received_at,
                    biz_step="receiving",
                    disposition="in_progress",
                    quantities=sound,
                    site_gln=shipment.to_site.gln,
                    at_location=True,
                )
            )
        damaged = quantity_list(lines, lambda line: line.damaged_quantity)
        if damaged:
            events.append(
                object_event(
                    shipment=shipment,
                    when=shipment.received_at,
                    biz_step="receiving",
                    disposition="damaged",
                    quantities=damaged,
                    site_gln=shipment.to_site.gln,
                    at_location=True,
                )
            )
    return {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": epcis_time(timezone.now()),
        "epcisBody": {"eventList": events},
    }
