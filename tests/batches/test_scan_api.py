"""``/api/v1/scans/``: the answer's shape, malformed requests, scoping, and any text at all."""

from __future__ import annotations

import datetime
from unittest import mock

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.test import APIClient

from batches import services as stock
from batches.models import ScanAction, ScanRecord, StockMove
from batches.scan_api import (
    ScanAnswerSerializer,
    ScanRequestSerializer,
    _timestamp,
    plain_request,
)
from partners.models import Role
from tests.factories import BatchFactory, ProductFactory, UserFactory, datamatrix

API = "/api/v1/scans/"


def client_for(user) -> APIClient:
    """Answers a server error as a response, so a 5xx can be asserted, never raised."""
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    return client


@pytest.fixture
def lot(network):
    product = ProductFactory(manufacturer=network.manufacturer, name="Vaccine", strength="1 ml")
    lot = BatchFactory(
        product=product,
        lot_number="A1",
        expires_on=timezone.localdate() + datetime.timedelta(days=300),
    )
    stock.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=10,
        actor=network.warehouse,
        reason="in",
    )
    return lot


def body(network, lot, **changes):
    return {
        "code": datamatrix(lot.product.gtin, lot.lot_number, lot.expires_on),
        "action": "verify",
        "location": network.manufacturer_storage.pk,
        **changes,
    }


def test_an_accepted_scan_answers_the_documented_shape(network, lot):
    response = client_for(network.warehouse).post(API, body(network, lot, scan_id="st1:1"))
    assert response.status_code == 200, response.content
    data = response.json()
    assert set(data) == {
        "id",
        "scan_id",
        "created_at",
        "user",
        "location",
        "location_code",
        "action",
        "reference",
        "quantity",
        "verdict",
        "reasons",
        "warnings",
        "parsed",
        "product",
        "lot",
        "serial",
        "outcome",
        "raw_code",
        "replayed",
    }
    assert data["verdict"] == "accepted"
    assert data["reasons"] == []
    assert data["warnings"] == [{"code": "no_serial", "detail": data["warnings"][0]["detail"]}]
    assert data["product"] == {
        "id": lot.product.pk,
        "gtin": lot.product.gtin,
        "name": "Vaccine",
        "strength": "1 ml",
    }
    assert data["lot"] == {
        "id": lot.pk,
        "lot_number": "A1",
        "expires_on": lot.expires_on.isoformat(),
        "status": "released",
    }
    assert data["parsed"]["gtin"] == lot.product.gtin
    assert data["parsed"]["symbology"] == "]d2"
    assert [e["ai"] for e in data["parsed"]["elements"]] == ["01", "17", "10"]
    assert data["user"] == "warehouse"
    assert data["location_code"] == "STORE"
    assert data["quantity"] == 1
    assert data["replayed"] is False


@pytest.mark.parametrize(
    "changes",
    [
        {"scan_id": "eq:1"},  # accepted, with a product and a lot
        {"code": "10D9T"},  # refused before anything is identified
        {"code": "]d20109501101530003"},  # refused: an unknown GTIN
    ],
)
def test_the_answer_is_what_the_documented_serializer_gives(network, lot, changes):
    """The answer is written out for speed (scan_answer); the schema documents it with
    ScanAnswerSerializer: the two stay equal."""
    data = client_for(network.warehouse).post(API, body(network, lot, **changes)).json()

    again = client_for(network.warehouse).post(API, body(network, lot, **changes)).json()
    record = ScanRecord.objects.get(pk=data["id"])
    record.replayed = False
    assert data == ScanAnswerSerializer(record).data
    if "scan_id" in changes:  # sent again: the first record, replayed
        record.replayed = True
        assert again == ScanAnswerSerializer(record).data


def test_a_serialised_pack_answers_its_serial_as_the_serializer_does(network, lot):
    stock.serial_commission(
        batch=lot, serial_numbers=["S1"], actor=network.warehouse, reason="labelled"
    )
    code = datamatrix(lot.product.gtin, lot.lot_number, lot.expires_on, "S1")
    data = client_for(network.warehouse).post(API, body(network, lot, code=code)).json()

    record = ScanRecord.objects.get(pk=data["id"])
    record.replayed = False
    assert data["serial"] == {"serial_number": "S1", "state": "commissioned"}
    assert data == ScanAnswerSerializer(record).data


