"""Bad input to the API: a 4xx with a machine-readable ``code`` and a human ``detail``, and
nothing written. Never a 500."""

from __future__ import annotations

import datetime

import pytest
from rest_framework.test import APIClient

from batches import services as batch_services
from batches.models import Batch, BatchStatus, Product, StockBalance, StockMove
from partners.models import Licence, Location, Partner, Site
from pharmadms.viewsets import REASON_REQUIRED
from tests.factories import BatchFactory, ProductFactory, UserFactory, gln, gtin14

API = "/api/v1"


def client_for(user) -> APIClient:
    """An authenticated client that answers a server error as a response, so it can be asserted."""
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


def table_counts() -> dict[str, int]:
    models = (Partner, Site, Location, Licence, Product, Batch, StockMove)
    counts = {model.__name__: model.objects.count() for model in models}
    counts["history"] = sum(model.history.count() for model in models if model is not StockMove)
    counts["on_hand"] = sum(StockBalance.objects.values_list("on_hand", flat=True))
    return counts


@pytest.fixture
def stock(network):
    """A product, a quarantined lot and a released lot holding 100 units at the manufacturer."""

    class Stock:
        pass

    s = Stock()
    s.product = ProductFactory(manufacturer=network.manufacturer)
    s.quarantined = BatchFactory(product=s.product, status=BatchStatus.QUARANTINE)
    s.released = BatchFactory(product=s.product, status=BatchStatus.RELEASED)
    batch_services.stock_receive(
        batch=s.released,
        location=network.manufacturer_storage,
        quantity=100,
        actor=network.warehouse,
        reason="production output",
    )
    return s


@pytest.fixture
def superuser(db):
    return UserFactory(username="root", partner=None, is_superuser=True, is_staff=True)


def product_body(stock, **changes) -> dict:
    return {
        "gtin": gtin14(700_001),
        "name": "Vaxiflu",
        "category": "vaccine",
        "dosage_form": "suspension for injection",
        "strength": "0.5 ml",
        "pack_size": 10,
        "storage_class": stock.product.storage_class_id,
        "shelf_life_months": 24,
        "reason": "new product",
        **changes,
    }


def batch_body(stock, **changes) -> dict:
    return {
        "product": stock.product.pk,
        "lot_number": "NEW001",
        "manufactured_on": "2026-02-01",
        "expires_on": "2027-12-31",
        "reason": "new lot",
        **changes,
    }


def site_body(**changes) -> dict:
    return {
        "name": "Plant 2",
        "gln": gln(700_002),
        "address_line": "Werkstraße 2",
        "postal_code": "80331",
        "city": "München",
        "country": "DE",
        "reason": "new plant",
        **changes,
    }


def partner_body(**changes) -> dict:
    return {
        "name": "East Pharmacy",
        "kind": "pharmacy",
        "gln": gln(700_003),
        "region": "DE-BE",
        "contact_email": "east@example.com",
        "contact_phone": "+49 30 123456",
        "reason": "new customer",
        **changes,
    }


def licence_body(**changes) -> dict:
    return {
        "number": "WDA-1",
        "kind": "manufacturing",
        "issuing_authority": "BfArM",
        "product_categories": ["vaccine"],
        "valid_from": "2025-01-01",
        "valid_until": "2030-12-31",
        "reason": "renewed",
        **changes,
    }


def adjust_body(network, stock, **changes) -> dict:
    return {
        "batch": stock.released.pk,
        "location": network.manufacturer_storage.pk,
        "quantity_change": -5,
        "reason": "cycle count",
        **changes,
    }


def with_bad_check_digit(identifier: str) -> str:
    return identifier[:-1] + str((int(identifier[-1]) + 1) % 10)


# --- identifiers ------------------------------------------------------------------------------


def test_gtin_with_a_wrong_check_digit_is_refused(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/products/", product_body(stock, gtin=with_bad_check_digit(gtin14(5))), format="json"
    )
    body = assert_refused(response, 400, "invalid_gtin")
    assert "gtin" in body["errors"]
    assert table_counts() == before


