"""Label endpoints: ``GET /api/v1/batches/<id>/label.png|.pdf`` and
``GET /api/v1/packages/<sscc>/label.png|.pdf``, with the API's scoping rules."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image

from audit.history import update_with_reason
from batches import services as stock
from orders import services as orders
from partners.models import Role
from tests.batches.test_labels import ais, assert_valid_pdf, rasterise_pdf
from tests.conftest import client_for
from tests.factories import BatchFactory, ProductFactory, UserFactory
from tests.orders.conftest import planned_shipment, shipping, trade  # noqa: F401  (fixtures)

API = "/api/v1"


def decode(response) -> zxingcpp.Barcode:
    (barcode,) = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(response.content)), text_mode=zxingcpp.TextMode.Plain
    )
    return barcode


@pytest.fixture
def lot(network):
    """A lot made by the manufacturer, of which South Wholesale holds 10 units."""
    product = ProductFactory(manufacturer=network.manufacturer, gtin="09501101530003")
    batch = BatchFactory(product=product, lot_number="10D9T")
    stock.stock_receive(
        batch=batch,
        location=network.other_storage,
        quantity=10,
        actor=UserFactory(partner=network.other, role=Role.WAREHOUSE_OPERATOR),
        reason="opening stock",
    )
    return batch


def test_the_png_label_encodes_the_lot(network, lot):
    response = client_for(network.warehouse).get(f"{API}/batches/{lot.pk}/label.png")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'inline; filename="lot-10D9T.png"'
    barcode = decode(response)
    assert barcode.symbology_identifier == "]d2"
    assert ais(barcode) == {
        "01": "09501101530003",
        "17": lot.expires_on.strftime("%y%m%d"),
        "10": "10D9T",
    }


def test_the_pdf_label_is_a_pdf_of_the_same_symbol(network, lot):
    response = client_for(network.qa).get(f"{API}/batches/{lot.pk}/label.pdf")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert_valid_pdf(response.content)
    (barcode,) = zxingcpp.read_barcodes(
        rasterise_pdf(response.content), text_mode=zxingcpp.TextMode.Plain
    )
    assert ais(barcode)["10"] == "10D9T"


def test_the_manufacturer_prints_a_serialised_label(network, lot):
    response = client_for(network.warehouse).get(
        f"{API}/batches/{lot.pk}/label.png", {"serial": "100000000001"}
    )

    assert response.status_code == 200
    assert ais(decode(response))["21"] == "100000000001"
    assert response["Content-Disposition"] == 'inline; filename="lot-10D9T-100000000001.png"'


def test_a_holder_prints_the_lot_label_but_no_serials(network, lot):
    """South Wholesale holds the lot: it labels its shelf, but serials are the brand owner's."""
    client = client_for(network.other_user)

    assert client.get(f"{API}/batches/{lot.pk}/label.png").status_code == 200
    refused = client.get(f"{API}/batches/{lot.pk}/label.pdf", {"serial": "1"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_the_manufacturer"


def test_a_bad_serial_is_refused_with_its_code(network, lot):
    response = client_for(network.qa).get(f"{API}/batches/{lot.pk}/label.png", {"serial": "A B"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_serial"


@pytest.mark.parametrize("extension", ["png", "pdf"])
def test_a_lot_the_partner_cannot_see_is_not_found(network, lot, extension):
    """North Wholesale neither makes nor holds the lot."""
    response = client_for(network.wholesaler_qa).get(f"{API}/batches/{lot.pk}/label.{extension}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("extension", ["png", "pdf"])
def test_anonymous_is_challenged(api_client, lot, extension):
    response = api_client.get(f"{API}/batches/{lot.pk}/label.{extension}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_the_regulator_reads_labels(network, lot):
    assert client_for(network.regulator).get(f"{API}/batches/{lot.pk}/label.png").status_code == 200


def test_a_strict_accept_header_still_gets_the_file(network, lot):
    """A printer spooler asking only for image/png is served, not answered 406."""
    response = client_for(network.qa).get(
        f"{API}/batches/{lot.pk}/label.png", HTTP_ACCEPT="image/png"
    )
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")


def test_only_png_and_pdf_exist(network, lot):
    assert client_for(network.qa).get(f"{API}/batches/{lot.pk}/label.svg").status_code == 404


# --- packages -------------------------------------------------------------------------------------


@pytest.fixture
def package(shipping):  # noqa: F811  (the fixture imported above)
    """A case packed for North Wholesale from Acme's planned shipment."""
    t = shipping
    update_with_reason(
        t.seller,
        actor=t.net.admin,
        reason="test: GS1 membership",
        changes={"gs1_company_prefix": "4012345"},
        editable={"gs1_company_prefix"},
    )
    shipment = planned_shipment(t, (t.vaccine, 50))
    lines = list(shipment.lines.all())
    t.package = orders.shipment_pack(
        shipment=shipment,
        contents=[(line, line.quantity) for line in lines],
        actor=t.seller_warehouse,
        reason="case 1",
    )
    t.shipment = shipment
    return t


@pytest.mark.parametrize("viewer", ["net.warehouse", "buyer_warehouse", "net.regulator"])
def test_seller_buyer_and_regulator_print_the_sscc_label(package, viewer):
    t = package
    user = t
    for part in viewer.split("."):
        user = getattr(user, part)

    png = client_for(user).get(f"{API}/packages/{t.package.sscc}/label.png")
    pdf = client_for(user).get(f"{API}/packages/{t.package.sscc}/label.pdf")

    assert png.status_code == 200
    barcode = decode(png)
    assert barcode.symbology_identifier == "]C1"
    assert ais(barcode) == {"00": t.package.sscc}
    assert pdf.status_code == 200
    assert_valid_pdf(pdf.content)
    assert t.shipment.number.encode() in pdf.content
    assert b"North Wholesale" in pdf.content
    assert b"LOT V200)" in pdf.content  # FEFO put 40 of V200 and 10 of V400 on the case
    assert b"LOT V400)" in pdf.content


def test_another_partners_package_is_not_found(package):
    t = package
    response = client_for(t.net.other_user).get(f"{API}/packages/{t.package.sscc}/label.png")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_an_unknown_sscc_is_not_found(package):
    response = client_for(package.net.warehouse).get(f"{API}/packages/106141411234567897/label.pdf")
    assert response.status_code == 404


def test_anonymous_gets_no_package_label(api_client, package):
    response = api_client.get(f"{API}/packages/{package.package.sscc}/label.png")
    assert response.status_code == 401