def test_a_refused_scan_is_a_200_with_its_reasons(network, lot):
    response = client_for(network.warehouse).post(API, body(network, lot, code="10D9T"))
    assert response.status_code == 200
    data = response.json()
    assert data["verdict"] == "refused"
    assert data["reasons"][0]["code"] == "not_gs1"
    assert data["parsed"]["unconfirmed"] == "(10)D9T"
    assert (data["product"], data["lot"]) == (None, None)


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"action": "dance"}, 400, "unknown_action"),
        ({"action": None}, 400, "action_required"),
        ({"location": None}, 400, "location_required"),
        ({"location": "here"}, 400, "invalid_location"),
        ({"code": None}, 400, "code_required"),
        ({"code": 12}, 400, "invalid_code"),
        ({"code": "x" * 70_000}, 400, "code_too_long"),
        ({"quantity": -1}, 400, "invalid_quantity"),
        ({"quantity": "many"}, 400, "invalid_quantity"),
        ({"action": "count"}, 400, "quantity_required"),
        ({"action": "pick"}, 400, "reference_required"),
        ({"reference": "SH\x00"}, 400, "invalid_reference"),
        ({"scan_id": "with space"}, 400, "invalid_scan_id"),
        ({"decommission": "stolen"}, 400, "invalid_decommission"),
        ({"status": "accepted"}, 400, "unknown_field"),
        ({"location": 10**9}, 404, "unknown_location"),
    ],
)
def test_a_malformed_request_is_a_4xx_with_a_code_and_records_nothing(
    network, lot, changes, status, code
):
    payload = body(network, lot, **changes)
    for key in [key for key, value in changes.items() if value is None]:
        payload.pop(key)
    response = client_for(network.warehouse).post(API, payload, format="json")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    assert response.json()["detail"]
    assert ScanRecord.objects.count() == 0


def test_scans_are_scoped_to_the_partner(network, lot):
    client_for(network.warehouse).post(API, body(network, lot))
    record = ScanRecord.objects.get()
    other = client_for(network.other_user)
    assert other.get(API).json()["results"] == []
    assert other.get(f"{API}{record.pk}/").status_code == 404
    response = other.post(API, body(network, lot))  # the manufacturer's location
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_location"
    own = client_for(network.qa)
    assert [row["id"] for row in own.get(API).json()["results"]] == [record.pk]
    assert own.get(f"{API}{record.pk}/").json()["verdict"] == "accepted"


def test_a_regulator_reads_every_scan_and_scans_none(network, lot):
    client_for(network.warehouse).post(API, body(network, lot))
    regulator = client_for(network.regulator)
    assert len(regulator.get(API).json()["results"]) == 1
    assert regulator.post(API, body(network, lot)).status_code == 403


def test_anonymous_and_wrong_roles_are_refused(network, lot):
    assert APIClient().post(API, body(network, lot), format="json").status_code == 401
    assert APIClient().get(API).status_code == 401
    desk = UserFactory(partner=network.manufacturer, role=Role.ORDER_DESK)
    assert client_for(desk).post(API, body(network, lot)).status_code == 403
    assert client_for(network.warehouse).put(f"{API}1/", {}).status_code == 405
    assert client_for(network.warehouse).delete(f"{API}1/").status_code == 405
    assert ScanRecord.objects.count() == 0


def test_the_list_filters_and_the_refused_summary(network, lot):
    client = client_for(network.warehouse)
    client.post(API, body(network, lot))
    client.post(API, body(network, lot, code="hello"))
    client.post(API, body(network, lot, code="10D9T"))
    client.post(API, body(network, lot, code=""))
    refused = client.get(API, {"verdict": "refused"}).json()["results"]
    assert len(refused) == 3
    assert client.get(API, {"action": "count"}).json()["results"] == []
    today = timezone.localdate().isoformat()
    assert len(client.get(API, {"date": today}).json()["results"]) == 4
    assert client.get(API, {"verdict": "maybe"}).status_code == 400
    summary = client_for(network.qa).get(f"{API}refused-summary/").json()
    assert [(row["code"], row["count"]) for row in summary] == [
        ("not_gs1", 2),
        ("empty_code", 1),
    ]


def test_the_scan_api_is_in_the_schema(network):
    schema = client_for(network.qa).get("/api/schema/?format=json").json()
    paths, components = schema["paths"], schema["components"]["schemas"]
    assert set(paths["/api/v1/scans/"]) == {"get", "post"}
    assert set(paths["/api/v1/scans/{id}/"]) == {"get"}
    # the action is documented with its choices, under a name of its own
    assert components["ScanActionEnum"]["enum"] == list(ScanAction.values)
    request = components["ScanRequestRequest"]["properties"]["action"]
    assert request == {"$ref": "#/components/schemas/ScanActionEnum"}


