"""Unpacking a package before dispatch: the package is marked unpacked (kept, with its history
and its SSCC never issued again), its units may be packed again, and a dispatch that packed
more than was picked can go once the package is unpacked."""

from __future__ import annotations

import pytest

from audit.history import update_with_reason
from orders import services
from orders.models import PackageStatus, ShipmentPackage, ShipmentStatus
from pharmadms.exceptions import InvalidInput, NotFound, NotPermitted, RuleViolation
from tests.orders.conftest import ledger_balanced, on_hand, planned_shipment
from tests.orders.test_shipments_api import assert_refused, client_for

ACME_PREFIX = "4012345"
API = "/api/v1/shipments"


@pytest.fixture
def prefixed(shipping):
    t = shipping
    update_with_reason(
        t.seller,
        actor=t.net.admin,
        reason="test: GS1 membership",
        changes={"gs1_company_prefix": ACME_PREFIX},
        editable={"gs1_company_prefix"},
    )
    return t


def pack(t, shipment, line, quantity, reason="case"):
    return services.shipment_pack(
        shipment=shipment, contents=[(line, quantity)], actor=t.seller_warehouse, reason=reason
    )


def unpack(t, shipment, package, actor=None, reason="packed before the pick was short"):
    return services.shipment_unpack(
        shipment=shipment, package=package, actor=actor or t.seller_warehouse, reason=reason
    )


def pick(t, shipment, batch, quantity):
    return services.shipment_pick(
        shipment=shipment,
        batch=batch,
        quantity=quantity,
        location=t.net.manufacturer_storage,
        actor=t.seller_warehouse,
        reason="picked by scan",
    )


def dispatch(t, shipment):
    return services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck")


def test_unpacking_lets_a_short_picked_shipment_go(prefixed):
    """10 packed, 6 picked: the dispatch refuses; the package is unpacked, the 6 packed again,
    and the shipment leaves with 6."""
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 10))
    line = shipment.lines.get()
    first = pack(t, shipment, line, 10)
    pick(t, shipment, t.lot_200, 6)
    with pytest.raises(RuleViolation) as refused:
        dispatch(t, shipment)
    assert refused.value.code == "packed_exceeds_shipped"

    unpacked = unpack(t, shipment, first.sscc)

    assert unpacked.pk == first.pk
    assert unpacked.status == PackageStatus.UNPACKED
    assert unpacked.unpacked_at is not None
    assert ShipmentPackage.objects.filter(pk=first.pk).exists()  # kept, never deleted
    versions = list(ShipmentPackage.history.filter(id=first.pk).order_by("history_id"))
    assert [v.history_change_reason for v in versions] == [
        "case",
        "packed before the pick was short",
    ]
    assert [v.status for v in versions] == [PackageStatus.PACKED, PackageStatus.UNPACKED]
    with pytest.raises(NotFound):
        services.package_by_sscc(first.sscc)  # an unpacked label names no package any more

    second = pack(t, shipment, line, 6)
    assert second.sscc != first.sscc
    dispatch(t, shipment)
    shipment.refresh_from_db()
    assert shipment.status == ShipmentStatus.DISPATCHED
    assert on_hand(t.lot_200, t.in_transit) == 6
    assert ledger_balanced()


def test_an_unpacked_package_frees_its_units_for_packing(prefixed):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 10))
    line = shipment.lines.get()
    package = pack(t, shipment, line, 10)
    with pytest.raises(RuleViolation) as refused:
        pack(t, shipment, line, 1)
    assert refused.value.code == "quantity_exceeds_expected"

    unpack(t, shipment, package.pk)

    assert pack(t, shipment, line, 10).lines.get().quantity == 10


def test_unpack_refusals_write_nothing(prefixed):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 10))
    other = planned_shipment(t, (t.insulin, 2))
    line = shipment.lines.get()
    package = pack(t, shipment, line, 4)
    foreign = pack(t, other, other.lines.get(), 2)
    versions = ShipmentPackage.history.count()

    with pytest.raises(InvalidInput) as refused:
        unpack(t, shipment, foreign.sscc)
    assert refused.value.code == "unknown_package"
    with pytest.raises(InvalidInput) as refused:
        unpack(t, shipment, "not an sscc")
    assert refused.value.code == "unknown_package"
    with pytest.raises(NotPermitted):
        unpack(t, shipment, package.sscc, actor=t.buyer_warehouse)
    with pytest.raises(NotPermitted):
        unpack(t, shipment, package.sscc, actor=t.seller_desk)  # the warehouse packs and unpacks
    assert ShipmentPackage.history.count() == versions

    unpack(t, shipment, package.sscc)
    with pytest.raises(RuleViolation) as refused:
        unpack(t, shipment, package.sscc)
    assert refused.value.code == "already_unpacked"

    kept = pack(t, shipment, line, 10)
    dispatch(t, shipment)
    versions = ShipmentPackage.history.count()
    with pytest.raises(RuleViolation) as refused:
        unpack(t, shipment, kept.sscc)
    assert refused.value.code == "invalid_transition"
    assert ShipmentPackage.history.count() == versions


def test_unpack_over_the_api_by_sscc_or_id(prefixed):
    t = prefixed
    shipment = planned_shipment(t, (t.vaccine, 10))
    line = shipment.lines.get()
    first, second = pack(t, shipment, line, 5), pack(t, shipment, line, 5)
    url = f"{API}/{shipment.pk}/unpack/"
    client = client_for(t.seller_warehouse)

    response = client.post(url, {"sscc": first.sscc, "reason": "repack"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["sscc"], response.json()["status"]) == (first.sscc, "unpacked")
    response = client.post(url, {"package": second.pk, "reason": "repack"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "unpacked"

    packages = client.get(f"{API}/{shipment.pk}/").json()["packages"]
    assert {(p["sscc"], p["status"]) for p in packages} == {
        (first.sscc, "unpacked"),
        (second.sscc, "unpacked"),
    }
    assert_refused(client.post(url, {"reason": "x"}, format="json"), 400, "package_required")
    assert_refused(
        client.post(url, {"sscc": first.sscc, "package": first.pk, "reason": "x"}, format="json"),
        400,
        "package_required",
    )
    assert_refused(
        client.post(url, {"sscc": first.sscc, "reason": "x"}, format="json"),
        409,
        "already_unpacked",
    )
    assert_refused(client.post(url, {"sscc": first.sscc}, format="json"), 400, "reason_required")
    assert (
        client_for(t.net.other_user).post(url, {"sscc": first.sscc, "reason": "x"}).status_code
        == 404
    )
    assert (
        client_for(t.net.regulator)
        .post(url, {"sscc": first.sscc, "reason": "x"}, format="json")
        .status_code
        == 403
    )
    # An unpacked package's label is not printed any more.
    label = client_for(t.seller_warehouse).get(f"/api/v1/packages/{first.sscc}/label.png")
    assert label.status_code == 404
