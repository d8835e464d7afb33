"""The agreements and orders API: status codes, refusal codes and the permission matrix."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audit import chain
from audit.history import save_with_reason
from orders import services
from orders.models import Agreement, AgreementPrice, Order, OrderLine, SalesTarget
from partners.models import Role
from tests.factories import UserFactory
from tests.orders.conftest import allocated_units, place_order

API = "/api/v1"


def client_for(user) -> APIClient:
    """A client that answers a server error as a response, so it can be asserted."""
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    return client


def assert_refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def counts() -> tuple[int, ...]:
    return (
        Order.objects.count(),
        OrderLine.objects.count(),
        Order.history.count(),
        allocated_units(),
        Agreement.objects.count(),
        AgreementPrice.objects.count(),
        SalesTarget.objects.count(),
    )


def new_order(t, lines=None, **extra) -> dict:
    return {
        "seller": t.seller.pk,
        "ship_to": t.net.wholesaler_site.pk,
        "lines": lines if lines is not None else [{"product": t.vaccine.pk, "quantity": 50}],
        "reason": "weekly replenishment",
        **extra,
    }


def step(user, order_id: int, name: str, reason: str = "as agreed"):
    return client_for(user).post(f"{API}/orders/{order_id}/{name}/", {"reason": reason})


# --- orders ----------------------------------------------------------------------------------


def test_an_order_goes_through_its_lifecycle_over_the_api(trade):
    created = client_for(trade.buyer_user).post(f"{API}/orders/", new_order(trade))
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["buyer"] == trade.buyer.pk
    assert body["status"] == "draft"
    assert body["number"].startswith(f"SO-{trade.today.year}-")
    assert [(line["product"], line["quantity"]) for line in body["lines"]] == [
        (trade.vaccine.pk, 50)
    ]
    order_id = body["id"]

    submitted = step(trade.buyer_user, order_id, "submit")
    assert submitted.status_code == 200, submitted.content
    assert submitted.json()["lines"][0]["unit_price"] == "12.5000"
    assert step(trade.seller_desk, order_id, "confirm").json()["status"] == "confirmed"
    allocated = step(trade.net.warehouse, order_id, "allocate")
    assert allocated.status_code == 200, allocated.content
    line = allocated.json()["lines"][0]
    assert (line["quantity_allocated"], line["quantity_backordered"]) == (50, 0)
    assert allocated_units() == 50
    cancelled = step(trade.seller_desk, order_id, "cancel", "customer withdrew")
    assert cancelled.json()["status"] == "cancelled"
    assert allocated_units() == 0

    history = client_for(trade.buyer_user).get(f"{API}/orders/{order_id}/history/")
    assert history.status_code == 200
    assert [(e["history_user"], e["history_change_reason"]) for e in history.json()["results"]] == [
        ("north-buyer", "weekly replenishment"),
        ("north-buyer", "as agreed"),
        ("acme-desk", "as agreed"),
        ("warehouse", "as agreed"),
        ("acme-desk", "customer withdrew"),
    ]
    assert chain.verify().ok


def test_a_shortfall_answers_200_with_a_backorder(trade):
    order = place_order(trade, (trade.vaccine, 500))
    step(trade.buyer_user, order.pk, "submit")
    step(trade.seller_desk, order.pk, "confirm")
    response = step(trade.seller_desk, order.pk, "allocate")
    assert response.status_code == 200, response.content
    assert response.json()["has_backorders"] is True
    assert response.json()["lines"][0]["quantity_backordered"] == 370


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"lines": []}, "empty_order"),
        ({"lines": [{"product": "vaccine", "quantity": 0}]}, "invalid_quantity"),
        ({"lines": [{"product": "vaccine", "quantity": -3}]}, "invalid_quantity"),
        ({"lines": [{"product": "vaccine", "quantity": "many"}]}, "invalid_quantity"),
        ({"lines": [{"product": "vaccine"}]}, "required"),
        ({"lines": [{"product": 999999, "quantity": 1}]}, "does_not_exist"),
        (
            {
                "lines": [
                    {"product": "vaccine", "quantity": 1},
                    {"product": "vaccine", "quantity": 2},
                ]
            },
            "duplicate_product",
        ),
        ({"ship_to": "other_site"}, "does_not_exist"),
        ({"status": "confirmed"}, "field_not_editable"),
        ({"unit_price": "0.01"}, "unknown_field"),
        (
            {"lines": [{"product": "vaccine", "quantity": 1, "unit_price": "0.01"}]},
            "field_not_editable",
        ),
        ({"reason": ""}, "reason_required"),
        ({"seller": "wholesaler"}, "same_partner"),
    ],
)
def test_bad_orders_are_refused_with_a_code_and_nothing_is_written(trade, payload, code):
    names = {
        "vaccine": trade.vaccine.pk,
        "other_site": trade.net.other_site.pk,
        "wholesaler": trade.buyer.pk,
    }

    def resolve(value):
        if isinstance(value, list):
            return [{k: names.get(v, v) for k, v in line.items()} for line in value]
        return names.get(value, value) if isinstance(value, str) else value

    before = counts()
    data = new_order(trade, **{key: resolve(value) for key, value in payload.items()})
    response = client_for(trade.buyer_user).post(f"{API}/orders/", data)
    assert_refused(response, 400, code)
    assert counts() == before


@pytest.mark.parametrize(
    ("product", "code"),
    [("unpriced", "product_not_in_agreement"), ("opioid", "licence_excludes_controlled")],
)
def test_a_submission_breaking_a_rule_is_a_409_naming_the_product(trade, product, code):
    order = place_order(trade, (getattr(trade, product), 5))
    before = counts()
    body = assert_refused(step(trade.buyer_user, order.pk, "submit"), 409, code)
    assert getattr(trade, product).name in body["detail"]
    assert counts() == before


def test_an_order_without_agreement_is_a_409(trade):
    services.agreement_update(
        agreement=trade.agreement, actor=trade.seller_desk, reason="terminated", status="ended"
    )
    order = place_order(trade, (trade.vaccine, 5))
    assert_refused(step(trade.buyer_user, order.pk, "submit"), 409, "no_agreement")


def test_allocating_an_order_not_confirmed_is_a_409(trade):
    order = place_order(trade, (trade.vaccine, 5))
    step(trade.buyer_user, order.pk, "submit")
    before = counts()
    assert_refused(step(trade.seller_desk, order.pk, "allocate"), 409, "invalid_transition")
    assert counts() == before


@pytest.mark.parametrize("status", ["shipped", "closed"])
def test_cancelling_a_shipped_or_closed_order_is_a_409(trade, status):
    order = place_order(trade, (trade.vaccine, 5))
    step(trade.buyer_user, order.pk, "submit")
    order.status = status
    save_with_reason(order, actor=None, reason="test: later step", update_fields=["status"])
    assert_refused(step(trade.seller_desk, order.pk, "cancel"), 409, "invalid_transition")


def test_a_step_without_a_reason_or_with_extra_fields_is_refused(trade):
    order = place_order(trade, (trade.vaccine, 5))
    client = client_for(trade.buyer_user)
    assert_refused(client.post(f"{API}/orders/{order.pk}/submit/", {}), 400, "reason_required")
    assert_refused(
        client.post(f"{API}/orders/{order.pk}/submit/", {"reason": "x", "status": "confirmed"}),
        400,
        "unknown_field",
    )
    order.refresh_from_db()
    assert order.status == "draft"


def test_orders_are_never_patched_put_or_deleted(trade):
    order = place_order(trade, (trade.vaccine, 5))
    client = client_for(trade.buyer_user)
    for method in ("patch", "put", "delete"):
        response = getattr(client, method)(f"{API}/orders/{order.pk}/", {"reason": "x"})
        assert response.status_code == 405


# --- who sees and does what ------------------------------------------------------------------


def test_the_buyer_sees_its_draft_the_seller_only_once_submitted(trade):
    order = place_order(trade, (trade.vaccine, 5))
    url = f"{API}/orders/{order.pk}/"
    assert client_for(trade.buyer_user).get(url).status_code == 200
    assert_refused(client_for(trade.seller_desk).get(url), 404, "not_found")
    step(trade.buyer_user, order.pk, "submit")
    assert client_for(trade.seller_desk).get(url).status_code == 200
    listed = client_for(trade.seller_desk).get(f"{API}/orders/").json()["results"]
    assert [row["id"] for row in listed] == [order.pk]


def test_another_partners_order_is_not_found_for_every_verb(trade):
    order = place_order(trade, (trade.vaccine, 5))
    step(trade.buyer_user, order.pk, "submit")
    outsider = UserFactory(partner=trade.net.other, role=Role.ORDER_DESK)
    client = client_for(outsider)
    assert_refused(client.get(f"{API}/orders/{order.pk}/"), 404, "not_found")
    assert_refused(client.get(f"{API}/orders/{order.pk}/history/"), 404, "not_found")
    for name in ("submit", "confirm", "allocate", "cancel"):
        assert_refused(step(outsider, order.pk, name), 404, "not_found")
    assert client.get(f"{API}/orders/").json()["results"] == []


def test_a_regulator_reads_every_order_and_writes_none(trade):
    order = place_order(trade, (trade.vaccine, 5))
    client = client_for(trade.net.regulator)
    assert client.get(f"{API}/orders/{order.pk}/").status_code == 200
    assert client.get(f"{API}/orders/{order.pk}/history/").status_code == 200
    before = counts()
    assert client.post(f"{API}/orders/", new_order(trade)).status_code == 403
    for name in ("submit", "confirm", "allocate", "cancel"):
        assert step(trade.net.regulator, order.pk, name).status_code == 403
    assert counts() == before


def test_anonymous_callers_are_refused(trade, api_client):
    assert api_client.get(f"{API}/orders/").status_code == 401
    assert api_client.get(f"{API}/agreements/").status_code == 401
    assert api_client.post(f"{API}/orders/", new_order(trade)).status_code == 401


def test_a_role_without_the_right_is_refused_with_403(trade):
    order = place_order(trade, (trade.vaccine, 5))
    step(trade.buyer_user, order.pk, "submit")
    before = counts()
    # the buyer does not confirm its own order; the seller's QA officer does not allocate
    assert_refused(step(trade.buyer_desk, order.pk, "confirm"), 403, "not_a_party")
    step(trade.seller_desk, order.pk, "confirm")
    assert_refused(step(trade.net.qa, order.pk, "allocate"), 403, "role_not_permitted")
    qa = trade.net.wholesaler_qa
    assert_refused(
        client_for(qa).post(f"{API}/orders/", new_order(trade)), 403, "role_not_permitted"
    )
    assert counts()[:4] == (before[0], before[1], before[2] + 1, before[3])


def test_orders_filter_by_status_partner_and_creation_time(trade):
    first = place_order(trade, (trade.vaccine, 5))
    second = place_order(trade, (trade.vaccine, 6))
    step(trade.buyer_user, second.pk, "submit")
    client = client_for(trade.buyer_user)

    def ids(query: str) -> set[int]:
        response = client.get(f"{API}/orders/?{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("status=draft") == {first.pk}
    assert ids("status=submitted") == {second.pk}
    assert ids(f"seller={trade.seller.pk}") == {first.pk, second.pk}
    assert ids(f"buyer={trade.net.other.pk}") == set()
    assert ids("created_after=2000-01-01T00:00:00Z") == {first.pk, second.pk}
    assert ids("created_before=2000-01-01T00:00:00Z") == set()
    assert_refused(client.get(f"{API}/orders/?status=lost"), 400, "invalid_choice")


# --- agreements ------------------------------------------------------------------------------


def new_agreement(t, **extra) -> dict:
    return {
        "customer": t.net.other.pk,
        "territory": ["DE-BY"],
        "min_remaining_shelf_life_days": 120,
        "valid_from": "2027-01-01",
        "valid_until": "2027-12-31",
        "reason": "annual contract",
        **extra,
    }


def test_the_suppliers_desk_makes_an_agreement_prices_and_targets_it(trade):
    client = client_for(trade.seller_desk)
    created = client.post(f"{API}/agreements/", new_agreement(trade))
    assert created.status_code == 201, created.content
    agreement = created.json()
    assert (agreement["supplier"], agreement["status"]) == (trade.seller.pk, "active")
    url = f"{API}/agreements/{agreement['id']}/"
    priced = client.post(
        f"{url}prices/",
        {"product": trade.vaccine.pk, "unit_price": "9.9900", "currency": "EUR", "reason": "list"},
    )
    assert priced.status_code == 201, priced.content
    assert priced.json()["prices"] == [
        {
            "id": priced.json()["prices"][0]["id"],
            "product": trade.vaccine.pk,
            "unit_price": "9.9900",
            "currency": "EUR",
        }
    ]
    targeted = client.post(
        f"{url}targets/",
        {
            "period_start": "2027-01-01",
            "period_end": "2027-03-31",
            "target_quantity": 500,
            "reason": "Q1",
        },
    )
    assert targeted.status_code == 201, targeted.content
    assert targeted.json()["targets"][0]["target_quantity"] == 500
    suspended = client.patch(url, {"status": "suspended", "reason": "payment overdue"})
    assert suspended.status_code == 200, suspended.content
    assert suspended.json()["status"] == "suspended"
    history = client.get(f"{url}history/").json()["results"]
    assert [e["history_change_reason"] for e in history] == ["annual contract", "payment overdue"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"valid_until": "2026-01-01"}, "invalid_period"),
        ({"territory": []}, "empty"),
        ({"territory": "DE"}, "not_a_list"),
        ({"status": "ended"}, "field_not_editable"),
        ({"supplier": 1}, "field_not_editable"),
        ({"min_remaining_shelf_life_days": -1}, "min_value"),
        ({"reason": " "}, "reason_required"),
    ],
)
def test_bad_agreements_are_refused(trade, payload, code):
    before = counts()
    response = client_for(trade.seller_desk).post(
        f"{API}/agreements/", new_agreement(trade, **payload)
    )
    assert_refused(response, 400, code)
    assert counts() == before


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"unit_price": "0"}, 400, "invalid_price"),
        ({"unit_price": "-2"}, 400, "invalid_price"),
        ({"currency": "euro"}, 400, "invalid_currency"),
        ({"currency": "USD", "product": "unpriced"}, 409, "currency_mismatch"),
    ],
)
def test_bad_prices_are_refused(trade, payload, status, code):
    data = {"product": trade.vaccine.pk, "unit_price": "1.00", "currency": "EUR", "reason": "p"}
    data.update(payload)
    if data["product"] == "unpriced":
        data["product"] = trade.unpriced.pk
    before = counts()
    response = client_for(trade.seller_desk).post(
        f"{API}/agreements/{trade.agreement.pk}/prices/", data
    )
    assert_refused(response, status, code)
    assert counts() == before


def test_agreements_are_seen_by_their_parties_and_regulators_only(trade):
    url = f"{API}/agreements/{trade.agreement.pk}/"
    assert client_for(trade.seller_desk).get(url).status_code == 200
    assert client_for(trade.buyer_user).get(url).status_code == 200
    assert client_for(trade.net.regulator).get(url).status_code == 200
    assert_refused(client_for(trade.net.other_user).get(url), 404, "not_found")
    assert client_for(trade.net.other_user).get(f"{API}/agreements/").json()["results"] == []


def test_only_the_suppliers_admin_or_desk_writes_agreements(trade):
    url = f"{API}/agreements/{trade.agreement.pk}/"
    price = {"product": trade.vaccine.pk, "unit_price": "0.01", "currency": "EUR", "reason": "x"}
    before = counts()
    # the customer sees the agreement but never changes it
    assert_refused(client_for(trade.buyer_desk).post(f"{url}prices/", price), 403, "not_a_party")
    assert_refused(
        client_for(trade.buyer_desk).patch(url, {"status": "ended", "reason": "x"}),
        403,
        "not_a_party",
    )
    # a role without the right, and a regulator
    assert client_for(trade.net.qa).post(f"{url}prices/", price).status_code == 403
    assert client_for(trade.net.regulator).post(f"{url}prices/", price).status_code == 403
    assert (
        client_for(trade.net.regulator).post(f"{API}/agreements/", new_agreement(trade))
    ).status_code == 403
    assert counts() == before
    assert client_for(trade.net.admin).post(f"{url}prices/", price).status_code == 201


def test_the_parties_of_an_agreement_never_change(trade):
    response = client_for(trade.seller_desk).patch(
        f"{API}/agreements/{trade.agreement.pk}/",
        {"customer": trade.net.other.pk, "reason": "new customer"},
    )
    assert_refused(response, 400, "field_not_editable")
    trade.agreement.refresh_from_db()
    assert trade.agreement.customer == trade.buyer
