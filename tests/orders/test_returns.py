"""Return services: saleable-returns verification, receipt into returns and QA's signed
disposition, with the ledger checked at every step."""

from __future__ import annotations

from decimal import Decimal

import pytest
from axes.models import AccessAttempt

from audit import chain
from audit.models import Signature, SignatureMeaning
from batches.models import BatchStatus, MoveKind, StockBalance, StockMove
from batches.services import stock_transfer
from orders import services
from orders.models import ReturnLine, ReturnRequest, ReturnStatus
from partners.models import Role
from pharmadms.exceptions import ApplicationError
from tests.factories import (
    TEST_PASSWORD,
    AgreementPriceFactory,
    BatchFactory,
    LocationFactory,
    ProductFactory,
    StorageClassFactory,
    UserFactory,
)
from tests.orders.conftest import days, ledger_balanced, on_hand, planned_shipment


def counts() -> tuple:
    """Everything a refused return step must leave as it was."""
    return (
        ReturnRequest.objects.count(),
        ReturnRequest.history.count(),
        ReturnLine.objects.count(),
        ReturnLine.history.count(),
        StockMove.objects.count(),
        Signature.objects.count(),
        tuple(StockBalance.objects.order_by("pk").values_list("pk", "on_hand", "allocated")),
        tuple(ReturnRequest.objects.order_by("pk").values_list("pk", "status", "rma_number")),
    )


def refused(code: str, call, *args, **kwargs) -> ApplicationError:
    before = counts()
    with pytest.raises(ApplicationError) as error:
        call(*args, **kwargs)
    assert error.value.code == code, error.value.detail
    assert counts() == before
    assert ledger_balanced()
    return error.value


@pytest.fixture
def returning(shipping):
    return build_returning(shipping)


def build_returning(t):
    """Acme shipped North 40 of lot V200, 10 of V400 (cold-chain vaccine) and 20 of an
    ambient tablet lot; North received them all. Acme's site has a returns location."""
    ambient = StorageClassFactory(
        code="15-25c", name="Room", min_celsius=Decimal("15"), max_celsius=Decimal("25")
    )
    t.tablets = ProductFactory(manufacturer=t.seller, name="Tablets", storage_class=ambient)
    AgreementPriceFactory(agreement=t.agreement, product=t.tablets, unit_price=Decimal("2.0000"))
    t.lot_tab = BatchFactory(product=t.tablets, lot_number="T1", expires_on=days(300))
    services.stock.stock_receive(
        batch=t.lot_tab,
        location=t.net.manufacturer_storage,
        quantity=20,
        actor=t.net.warehouse,
        reason="production output",
    )
    t.returns = LocationFactory(site=t.net.manufacturer_site, code="RET", kind="returns")
    t.qa = t.net.qa  # Acme's QA officer
    shipment = planned_shipment(t, (t.vaccine, 50), (t.tablets, 20))
    services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck 7")
    services.shipment_receive(
        shipment=shipment,
        lines=[
            {"line": line.pk, "received_quantity": line.quantity}
            for line in shipment.lines.order_by("id")
        ],
        actor=t.buyer_warehouse,
        reason="goods in",
    )
    shipment.refresh_from_db()
    t.shipment = shipment
    t.line = {line.batch.lot_number: line for line in shipment.lines.select_related("batch")}
    t.customer_storage = t.net.wholesaler_storage
    assert on_hand(t.lot_200, t.customer_storage) == 40
    return t


def ask(t, *lines, actor=None, evidence="LOGGER-REPORT-2291", shipment=None):
    """A return of ``lines`` = (lot number, quantity, reason code[, from location])."""
    entries = []
    for lot, quantity, code, *rest in lines:
        entry = {"shipment_line": t.line[lot].pk, "quantity": quantity, "reason_code": code}
        if rest:
            entry["from_location"] = rest[0]
        entries.append(entry)
    return services.return_request_create(
        shipment=shipment or t.shipment,
        lines=entries,
        actor=actor or t.buyer_user,
        reason="customer return",
        temperature_evidence=evidence,
    )


def authorise(t, ret, **kwargs):
    return services.return_authorise(
        return_request=ret, actor=t.seller_desk, reason="accepted", **kwargs
    )


def receive(t, ret, actor=None):
    return services.return_receive(
        return_request=ret, actor=actor or t.seller_warehouse, reason="back at Acme"
    )


