"""The read-only analytics API under /api/v1/analytics/: figures, scoping, roles, bad params."""

from __future__ import annotations

import pytest

from tests.conftest import client_for
from tests.orders.conftest import days
from tests.orders.test_analytics import build_sales, north_sells_to_south, target

SALES = "/api/v1/analytics/sales/"
ENDPOINTS = [
    SALES,
    "/api/v1/analytics/targets/",
    "/api/v1/analytics/replenishment/",
    "/api/v1/analytics/near-expiry/",
]


@pytest.fixture
def sales(shipping, settings):
    settings.DEMAND_WINDOW_DAYS = 10
    settings.REPLENISHMENT_LEAD_TIME_DAYS = 20
    settings.NEAR_EXPIRY_ALERT_DAYS = 60
    return build_sales(shipping)


def test_sales_by_product_with_values_as_decimal_strings(sales):
    t = sales
    response = client_for(t.seller_desk).get(SALES, {"group_by": "product"})
    assert response.status_code == 200
    body = response.json()
    assert (body["group_by"], body["from"], body["to"]) == ("product", None, None)
    assert body["results"] == [
        {
            "key": t.vaccine.gtin,
            "label": "Vaccine",
            "quantity": 70,
            "value": "845.0000",
            "currency": "EUR",
        },
        {
            "key": t.insulin.gtin,
            "label": "Insulin",
            "quantity": 4,
            "value": "29.0000",
            "currency": "EUR",
        },
    ]


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("region", [("DE-BY", 54, "654.0000"), ("DE-NW", 20, "220.0000")]),
        ("partner", [("North Wholesale", 54, "654.0000"), ("South Wholesale", 20, "220.0000")]),
    ],
)
def test_sales_by_region_and_partner(sales, group_by, expected):
    response = client_for(sales.net.admin).get(SALES, {"group_by": group_by})
    rows = response.json()["results"]
    assert [(row["label"], row["quantity"], row["value"]) for row in rows] == expected


def test_sales_by_month_in_a_period(sales):
    client = client_for(sales.net.qa)
    response = client.get(SALES, {"group_by": "month", "from": days(-10).isoformat()})
    body = response.json()
    assert body["from"] == days(-10).isoformat()
    assert [(row["key"], row["quantity"]) for row in body["results"]] == [
        (days(0).strftime("%Y-%m"), 54)
    ]
    everything = client.get(SALES, {"group_by": "month"}).json()["results"]
    assert [row["quantity"] for row in everything] == [20, 54]


def test_each_seller_reads_its_own_and_the_regulator_all(sales):
    t = sales
    north_sells_to_south(t)
    north = client_for(t.buyer_desk).get(SALES, {"group_by": "partner"}).json()["results"]
    assert [(row["key"], row["quantity"], row["value"]) for row in north] == [
        (t.south.gln, 5, "75.0000")
    ]
    everyone = client_for(t.net.regulator).get(SALES, {"group_by": "product"}).json()["results"]
    assert [(row["quantity"], row["value"]) for row in everyone] == [
        (75, "920.0000"),
        (4, "29.0000"),
    ]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"group_by": "colour"}, "invalid_group_by"),
        ({"from": "yesterday"}, "invalid_date"),
        ({"to": "2026-02-30"}, "invalid_date"),
        ({"from": "2026-03-01", "to": "2026-02-01"}, "invalid_period"),
    ],
)
def test_bad_parameters_are_refused_with_a_code(sales, params, code):
    response = client_for(sales.seller_desk).get(SALES, params)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["detail"]


def test_targets_replenishment_and_near_expiry(sales):
    t = sales
    target(t, period_start=days(-10), period_end=days(10), target_quantity=108)
    client = client_for(t.seller_desk)
    [row] = client.get("/api/v1/analytics/targets/").json()
    assert (row["actual_quantity"], row["quantity_attainment_percent"]) == (54, "50.0")
    assert (row["actual_value"], row["value_attainment_percent"]) == ("654.0000", None)
    rows = client.get("/api/v1/analytics/replenishment/").json()
    insulin = next(row for row in rows if row["product_name"] == "Insulin")
    assert insulin == insulin | {
        "available": 6,
        "daily_demand": "0.4000",
        "days_of_supply": "15.0",
        "safety_stock": 4,
        "reorder_point": 12,
        "below_reorder_point": True,
    }
    lots = client.get("/api/v1/analytics/near-expiry/").json()
    assert [(lot["lot"], lot["days_to_expiry"]) for lot in lots] == [("VEXP", -1), ("VSHORT", 30)]
    # The buyer's order desk sees its own stock only.
    north = client_for(t.buyer_desk).get("/api/v1/analytics/replenishment/").json()
    assert {row["partner"] for row in north} == {"North Wholesale"}
    assert client_for(t.buyer_desk).get("/api/v1/analytics/targets/").json() == []


@pytest.mark.parametrize("url", ENDPOINTS)
def test_other_roles_are_refused(shipping, api_client, url):
    t = shipping
    for user in (t.net.warehouse, t.buyer_user):
        response = client_for(user).get(url)
        assert response.status_code == 403
        assert response.json()["code"] == "role_not_permitted"
    assert api_client.get(url).status_code in (401, 403)


@pytest.mark.parametrize("url", ENDPOINTS)
def test_the_analytics_are_read_only(shipping, url):
    response = client_for(shipping.seller_desk).post(url, {})
    assert response.status_code == 405
