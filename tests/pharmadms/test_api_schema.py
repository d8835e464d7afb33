"""The OpenAPI 3 schema at /api/schema/ and the interactive docs at /api/docs/.

The schema describes the API's shape, never its data, and every endpoint it lists refuses an
anonymous caller; so, as the project's settings serve it, it is readable without signing in,
which lets a partner's integrator read the contract before holding credentials.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from drf_spectacular.validation import validate_schema

from tests.conftest import client_for

API = "/api/v1"
RESOURCES = [
    "partners",
    "licences",
    "sites",
    "locations",
    "storage-classes",
    "products",
    "batches",
    "stock-balances",
    "stock-moves",
]
WITH_HISTORY = ["partners", "licences", "sites", "locations", "storage-classes", "products"]
WRITABLE = ["partners", "licences", "sites", "locations", "products", "batches"]


@pytest.fixture
def schema(network) -> dict:
    response = client_for(network.qa).get("/api/schema/?format=json")
    assert response.status_code == 200, response.content
    return response.json()


def test_the_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 JSON schema


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_resource_is_listed_with_its_list_and_detail(schema, resource):
    paths = schema["paths"]
    assert "get" in paths[f"{API}/{resource}/"]
    detail = paths[f"{API}/{resource}/{{id}}/"]
    assert "get" in detail
    (id_parameter,) = [p for p in detail["get"]["parameters"] if p["name"] == "id"]
    assert id_parameter["schema"]["type"] == "integer"


@pytest.mark.parametrize("resource", [*WITH_HISTORY, "batches"])
def test_every_regulated_resource_has_its_history(schema, resource):
    assert "get" in schema["paths"][f"{API}/{resource}/{{id}}/history/"]


@pytest.mark.parametrize("resource", WRITABLE)
def test_writable_resources_create_and_correct_but_never_replace_or_delete(schema, resource):
    paths = schema["paths"]
    assert "post" in paths[f"{API}/{resource}/"]
    detail = paths[f"{API}/{resource}/{{id}}/"]
    assert "patch" in detail
    assert "put" not in detail
    assert "delete" not in detail


@pytest.mark.parametrize("resource", ["stock-balances", "stock-moves", "storage-classes"])
def test_read_only_resources_offer_no_write(schema, resource):
    paths = schema["paths"]
    assert set(paths[f"{API}/{resource}/"]) == {"get"}
    assert set(paths[f"{API}/{resource}/{{id}}/"]) == {"get"}


def test_the_adjustment_action_and_the_token_endpoint_are_listed(schema):
    paths = schema["paths"]
    assert set(paths[f"{API}/stock-moves/adjust/"]) == {"post"}
    assert {"post", "delete"} <= set(paths[f"{API}/auth/token/"])


def test_a_create_request_requires_a_reason(schema):
    components = schema["components"]["schemas"]
    for name in ("SiteRequest", "BatchRequest", "ProductRequest", "StockAdjustmentRequest"):
        assert "reason" in components[name]["required"], name


def test_the_token_scheme_is_described(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schemes["tokenAuth"]["description"],
    }
    operation = schema["paths"][f"{API}/sites/"]["get"]
    assert {"tokenAuth": []} in operation["security"]


def test_the_schema_is_generated_without_a_warning(db):
    """Warnings mean a guessed type (an untyped id, an unknown authenticator) in the contract."""
    call_command("spectacular", "--fail-on-warn", "--validate", stdout=StringIO())


def test_the_schema_is_public_and_holds_no_data(api_client, network):
    response = api_client.get("/api/schema/?format=json")

    assert response.status_code == 200
    text = response.content.decode()
    assert network.manufacturer.name not in text
    assert network.manufacturer.gln not in text


@pytest.mark.parametrize("signed_in", [True, False])
def test_the_docs_page_loads(api_client, network, signed_in):
    client = client_for(network.qa) if signed_in else api_client

    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "swagger-ui" in page.lower()
    assert "/api/schema/" in page