def dispose(t, ret, dispositions=None, *, signer=None, password=TEST_PASSWORD, **kwargs):
    if dispositions is None:
        dispositions = dict.fromkeys(ret.lines.values_list("pk", flat=True), "destroy")
    return services.return_dispose(
        return_request=ret,
        dispositions=dispositions,
        signer=signer or t.qa,
        password=password,
        reason="inspected",
        **kwargs,
    )


def received_return(t, *lines):
    ret = ask(t, *lines)
    authorise(t, ret)
    return receive(t, ret)


def by_lot(ret) -> dict[str, ReturnLine]:
    return {line.batch.lot_number: line for line in ret.lines.select_related("batch")}


# --- the flow ------------------------------------------------------------------------------


def test_a_return_goes_back_to_the_sellers_returns_and_qa_restocks_or_destroys_it(returning):
    t = returning
    storage = t.net.manufacturer_storage
    seller_storage_before = on_hand(t.lot_200, storage), on_hand(t.lot_400, storage)

    ret = ask(t, ("V200", 10, "overstock"), ("V400", 4, "damaged"))
    assert ret.number.startswith(f"RT-{t.today.year}-")
    assert (ret.customer, ret.seller, ret.status) == (t.buyer, t.seller, ReturnStatus.REQUESTED)
    assert ret.temperature_evidence == "LOGGER-REPORT-2291"
    assert StockMove.objects.filter(kind=MoveKind.RETURN).count() == 0  # asking moves nothing

    ret = authorise(t, ret)
    assert ret.status == ReturnStatus.AUTHORISED
    assert ret.rma_number == f"RMA-{ret.number.removeprefix('RT-')}"
    assert ret.authorised_at is not None

    ret = receive(t, ret)
    assert ret.status == ReturnStatus.RECEIVED
    assert ret.returns_location == t.returns
    assert (on_hand(t.lot_200, t.customer_storage), on_hand(t.lot_400, t.customer_storage)) == (
        30,
        6,
    )
    assert (on_hand(t.lot_200, t.returns), on_hand(t.lot_400, t.returns)) == (10, 4)
    # Never into saleable stock directly.
    assert (on_hand(t.lot_200, storage), on_hand(t.lot_400, storage)) == seller_storage_before
    moves = StockMove.objects.filter(reference=f"return:{ret.number}")
    assert {(m.kind, m.quantity, m.from_location_id, m.to_location_id) for m in moves} == {
        (MoveKind.RETURN, 10, t.customer_storage.pk, t.returns.pk),
        (MoveKind.RETURN, 4, t.customer_storage.pk, t.returns.pk),
    }
    assert ledger_balanced()

    lines = by_lot(ret)
    decision = dispose(t, ret, {lines["V200"].pk: "restock", lines["V400"].pk: "destroy"})
    ret = decision.return_request
    assert ret.status == ReturnStatus.DISPOSED
    assert ret.disposed_at is not None
    assert {lot: line.disposition for lot, line in by_lot(ret).items()} == {
        "V200": "restock",
        "V400": "destroy",
    }
    assert (on_hand(t.lot_200, t.returns), on_hand(t.lot_400, t.returns)) == (0, 0)
    assert on_hand(t.lot_200, storage) == seller_storage_before[0] + 10
    assert on_hand(t.lot_400, storage) == seller_storage_before[1]
    moves = StockMove.objects.filter(reference=f"return:{ret.number}").exclude(kind=MoveKind.RETURN)
    assert {(m.kind, m.quantity, m.from_location_id, m.to_location_id) for m in moves} == {
        (MoveKind.TRANSFER, 10, t.returns.pk, storage.pk),
        (MoveKind.DESTRUCTION, 4, t.returns.pk, None),
    }
    signature = decision.signature
    assert signature.meaning == SignatureMeaning.RETURN_DISPOSITION
    assert signature.user == t.qa
    assert (signature.object_model, signature.object_id) == ("orders.returnrequest", str(ret.pk))
    history = ret.history.order_by("history_id")
    assert [h.status for h in history] == ["requested", "authorised", "received", "disposed"]
    assert all(h.history_user_id and h.history_change_reason for h in history)
    assert ledger_balanced()
    assert chain.verify().ok


def test_receipt_falls_back_to_quarantine_and_refuses_without_either(returning):
    t = returning
    t.returns.is_active = False
    t.returns._change_reason = "test: closed"
    t.returns.save()
    ret = received_return(t, ("T1", 3, "wrong_item"))
    assert ret.returns_location == t.net.manufacturer_quarantine
    assert on_hand(t.lot_tab, t.net.manufacturer_quarantine) == 3
    assert ledger_balanced()

    quarantine = t.net.manufacturer_quarantine
    quarantine.is_active = False
    quarantine._change_reason = "test: closed"
    quarantine.save()
    other = ask(t, ("T1", 2, "overstock"))
    authorise(t, other)
    refused("no_returns_location", receive, t, other)