@pytest.mark.parametrize("length", [8, 12, 13])
def test_shorter_gtins_are_stored_as_gtin_14(network, stock, length):
    """GTIN-8/12/13 are left-padded with zeros to the GTIN-14 they denote."""
    gtin = {8: "96385074", 12: "036000291452", 13: "4006381333931"}[length]

    response = client_for(network.qa).post(
        f"{API}/products/", product_body(stock, gtin=gtin), format="json"
    )

    assert response.status_code == 201, response.content
    assert response.data["gtin"] == gtin.zfill(14)
    assert Product.objects.filter(gtin=gtin.zfill(14)).exists()


def test_a_gtin_13_of_an_existing_product_is_a_duplicate(network, stock):
    """Uniqueness is checked on the normalised GTIN-14, not on what was typed."""
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/products/", product_body(stock, gtin=stock.product.gtin[1:]), format="json"
    )
    assert_refused(response, 400, "duplicate")
    assert table_counts() == before


def test_site_gln_with_a_wrong_check_digit_is_refused(network):
    before = table_counts()
    response = client_for(network.admin).post(
        f"{API}/sites/", site_body(gln=with_bad_check_digit(gln(6))), format="json"
    )
    assert_refused(response, 400, "invalid_gln")
    assert table_counts() == before


def test_partner_gln_with_a_wrong_check_digit_is_refused(network, superuser):
    before = table_counts()
    response = client_for(superuser).post(
        f"{API}/partners/", partner_body(gln=with_bad_check_digit(gln(7))), format="json"
    )
    assert_refused(response, 400, "invalid_gln")
    assert table_counts() == before


def test_partner_with_a_valid_gln_is_registered_by_the_superuser(network, superuser):
    response = client_for(superuser).post(f"{API}/partners/", partner_body(), format="json")
    assert response.status_code == 201, response.content
    assert Partner.objects.get(gln=gln(700_003)).history.get().history_user == superuser


def test_a_duplicate_site_gln_is_refused(network):
    before = table_counts()
    response = client_for(network.admin).post(
        f"{API}/sites/", site_body(gln=network.other_site.gln), format="json"
    )
    assert_refused(response, 400, "duplicate")
    assert table_counts() == before


# --- lots -------------------------------------------------------------------------------------


def test_manufacturer_qa_creates_a_lot_with_its_reason(network, stock):
    response = client_for(network.qa).post(f"{API}/batches/", batch_body(stock), format="json")

    assert response.status_code == 201, response.content
    assert response.data["status"] == "quarantine"
    batch = Batch.objects.get(pk=response.data["id"])
    version = batch.history.get()
    assert version.history_user == network.qa
    assert version.history_change_reason == "new lot"


def test_a_duplicate_lot_is_refused(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/batches/",
        batch_body(stock, lot_number=stock.quarantined.lot_number),
        format="json",
    )
    assert response.status_code in (400, 409)
    assert_refused(response, response.status_code, "duplicate_lot")
    assert table_counts() == before


@pytest.mark.parametrize("expires_on", ["2026-02-01", "2026-01-31"])
def test_expiry_on_or_before_manufacture_is_refused(network, stock, expires_on):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/batches/", batch_body(stock, expires_on=expires_on), format="json"
    )
    assert_refused(response, 400, "expiry_before_manufacture")
    assert table_counts() == before


def test_expiry_beyond_the_shelf_life_is_refused(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/batches/", batch_body(stock, expires_on="2030-01-01"), format="json"
    )
    assert_refused(response, 400, "expiry_beyond_shelf_life")
    assert table_counts() == before


def test_dates_at_the_end_of_the_calendar_are_refused_not_a_500(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/batches/",
        batch_body(stock, manufactured_on="9999-06-01", expires_on="9999-12-01"),
        format="json",
    )
    assert_refused(response, 400, "manufacture_in_future")
    assert table_counts() == before


def test_a_shelf_life_long_enough_to_break_expiry_arithmetic_is_refused(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/products/", product_body(stock, shelf_life_months=1_000_000), format="json"
    )
    assert_refused(response, 400, "max_value")
    assert table_counts() == before