@pytest.mark.slow
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
        # 10 kB of anything: a short text repeated (hypothesis draws at most a few kB)
        st.text(min_size=1, max_size=40).map(lambda s: (s * (10_240 // len(s) + 1))[:10_240]),
        st.builds(lambda s: "]d201" + s, st.text(alphabet="0123456789\x1d()A", max_size=60)),
        st.builds(lambda s: "https://id.gs1.org/" + s, st.text(max_size=80)),
    ),
    action=st.sampled_from(["receive", "putaway", "pick", "ship", "count", "verify"]),
)
def test_any_text_to_the_endpoint_never_answers_a_5xx(network, lot, text, action):
    payload = body(network, lot, code=text, action=action, reference="SH-2026-000001", quantity=1)
    response = client_for(network.warehouse).post(API, payload, format="json")
    assert response.status_code < 500, response.content
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        assert response.json()["verdict"] in ("accepted", "refused")


def test_refusals_write_only_their_scan_over_the_api(network, lot):
    moves = StockMove.objects.count()
    client_for(network.warehouse).post(API, body(network, lot, action="putaway"))
    assert StockMove.objects.count() == moves
    assert ScanRecord.objects.get().verdict == "refused"


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_the_answer_writes_its_time_as_drf_does_in_any_time_zone(zone):
    moment = datetime.datetime(2026, 11, 28, 15, 4, 5, 123456, tzinfo=datetime.UTC)
    with timezone.override(zone):
        assert _timestamp(moment) == serializers.DateTimeField().to_representation(moment)


# Requests near and far from well formed: each field mostly well formed, or at one of its
# edges (type, bounds, whitespace, a newline, blank), or any value at all; unknown keys too.
_any = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
)


def _field(*edges, well_formed):
    # Well formed six times in eight: a request with one edge among plain fields is common.
    drawn = [*[well_formed] * 6, st.sampled_from(edges), _any]
    return st.integers(0, 7).flatmap(drawn.__getitem__)


_plain_requests = st.fixed_dictionaries(
    {
        "code": _field(1, None, "", " x ", "x" * 65_537, well_formed=st.text(max_size=40)),
        "action": _field(
            "",
            "fly",
            " verify",
            "VERIFY",
            1,
            well_formed=st.sampled_from(["verify", "pick", "count", "putaway", "receive", "ship"]),
        ),
        "location": _field(0, -1, 2**63, True, 1.0, "7", well_formed=st.integers(1, 2**63 - 1)),
    },
    optional={
        "reference": _field(
            " SH-1",
            "SH-1 ",
            "SH-1\n",
            "\tSH",
            "é",
            "x" * 101,
            5,
            well_formed=st.sampled_from(["", "SH-2026-000001", "STORE", "x" * 100]),
        ),
        "scan_id": _field(
            "",
            " a",
            "a\n",
            "a b",
            "s" * 65,
            5,
            well_formed=st.from_regex(r"[A-Za-z0-9._:\-]{1,64}", fullmatch=True),
        ),
        "quantity": _field(
            -1,
            1_000_001,
            True,
            2.0,
            "3",
            well_formed=st.one_of(st.none(), st.integers(0, 1_000_000)),
        ),
        "decommission": _field(
            " dispensed", "DISPENSED", None, 1, well_formed=st.sampled_from(["", "dispensed"])
        ),
        "x": st.integers(),
    },
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plain_requests)
def test_a_plain_request_validates_as_its_fields_do(sent):
    """plain_request() takes only what the serializer's fields take, and gives what they give;
    everything else goes to the fields (the same request through both, compared)."""
    plain = plain_request(sent)
    fields = ScanRequestSerializer(data=sent)
    with mock.patch("batches.scan_api.plain_request", return_value=None):
        valid = fields.is_valid()
    if plain is None:
        return
    assert valid, fields.errors
    assert dict(fields.validated_data) == plain
    assert [type(value) for value in fields.validated_data.values()] == [
        type(plain[name]) for name in fields.validated_data
    ]


def test_what_a_scan_station_sends_takes_the_plain_path():
    sent = {"code": "]d2010950110153000317271231", "action": "verify", "location": 7}
    assert plain_request(sent) == {**sent, "reference": "", "decommission": ""}
    with_id = {**sent, "scan_id": "station-1:42", "reference": "SH-2026-000001", "quantity": 2}
    assert plain_request(with_id) == {**with_id, "decommission": ""}