def test_customer_may_return_from_its_quarantine(returning):
    t = returning
    quarantine = t.net.wholesaler_quarantine
    stock_transfer(
        batch=t.lot_200,
        from_location=t.customer_storage,
        to_location=quarantine,
        quantity=5,
        actor=t.buyer_warehouse,
        reason="damaged in store",
    )
    ret = received_return(t, ("V200", 5, "damaged", quarantine.pk))
    assert ret.lines.get().from_location == quarantine
    assert on_hand(t.lot_200, quarantine) == 0
    assert on_hand(t.lot_200, t.returns) == 5
    assert ledger_balanced()


# --- saleable-returns verification ---------------------------------------------------------


def test_only_the_customer_of_a_received_shipment_may_return_from_it(returning):
    t = returning
    intruder = UserFactory(username="south-buyer", partner=t.net.other, role=Role.PARTNER_USER)
    refused("not_shipped_to_customer", ask, t, ("V200", 1, "overstock"), actor=intruder)
    # The seller is no customer of its own shipment either.
    refused("role_not_permitted", ask, t, ("V200", 1, "overstock"), actor=t.seller_warehouse)
    seller_buyer = UserFactory(username="acme-pu", partner=t.seller, role=Role.PARTNER_USER)
    refused("not_shipped_to_customer", ask, t, ("V200", 1, "overstock"), actor=seller_buyer)


def test_a_line_of_another_shipment_is_refused(returning):
    t = returning
    other = planned_shipment(t, (t.vaccine, 5))
    services.shipment_dispatch(shipment=other, actor=t.seller_warehouse, reason="truck 8")
    # Not received yet: nothing of it comes back.
    t.line["OTHER"] = other.lines.get()
    refused("shipment_not_received", ask, t, ("OTHER", 1, "overstock"), shipment=other)
    # Its line named against the first shipment: not shipped to the customer on it.
    refused("not_shipped_to_customer", ask, t, ("OTHER", 1, "overstock"))


def test_quantities_never_exceed_what_was_received_across_returns(returning):
    t = returning
    error = refused("quantity_exceeds_shipped", ask, t, ("V400", 11, "overstock"))
    assert error.extra == {"shipment_line": t.line["V400"].pk, "returnable": 10}
    first = ask(t, ("V400", 6, "overstock"))
    error = refused("quantity_exceeds_shipped", ask, t, ("V400", 5, "overstock"))
    assert error.extra["returnable"] == 4
    second = ask(t, ("V400", 4, "overstock"))
    refused("quantity_exceeds_shipped", ask, t, ("V400", 1, "overstock"))
    # A rejected or cancelled return gives its units back to the returnable rest.
    services.return_reject(return_request=first, actor=t.seller_desk, reason="not ours")
    services.return_cancel(return_request=second, actor=t.buyer_user, reason="kept")
    assert ask(t, ("V400", 10, "overstock")).status == ReturnStatus.REQUESTED


def test_short_units_are_not_returnable_damaged_ones_are(shipping):
    t = shipping
    shipment = planned_shipment(t, (t.insulin, 10))
    services.shipment_dispatch(shipment=shipment, actor=t.seller_warehouse, reason="truck")
    line = shipment.lines.get()
    services.shipment_receive(
        shipment=shipment,
        lines=[{"line": line.pk, "received_quantity": 6, "damaged_quantity": 2}],
        actor=t.buyer_warehouse,
        reason="2 short, 2 broken",
    )

    def ask_insulin(quantity, code="damaged", location=None):
        entry = {"shipment_line": line.pk, "quantity": quantity, "reason_code": code}
        if location:
            entry["from_location"] = location.pk
        return services.return_request_create(
            shipment=shipment,
            lines=[entry],
            actor=t.buyer_user,
            reason="return",
            temperature_evidence="REF-1",
        )

    error = refused("quantity_exceeds_shipped", ask_insulin, 9)
    assert error.extra["returnable"] == 8
    # The damaged units sit in North's quarantine: returned from there.
    ret = ask_insulin(2, location=t.net.wholesaler_quarantine)
    authorise(t, ret)
    t.returns = LocationFactory(site=t.net.manufacturer_site, code="RET", kind="returns")
    receive(t, ret)
    assert on_hand(line.batch, t.returns) == 2
    refused("quantity_exceeds_shipped", ask_insulin, 7, "overstock")
    assert ask_insulin(6, "overstock").lines.get().quantity == 6
    assert ledger_balanced()
    assert chain.verify().ok