def test_a_released_lots_expiry_cannot_change(network, stock):
    before = table_counts()
    response = client_for(network.qa).patch(
        f"{API}/batches/{stock.released.pk}/",
        {"expires_on": "2027-06-30", "reason": "typo on the label"},
        format="json",
    )
    assert_refused(response, 409, "batch_dates_locked")
    stock.released.refresh_from_db()
    assert stock.released.expires_on == datetime.date(2027, 12, 31)
    assert table_counts() == before


def test_a_quarantined_lots_expiry_is_corrected(network, stock):
    response = client_for(network.qa).patch(
        f"{API}/batches/{stock.quarantined.pk}/",
        {"expires_on": "2027-06-30", "reason": "typo on the label"},
        format="json",
    )
    assert response.status_code == 200, response.content
    stock.quarantined.refresh_from_db()
    assert stock.quarantined.expires_on == datetime.date(2027, 6, 30)


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("status", "released", "field_not_editable"),
        ("lot_number", "OTHER", "field_not_editable"),
        ("id", 999, "field_not_editable"),
        ("colour", "red", "unknown_field"),
    ],
)
def test_a_lot_field_that_cannot_be_written_is_refused_not_ignored(
    network, stock, field, value, code
):
    """Releasing a lot takes a QA signature: a PATCH of its status must not pass in silence."""
    before = table_counts()
    response = client_for(network.qa).patch(
        f"{API}/batches/{stock.quarantined.pk}/",
        {field: value, "reason": "sneaky"},
        format="json",
    )
    assert_refused(response, 400, code)
    stock.quarantined.refresh_from_db()
    assert stock.quarantined.status == BatchStatus.QUARANTINE
    assert stock.quarantined.lot_number != "OTHER"
    assert table_counts() == before


def test_a_lot_number_outside_the_gs1_character_set_is_refused(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/batches/", batch_body(stock, lot_number="LOT 1"), format="json"
    )
    assert_refused(response, 400, "invalid_lot_number")
    assert table_counts() == before


# --- the ledger -------------------------------------------------------------------------------


@pytest.mark.parametrize("quantity_change", [0, 2.5, "ten", True, None, 2**31, -(2**40)])
def test_an_adjustment_needs_a_whole_number_other_than_zero(network, stock, quantity_change):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/stock-moves/adjust/",
        adjust_body(network, stock, quantity_change=quantity_change),
        format="json",
    )
    assert_refused(response, 400, "invalid_quantity")
    assert table_counts() == before


def test_an_adjustment_that_would_overflow_the_balance_is_refused_not_a_500(network, stock):
    """Each change is within bounds; their sum may not be. SQLite's integers are 64-bit."""
    response = client_for(network.qa).post(
        f"{API}/stock-moves/adjust/",
        adjust_body(network, stock, quantity_change=2_147_483_647),
        format="json",
    )
    assert response.status_code in (201, 400, 409), response.content


def test_removing_more_than_is_on_hand_is_a_conflict(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/stock-moves/adjust/",
        adjust_body(network, stock, quantity_change=-101),
        format="json",
    )
    body = assert_refused(response, 409, "insufficient_stock")
    assert body["available"] == 100
    assert table_counts() == before


def test_an_adjustment_of_a_lot_that_does_not_exist_is_not_found(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/stock-moves/adjust/",
        adjust_body(network, stock, batch=10**20),
        format="json",
    )
    assert_refused(response, 404, "not_found")
    assert table_counts() == before


def test_an_adjustment_with_an_unknown_field_is_refused(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/stock-moves/adjust/",
        adjust_body(network, stock, kind="destruction"),
        format="json",
    )
    assert_refused(response, 400, "unknown_field")
    assert table_counts() == before


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_stock_move_is_never_edited_nor_deleted(network, stock, method):
    move = StockMove.objects.get()
    before = table_counts()

    response = getattr(client_for(network.qa), method)(
        f"{API}/stock-moves/{move.pk}/", {"quantity": 1, "reason": "fix"}, format="json"
    )

    assert_refused(response, 405, "method_not_allowed")
    assert StockMove.objects.get().quantity == 100
    assert table_counts() == before


def test_a_stock_move_is_not_posted_directly(network, stock):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/stock-moves/",
        {"batch": stock.released.pk, "quantity": 5, "kind": "receipt", "reason": "x"},
        format="json",
    )
    assert_refused(response, 405, "method_not_allowed")
    assert table_counts() == before


