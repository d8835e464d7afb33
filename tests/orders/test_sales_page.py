"""The sales page /sales/: tables, server-drawn SVG charts, replenishment and near-expiry
tables, for the analytics roles only."""

from __future__ import annotations

import pytest

from tests.orders.test_analytics import build_sales


@pytest.fixture
def sales(shipping, settings):
    settings.DEMAND_WINDOW_DAYS = 10
    settings.REPLENISHMENT_LEAD_TIME_DAYS = 20
    settings.NEAR_EXPIRY_ALERT_DAYS = 60
    return build_sales(shipping)


def page(client, user, **params):
    client.force_login(user)
    return client.get("/sales/", params)


def test_the_order_desk_sees_its_sales_charts_and_stock_tables(client, sales):
    t = sales
    response = page(client, t.seller_desk)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="scope">Acme Pharma<' in html
    for testid in (
        "chart-month",
        "chart-product",
        "sales-month",
        "sales-product",
        "sales-region",
        "sales-partner",
        "replenishment",
        "near-expiry",
    ):
        assert f'data-testid="{testid}"' in html
    # The product chart: one bar per product, the tallest for the vaccine (70 units).
    assert html.count('<rect class="bar"') == 2
    assert "<title>Vaccine: 70 units</title>" in html
    # The month chart: one point per month.
    assert html.count('<circle class="dot"') == 2
    assert "845.00 EUR" in html
    assert "DE-NW" in html
    # Insulin is below its reorder point, highlighted; the near-expiry lots are listed.
    assert html.count('data-testid="below-reorder-point"') == 1
    assert 'data-testid="below-count">1 below the reorder point' in html
    assert "VSHORT" in html
    assert "VEXP" in html
    assert 'data-testid="nav-sales"' in html


def test_a_period_narrows_the_sales_and_a_bad_one_is_explained(client, sales):
    t = sales
    from tests.orders.conftest import days

    html = page(client, t.seller_desk, **{"from": days(-10).isoformat()}).content.decode()
    assert "<title>Vaccine: 50 units</title>" in html
    bad = page(client, t.seller_desk, **{"from": "soon"})
    assert bad.status_code == 200
    assert 'data-testid="period-error"' in bad.content.decode()


@pytest.mark.parametrize("role", ["admin", "qa", "regulator"])
def test_the_other_analytics_roles_see_the_page(client, sales, role):
    user = {"admin": sales.net.admin, "qa": sales.net.qa, "regulator": sales.net.regulator}[role]
    response = page(client, user)
    assert response.status_code == 200
    if role == "regulator":
        assert 'data-testid="scope">every partner<' in response.content.decode()


def test_other_roles_are_refused_and_see_no_link(client, shipping):
    t = shipping
    for user in (t.net.warehouse, t.buyer_user):
        assert page(client, user).status_code == 403
        home = client.get("/")
        assert 'data-testid="nav-sales"' not in home.content.decode()


def test_signing_in_comes_first(client, network):
    response = client.get("/sales/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_an_empty_page_renders(client, network):
    response = page(client, network.admin)
    assert response.status_code == 200
    assert "No shipments in this period." in response.content.decode()
