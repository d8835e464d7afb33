"""The scan station page /scan/ as served: who gets the form, with which actions and locations,
and the static files it needs (served without a CDN)."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.staticfiles import finders

from batches import scanning
from partners.models import Role
from tests.factories import BatchFactory, LocationFactory, ProductFactory, UserFactory

FORM = 'id="scan-form"'


def page(client, user):
    client.force_login(user)
    return client.get("/scan/")


def test_the_page_needs_sign_in(client, db):
    response = client.get("/scan/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/scan/")


def test_a_warehouse_operator_gets_every_action_and_the_partners_own_locations(client, network):
    LocationFactory(site=network.manufacturer_site, code="TRANSIT", kind="in_transit")

    response = page(client, network.warehouse)

    html = response.content.decode()
    assert response.status_code == 200
    assert FORM in html
    assert 'name="csrfmiddlewaretoken"' in html
    for value in ("receive", "putaway", "pick", "ship", "count", "verify"):
        assert f'<option value="{value}">' in html
    assert set(response.context["locations"]) == {
        network.manufacturer_storage,
        network.manufacturer_quarantine,
    }
    assert f'<option value="{network.other_storage.pk}">' not in html, "another partner's"
    assert "TRANSIT" not in html, "nothing is scanned into a truck"
    assert 'data-scan-url="/api/v1/scans/"' in html
    assert 'data-decode-url="/api/v1/scans/decode/"' in html
    assert "/static/batches/scan.js" in html
    assert "/static/batches/scan.css" in html
    assert "autofocus" in html


def test_a_partner_user_gets_only_receive_and_verify(client, network):
    html = page(client, network.other_user).content.decode()
    offered = [
        value
        for value in ("receive", "putaway", "pick", "ship", "count", "verify")
        if f'<option value="{value}">' in html
    ]
    assert offered == [
        action
        for action in ("receive", "putaway", "pick", "ship", "count", "verify")
        if Role.PARTNER_USER in scanning.SCAN_ROLES[action]
    ]
    assert offered == ["receive", "verify"]


@pytest.mark.parametrize("username", ["regulator", "desk"])
def test_roles_that_do_not_scan_get_an_explanation_instead_of_a_form(client, network, username):
    users = {
        "regulator": network.regulator,
        "desk": UserFactory(partner=network.manufacturer, role=Role.ORDER_DESK),
    }
    response = page(client, users[username])

    html = response.content.decode()
    assert response.status_code == 200
    assert FORM not in html
    assert 'data-testid="no-scanning"' in html
    assert "does not scan" in html


def test_the_users_last_scans_are_listed(client, network):
    lot = BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer, gtin="09501101530003"),
        lot_number="A1",
    )
    scanning.scan_submit(
        actor=network.warehouse,
        code="]d20109501101530003" + "17" + lot.expires_on.strftime("%y%m%d") + "10A1",
        action="verify",
        location=network.manufacturer_storage,
    )
    scanning.scan_submit(
        actor=network.warehouse,
        code="not a barcode",
        action="verify",
        location=network.manufacturer_storage,
    )
    scanning.scan_submit(  # another user's scan is not listed
        actor=network.qa,
        code="09501101530003",
        action="verify",
        location=network.manufacturer_storage,
    )

    html = page(client, network.warehouse).content.decode()

    log = html[html.index('data-testid="scan-log"') :]
    assert log.count('<li class="scan-entry ') == 2
    assert log.index("not a barcode") < log.index("LOT A1"), "newest first"
    assert "Refused" in log
    assert "Accepted" in log


@pytest.mark.parametrize("path", ["batches/scan.js", "batches/scan.css"])
def test_the_static_files_exist_and_are_served(client, db, path):
    assert finders.find(path), path
    response = client.get(f"/static/{path}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert len(body) > 500
    assert b"://" not in body, "nothing comes from a CDN"


# --- refused scans on the QA dashboard and the lot page; label links ------------------------


@pytest.fixture
def refusals(network):
    """One refused scan at the manufacturer (an expired lot) and one at South Wholesale."""
    product = ProductFactory(manufacturer=network.manufacturer, gtin="09501101530003")
    expired = BatchFactory(
        product=product,
        lot_number="OLD1",
        manufactured_on=datetime.date(2020, 1, 1),
        expires_on=datetime.date(2021, 6, 30),
    )
    own = scanning.scan_submit(
        actor=network.warehouse,
        code="]d20109501101530003" + "17210630" + "10OLD1",
        action="verify",
        location=network.manufacturer_storage,
    ).record
    foreign = scanning.scan_submit(
        actor=UserFactory(partner=network.other, role=Role.WAREHOUSE_OPERATOR),
        code="]d20109501101530003" + "17210630" + "10FOREIGN9",
        action="verify",
        location=network.other_storage,
    ).record
    assert own.verdict == foreign.verdict == "refused"
    return expired


def test_the_qa_officer_sees_the_partners_refused_scans_on_the_dashboard(client, network, refusals):
    client.force_login(network.qa)
    html = client.get("/").content.decode()

    section = html[html.index('data-testid="refused-scans"') :]
    assert "lot_expired × 1" in html
    assert "lot OLD1 expired on 2021-06-30" in section
    assert f'href="/lots/{refusals.pk}/"' in section
    assert "FOREIGN9" not in html, "another partner's scans stay theirs"


@pytest.mark.parametrize("role", [Role.WAREHOUSE_OPERATOR, Role.ORDER_DESK])
def test_other_roles_have_no_refused_scans_section(client, network, refusals, role):
    client.force_login(UserFactory(partner=network.manufacturer, role=role))
    assert 'data-testid="refused-scans"' not in client.get("/").content.decode()


def test_the_dashboard_says_when_nothing_was_refused(client, network):
    client.force_login(network.qa)
    html = client.get("/").content.decode()
    assert 'data-testid="refused-scans"' in html
    assert "No scan was refused." in html


def test_the_lot_page_links_its_labels_and_lists_its_refused_scans(client, network, refusals):
    client.force_login(network.qa)
    html = client.get(f"/lots/{refusals.pk}/").content.decode()

    assert f'href="/api/v1/batches/{refusals.pk}/label.pdf"' in html
    assert f'href="/api/v1/batches/{refusals.pk}/label.png"' in html
    section = html[html.index('data-testid="lot-refused-scans"') :]
    assert "lot OLD1 expired on 2021-06-30" in section
    assert "(lot_expired)" in section


def test_the_navigation_offers_the_scan_station_to_scanning_roles(client, network):
    client.force_login(network.warehouse)
    assert 'data-testid="nav-scan"' in client.get("/").content.decode()
    client.force_login(network.regulator)
    assert 'data-testid="nav-scan"' not in client.get("/").content.decode()