def test_cold_chain_goods_need_temperature_evidence(returning):
    t = returning
    refused("temperature_evidence_required", ask, t, ("V200", 1, "overstock"), evidence="")
    refused("temperature_evidence_required", ask, t, ("V200", 1, "overstock"), evidence="   ")
    refused(
        "temperature_evidence_required",
        ask,
        t,
        ("T1", 1, "overstock"),
        ("V200", 1, "overstock"),
        evidence="",
    )
    # Ambient goods need none.
    assert ask(t, ("T1", 1, "overstock"), evidence="").temperature_evidence == ""
    assert ask(t, ("V200", 1, "overstock"), evidence=" TL-77 ").temperature_evidence == "TL-77"


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "empty_return"),
        ([{"shipment_line": "x", "quantity": 1, "reason_code": "overstock"}], "invalid_line"),
        (
            [{"shipment_line": "V200", "quantity": 0, "reason_code": "overstock"}],
            "invalid_quantity",
        ),
        (
            [{"shipment_line": "V200", "quantity": True, "reason_code": "overstock"}],
            "invalid_quantity",
        ),
        ([{"shipment_line": "V200", "quantity": 1, "reason_code": "bored"}], "invalid_reason_code"),
        ([{"shipment_line": "V200", "quantity": 1}], "invalid_reason_code"),
        (
            [
                {"shipment_line": "V200", "quantity": 1, "reason_code": "overstock"},
                {"shipment_line": "V200", "quantity": 1, "reason_code": "damaged"},
            ],
            "duplicate_line",
        ),
        (
            [
                {
                    "shipment_line": "V200",
                    "quantity": 1,
                    "reason_code": "overstock",
                    "from_location": "seller",
                }
            ],
            "invalid_from_location",
        ),
        (
            [
                {
                    "shipment_line": "V200",
                    "quantity": 1,
                    "reason_code": "overstock",
                    "from_location": "customer-quarantine",
                }
            ],
            "insufficient_stock",
        ),
        (
            [
                {
                    "shipment_line": "V200",
                    "quantity": 1,
                    "reason_code": "overstock",
                    "from_location": 10**9,
                }
            ],
            "invalid_from_location",
        ),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(returning, entries, code):
    t = returning
    places = {
        "seller": t.net.manufacturer_storage.pk,
        "customer-quarantine": t.net.wholesaler_quarantine.pk,
    }
    resolved = []
    for entry in entries:
        entry = dict(entry)
        if entry["shipment_line"] in t.line:
            entry["shipment_line"] = t.line[entry["shipment_line"]].pk
        if entry.get("from_location") in places:
            entry["from_location"] = places[entry["from_location"]]
        resolved.append(entry)
    refused(
        code,
        services.return_request_create,
        shipment=t.shipment,
        lines=resolved,
        actor=t.buyer_user,
        reason="return",
        temperature_evidence="REF",
    )


def test_units_the_customer_no_longer_holds_are_refused_at_receipt(returning):
    t = returning
    ret = ask(t, ("V200", 30, "overstock"))
    authorise(t, ret)
    # North sells or moves 15 of the 40 away before the goods leave.
    stock_transfer(
        batch=t.lot_200,
        from_location=t.customer_storage,
        to_location=t.net.wholesaler_quarantine,
        quantity=15,
        actor=t.buyer_warehouse,
        reason="moved",
    )
    error = refused("insufficient_stock", receive, t, ret)
    assert error.extra == {"available": 25}


# --- lifecycle and roles -------------------------------------------------------------------


def test_the_lifecycle_refuses_steps_out_of_order(returning):
    t = returning
    ret = ask(t, ("T1", 2, "overstock"))
    refused("invalid_transition", receive, t, ret)
    refused("invalid_transition", dispose, t, ret)
    authorise(t, ret)
    refused("invalid_transition", authorise, t, ret)
    refused(
        "invalid_transition",
        services.return_reject,
        return_request=ret,
        actor=t.seller_desk,
        reason="late",
    )
    receive(t, ret)
    refused("already_received", receive, t, ret)
    refused(
        "invalid_transition",
        services.return_cancel,
        return_request=ret,
        actor=t.buyer_user,
        reason="late",
    )
    dispose(t, ret)
    refused("already_disposed", dispose, t, ret)
    assert ledger_balanced()