@pytest.mark.parametrize("method", ["put", "delete"])
@pytest.mark.parametrize("resource", ["sites", "locations", "batches", "partners"])
def test_regulated_records_are_not_replaced_nor_deleted(network, stock, resource, method):
    obj = {
        "sites": network.manufacturer_site,
        "locations": network.manufacturer_storage,
        "batches": stock.quarantined,
        "partners": network.manufacturer,
    }[resource]
    before = table_counts()

    response = getattr(client_for(network.admin), method)(
        f"{API}/{resource}/{obj.pk}/", {"reason": "gone"}, format="json"
    )

    assert_refused(response, 405, "method_not_allowed")
    assert type(obj).objects.filter(pk=obj.pk).exists()
    assert table_counts() == before


# --- the reason for a change ------------------------------------------------------------------


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_create_without_a_reason_is_refused(network, stock, reason):
    body = batch_body(stock)
    if reason is None:
        del body["reason"]
    else:
        body["reason"] = reason
    before = table_counts()

    response = client_for(network.qa).post(f"{API}/batches/", body, format="json")

    response_body = assert_refused(response, 400, "reason_required")
    assert "reason" in response_body["errors"]
    assert table_counts() == before


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_correction_without_a_reason_is_refused(network, reason):
    body = {"city": "Augsburg"} if reason is None else {"city": "Augsburg", "reason": reason}
    before = table_counts()

    response = client_for(network.admin).patch(
        f"{API}/sites/{network.manufacturer_site.pk}/", body, format="json"
    )

    assert_refused(response, 400, "reason_required")
    network.manufacturer_site.refresh_from_db()
    assert network.manufacturer_site.city != "Augsburg"
    assert table_counts() == before


def test_an_adjustment_without_a_reason_is_refused(network, stock):
    body = adjust_body(network, stock)
    del body["reason"]
    before = table_counts()
    response = client_for(network.qa).post(f"{API}/stock-moves/adjust/", body, format="json")
    assert_refused(response, 400, "reason_required")
    assert table_counts() == before


def test_a_correction_that_changes_nothing_is_refused(network):
    """A reason alone would answer 200 and leave no version: the client must learn it."""
    before = table_counts()
    response = client_for(network.admin).patch(
        f"{API}/sites/{network.manufacturer_site.pk}/", {"reason": "just because"}, format="json"
    )
    assert_refused(response, 400, "no_changes")
    assert table_counts() == before


# --- malformed requests -----------------------------------------------------------------------


def test_malformed_json_is_a_parse_error(network):
    before = table_counts()
    response = client_for(network.admin).generic(
        "POST", f"{API}/sites/", '{"name": "Plant 2",', content_type="application/json"
    )
    assert_refused(response, 400, "parse_error")
    assert table_counts() == before


@pytest.mark.parametrize(
    ("body", "code"), [("[1, 2]", "invalid"), ('"a site"', "invalid"), ("42", "invalid")]
)
def test_a_body_that_is_not_an_object_is_refused(network, body, code):
    before = table_counts()
    response = client_for(network.admin).generic(
        "POST", f"{API}/sites/", body, content_type="application/json"
    )
    assert_refused(response, 400, code)
    assert table_counts() == before


def test_an_empty_body_is_refused(network):
    before = table_counts()
    response = client_for(network.admin).generic(
        "POST", f"{API}/sites/", "", content_type="application/json"
    )
    body = assert_refused(response, 400, "required")
    assert body["errors"]["reason"] == [REASON_REQUIRED]
    assert table_counts() == before


def test_an_unsupported_media_type_is_refused(network):
    response = client_for(network.admin).generic(
        "POST", f"{API}/sites/", "name=Plant", content_type="text/plain"
    )
    assert_refused(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("resource", "writer", "body"),
    [
        ("sites", "admin", lambda stock: site_body(fax="+49 1")),
        ("partners", "superuser", lambda stock: partner_body(owner="me")),
        ("licences", "qa", lambda stock: licence_body(scope="all")),
        ("products", "qa", lambda stock: product_body(stock, colour="red")),
        ("batches", "qa", lambda stock: batch_body(stock, status="released")),
        ("locations", "admin", lambda stock: {"code": "B1", "name": "B", "kind": "storage"}),
    ],
)
def test_unknown_or_read_only_fields_are_refused_on_create(
    network, stock, superuser, resource, writer, body
):
    payload = body(stock)
    if resource == "locations":
        payload |= {"site": network.manufacturer_site.pk, "reason": "new bay", "partner": 1}
    user = superuser if writer == "superuser" else getattr(network, writer)
    before = table_counts()

    response = client_for(user).post(f"{API}/{resource}/", payload, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["code"] in ("unknown_field", "field_not_editable")
    assert table_counts() == before


def test_a_form_post_from_the_browsable_api_keeps_its_csrf_field(network):
    """The HTML form carries csrfmiddlewaretoken in its body: that is not an unknown field."""
    response = client_for(network.admin).post(
        f"{API}/sites/", site_body(csrfmiddlewaretoken="x" * 64), format="multipart"
    )
    assert response.status_code == 201, response.content
    assert Site.objects.filter(pk=response.data["id"], name="Plant 2").exists()


@pytest.mark.parametrize(
    "categories", [5, [[1]], "vaccine", {"vaccine": True}, ["vaccine", "homeopathy"], []]
)
def test_licence_categories_must_be_a_list_of_known_categories(network, categories):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/licences/", licence_body(product_categories=categories), format="json"
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] in ("not_a_list", "invalid_choice", "empty")
    assert body["detail"].startswith("product_categories")
    assert "product_categories" in body["errors"]
    assert table_counts() == before


def test_a_licence_that_ends_before_it_starts_is_refused(network):
    before = table_counts()
    response = client_for(network.qa).post(
        f"{API}/licences/", licence_body(valid_until="2024-12-31"), format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("valid_until")
    assert table_counts() == before


def test_a_licence_that_ends_before_it_starts_says_invalid_period(network):
    response = client_for(network.qa).post(
        f"{API}/licences/", licence_body(valid_until="2024-12-31"), format="json"
    )
    assert_refused(response, 400, "invalid_period")


def test_a_location_never_moves_to_another_site(network):
    created = client_for(network.admin).post(f"{API}/sites/", site_body(), format="json")
    assert created.status_code == 201, created.content
    before = table_counts()

    response = client_for(network.admin).patch(
        f"{API}/locations/{network.manufacturer_storage.pk}/",
        {"site": created.data["id"], "reason": "moved"},
        format="json",
    )

    assert_refused(response, 400, "field_not_editable")
    network.manufacturer_storage.refresh_from_db()
    assert network.manufacturer_storage.site == network.manufacturer_site
    assert table_counts() == before


def test_a_superuser_without_a_partner_cannot_own_a_product(network, stock, superuser):
    """Products belong to a manufacturer; the platform operator belongs to none."""
    before = table_counts()
    response = client_for(superuser).post(f"{API}/products/", product_body(stock), format="json")
    assert_refused(response, 403, "not_a_manufacturer")
    assert table_counts() == before


def test_a_wholesaler_cannot_own_a_product(network, stock):
    before = table_counts()
    response = client_for(network.wholesaler_qa).post(
        f"{API}/products/", product_body(stock), format="json"
    )
    assert_refused(response, 409, "not_a_manufacturer")
    assert table_counts() == before


@pytest.mark.parametrize(
    "query",
    ["expires_on__lt=not-a-date", "product=abc", "status=frozen", "created_at__gte=yesterday"],
)
def test_a_bad_filter_is_a_400(network, stock, query):
    resource = "stock-moves" if query.startswith("created_at") else "batches"
    response = client_for(network.qa).get(f"{API}/{resource}/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["code"] in ("invalid", "invalid_choice")


@pytest.mark.parametrize("pk", ["abc", str(10**20), "-1"])
def test_an_identifier_that_cannot_exist_is_not_found(network, stock, pk):
    response = client_for(network.qa).get(f"{API}/batches/{pk}/")
    assert_refused(response, 404, "not_found")
    response = client_for(network.qa).get(f"{API}/batches/{pk}/history/")
    assert_refused(response, 404, "not_found")