def test_rma_numbers_are_unique_per_seller(returning):
    t = returning
    first = authorise(t, ask(t, ("T1", 1, "overstock")), rma_number="ACME-RMA-1")
    assert first.rma_number == "ACME-RMA-1"
    refused(
        "duplicate_rma_number",
        authorise,
        t,
        ask(t, ("T1", 1, "overstock")),
        rma_number="ACME-RMA-1",
    )


def test_each_step_belongs_to_its_party_and_role(returning):
    t = returning
    ret = ask(t, ("T1", 2, "overstock"))
    # Authorising: the seller's order desk or admin, nobody else.
    for actor, code in [
        (t.buyer_desk, "not_a_party"),
        (t.seller_warehouse, "role_not_permitted"),
        (t.qa, "role_not_permitted"),
        (t.net.regulator, "role_not_permitted"),
    ]:
        refused(code, services.return_authorise, return_request=ret, actor=actor, reason="x")
    refused(
        "not_a_party",
        services.return_cancel,
        return_request=ret,
        actor=t.seller_desk,
        reason="x",
    )
    authorise(t, ret)
    for actor, code in [
        (t.seller_desk, "role_not_permitted"),
        (t.buyer_warehouse, "not_a_party"),
    ]:
        refused(code, receive, t, ret, actor=actor)
    receive(t, ret)
    superuser = UserFactory(username="root", partner=t.seller, role=Role.ADMIN, is_superuser=True)
    for signer, code in [
        (t.seller_warehouse, "role_not_permitted"),
        (t.seller_desk, "role_not_permitted"),
        (superuser, "role_not_permitted"),  # no superuser shortcut for a QA decision
        (t.net.wholesaler_qa, "not_your_organisation"),
    ]:
        refused(code, dispose, t, ret, signer=signer)
    assert not AccessAttempt.objects.exists()  # refused before any password was checked


def test_a_wrong_password_signs_nothing_and_counts_towards_the_lockout(returning):
    t = returning
    ret = received_return(t, ("T1", 2, "overstock"))
    refused("invalid_signature_password", dispose, t, ret, password="wrong")
    assert AccessAttempt.objects.get(username=t.qa.username).failures_since_start == 1
    refused("password_required", dispose, t, ret, password="")
    assert dispose(t, ret).return_request.status == ReturnStatus.DISPOSED
    assert chain.verify().ok


def test_disposition_refusals(returning):
    t = returning
    ret = received_return(t, ("V200", 3, "overstock"), ("V400", 2, "damaged"), ("T1", 1, "recall"))
    lines = by_lot(ret)
    ok = {line.pk: "destroy" for line in lines.values()}
    refused("lines_missing", dispose, t, ret, {lines["V200"].pk: "destroy"})
    refused("unknown_line", dispose, t, ret, {**ok, 10**9: "destroy"})
    refused("invalid_disposition", dispose, t, ret, {**ok, lines["V200"].pk: "resell"})
    refused("not_restockable", dispose, t, ret, {**ok, lines["V400"].pk: "restock"})
    refused("not_restockable", dispose, t, ret, {**ok, lines["T1"].pk: "restock"})
    refused("batch_expired", dispose, t, ret, {**ok, lines["V200"].pk: "restock"}, on=days(201))
    with pytest.raises(ApplicationError) as error:
        services.return_dispose(
            return_request=ret, dispositions=ok, signer=t.qa, password=TEST_PASSWORD, reason=" "
        )
    assert error.value.code == "reason_required"
    # A lot recalled after the goods came back is never restocked.
    t.lot_200.status = BatchStatus.RECALLED
    t.lot_200._change_reason = "test: recall"
    t.lot_200.save()
    refused("batch_not_released", dispose, t, ret, {**ok, lines["V200"].pk: "restock"})
    assert not AccessAttempt.objects.exists()
    # Destroying everything is always possible.
    dispose(t, ret, ok)
    assert sum(on_hand(lot, t.returns) for lot in (t.lot_200, t.lot_400, t.lot_tab)) == 0
    assert ledger_balanced()
    assert chain.verify().ok


def test_restock_needs_a_storage_location_at_the_returns_site(returning):
    t = returning
    ret = received_return(t, ("T1", 2, "overstock"))
    storage = t.net.manufacturer_storage
    storage.is_active = False
    storage._change_reason = "test: closed"
    storage.save()
    line = ret.lines.get()
    refused("no_storage_location", dispose, t, ret, {line.pk: "restock"})
