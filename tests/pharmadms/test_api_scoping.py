"""The API's permission matrix, endpoint by endpoint (NetBox style).

Anonymous callers get 401; a partner's users see their own partner's objects and never another
partner's (404, absent from lists); the partner directory and the product catalogue are read by
everyone signed in; lots are visible to their manufacturer, to partners holding them, and to
regulators; a regulator reads everything and every write of theirs answers 403.
"""

from __future__ import annotations

import pytest

from batches import services as batch_services
from batches.models import Batch, Product, StockBalance, StockMove, StorageClass
from partners.models import Licence, Location, Partner, PartnerKind, Role, Site
from tests.conftest import client_for
from tests.factories import (
    BatchFactory,
    LicenceFactory,
    PartnerFactory,
    ProductFactory,
    StorageClassFactory,
    UserFactory,
    gln,
    gtin14,
)

API = "/api/v1"


class World:
    """Objects on both sides of the partner line: the manufacturer's and South Wholesale's."""


@pytest.fixture
def world(network):
    """The network plus licences, lots, balances and moves on both sides of the partner line.

    The manufacturer makes ``lot_a``, ``lot_b`` and ``lot_q`` (still in quarantine) and holds 100
    of ``lot_a``; South Wholesale (``network.other``) holds 40 of ``lot_b``. A second
    manufacturer's ``lot_c`` is held by nobody.
    """
    w = World()
    w.net = network
    w.other_qa = UserFactory(username="oqa", partner=network.other, role=Role.QA_OFFICER)
    w.other_admin = UserFactory(username="oadmin", partner=network.other, role=Role.ADMIN)
    w.superuser = UserFactory(username="root", partner=None, is_superuser=True, is_staff=True)
    w.storage_class = StorageClassFactory()
    w.product = ProductFactory(manufacturer=network.manufacturer, storage_class=w.storage_class)
    w.lot_a = BatchFactory(product=w.product, lot_number="LOTA")
    w.lot_b = BatchFactory(product=w.product, lot_number="LOTB")
    rival = PartnerFactory(name="Rival Pharma", kind=PartnerKind.MANUFACTURER)
    w.rival_product = ProductFactory(manufacturer=rival, storage_class=w.storage_class)
    w.lot_c = BatchFactory(product=w.rival_product, lot_number="LOTC")
    w.lot_q = BatchFactory(product=w.product, lot_number="LOTQ", status="quarantine")
    w.mfr_licence = LicenceFactory(partner=network.manufacturer)
    w.other_licence = LicenceFactory(partner=network.other)
    w.mfr_move = batch_services.stock_receive(
        batch=w.lot_a,
        location=network.manufacturer_storage,
        quantity=100,
        actor=network.warehouse,
        reason="production output",
    )
    w.other_move = batch_services.stock_receive(
        batch=w.lot_b,
        location=network.other_storage,
        quantity=40,
        actor=w.other_qa,
        reason="opening stock",
    )
    w.mfr_balance = StockBalance.objects.get(batch=w.lot_a, location=network.manufacturer_storage)
    w.other_balance = StockBalance.objects.get(batch=w.lot_b, location=network.other_storage)
    return w


# Each scoped endpoint: (path, own object of South Wholesale, the manufacturer's object,
# whether it has a history action).
SCOPED = {
    "licences": ("other_licence", "mfr_licence", True),
    "sites": ("net.other_site", "net.manufacturer_site", True),
    "locations": ("net.other_storage", "net.manufacturer_storage", True),
    "batches": ("lot_b", "lot_a", True),
    "stock-balances": ("other_balance", "mfr_balance", False),
    "stock-moves": ("other_move", "mfr_move", False),
}
READ_BY_ALL = {
    "partners": ("net.other", "net.manufacturer"),
    "products": ("product", "rival_product"),
    "storage-classes": ("storage_class", "storage_class"),
}
ALL_RESOURCES = [*SCOPED, *READ_BY_ALL]
WITH_HISTORY = [name for name, spec in SCOPED.items() if spec[2]] + list(READ_BY_ALL)


def pick(world: World, dotted: str):
    value = world
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def any_object(world: World, resource: str):
    spec = SCOPED.get(resource) or READ_BY_ALL[resource]
    return pick(world, spec[1])


def ids(response) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.data["results"]}


# --- anonymous --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "method"),
    [
        (resource, method)
        for resource in ALL_RESOURCES
        for method in ("list", "detail", "history", "post", "patch", "delete")
        if method != "history" or resource in WITH_HISTORY
    ],
)
def test_anonymous_is_refused_with_401_and_a_challenge(api_client, world, resource, method):
    """Token authentication comes first, so an anonymous caller is challenged, never served."""
    obj = any_object(world, resource)
    detail = f"{API}/{resource}/{obj.pk}/"
    response = {
        "list": lambda: api_client.get(f"{API}/{resource}/"),
        "detail": lambda: api_client.get(detail),
        "history": lambda: api_client.get(f"{detail}history/"),
        "post": lambda: api_client.post(f"{API}/{resource}/", {"reason": "x"}, format="json"),
        "patch": lambda: api_client.patch(detail, {"reason": "x"}, format="json"),
        "delete": lambda: api_client.delete(detail),
    }[method]()
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"


def test_anonymous_adjustment_is_refused_with_401(api_client, world):
    payload = {"batch": world.lot_a.pk, "location": world.net.manufacturer_storage.pk}
    response = api_client.post(
        f"{API}/stock-moves/adjust/", {**payload, "quantity_change": 5, "reason": "count"}
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert StockMove.objects.count() == 2


# --- a partner's user and another partner's objects -------------------------------------------


@pytest.mark.parametrize("resource", list(SCOPED))
def test_own_objects_are_readable(world, resource):
    own_path, _, has_history = SCOPED[resource]
    own = pick(world, own_path)
    client = client_for(world.net.other_user)

    response = client.get(f"{API}/{resource}/{own.pk}/")

    assert response.status_code == 200
    assert response.data["id"] == own.pk
    if has_history:
        assert client.get(f"{API}/{resource}/{own.pk}/history/").status_code == 200


# Who at South Wholesale may write each scoped resource (so a 404 is not a role refusal).
OWN_WRITERS = {
    "licences": "other_qa",
    "sites": "other_admin",
    "locations": "other_admin",
    "batches": "other_qa",
    "stock-balances": "other_qa",
    "stock-moves": "other_qa",
}


@pytest.mark.parametrize(
    ("resource", "view"),
    [
        (resource, view)
        for resource, (_, _, has_history) in SCOPED.items()
        for view in ("detail", "history", "patch")
        if view != "history" or has_history
    ],
)
def test_another_partners_object_is_not_found(world, resource, view):
    """Another partner's object answers 404 (not 403), so its existence does not leak."""
    foreign = pick(world, SCOPED[resource][1])
    url = f"{API}/{resource}/{foreign.pk}/"
    client = client_for(pick(world, OWN_WRITERS[resource] if view == "patch" else "net.other_user"))

    if view == "detail":
        response = client.get(url)
    elif view == "history":
        response = client.get(f"{url}history/")
    else:
        response = client.patch(url, {"reason": "try"}, format="json")

    if view == "patch" and resource.startswith("stock-"):
        # The ledger is read-only over the API: no object is even looked up.
        assert response.status_code == 405
        assert response.json()["code"] == "method_not_allowed"
    else:
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def expected_own_ids(world: World, resource: str) -> set[int]:
    partner = world.net.other
    querysets = {
        "licences": Licence.objects.filter(partner=partner),
        "sites": Site.objects.filter(partner=partner),
        "locations": Location.objects.filter(site__partner=partner),
        "batches": Batch.objects.filter(balances__location__site__partner=partner),
        "stock-balances": StockBalance.objects.filter(
            location__site__partner=partner, on_hand__gt=0
        ),
        "stock-moves": StockMove.objects.filter(to_location__site__partner=partner)
        | StockMove.objects.filter(from_location__site__partner=partner),
    }
    return set(querysets[resource].values_list("pk", flat=True))


@pytest.mark.parametrize("resource", list(SCOPED))
def test_lists_hold_only_the_partners_own_objects(world, resource):
    own_path, foreign_path, _ = SCOPED[resource]
    client = client_for(world.net.other_user)

    listed = ids(client.get(f"{API}/{resource}/"))

    assert pick(world, own_path).pk in listed
    assert pick(world, foreign_path).pk not in listed
    assert listed == expected_own_ids(world, resource)


@pytest.mark.parametrize("resource", list(SCOPED))
def test_filtering_by_another_partners_id_reveals_nothing(world, resource):
    """A filter naming another partner's object narrows the user's own rows; it never widens."""
    client = client_for(world.net.other_user)
    foreign_filter = {
        "licences": f"partner={world.net.manufacturer.pk}",
        "sites": f"partner={world.net.manufacturer.pk}",
        "locations": f"site={world.net.manufacturer_site.pk}",
        "batches": f"product={world.product.pk}",
        "stock-balances": f"location={world.net.manufacturer_storage.pk}",
        "stock-moves": f"batch={world.lot_a.pk}",
    }[resource]

    response = client.get(f"{API}/{resource}/?{foreign_filter}")

    listed = ids(response)
    assert pick(world, SCOPED[resource][1]).pk not in listed
    assert listed <= expected_own_ids(world, resource)


@pytest.mark.parametrize("resource", list(READ_BY_ALL))
def test_directory_and_catalogue_are_read_by_every_signed_in_user(world, resource):
    """Partners, products and storage classes are shared reference data."""
    client = client_for(world.net.other_user)
    first, second = (pick(world, path) for path in READ_BY_ALL[resource])
    model = MODELS[resource]

    listed = ids(client.get(f"{API}/{resource}/"))

    assert {first.pk, second.pk} <= listed
    assert listed == set(model.objects.values_list("pk", flat=True))
    partner_id = world.net.other_user.partner_id
    for obj in (first, second):
        assert client.get(f"{API}/{resource}/{obj.pk}/").status_code == 200
        # Their history names the owner's staff: only the owner (and regulators) read it.
        owner_id = {"partners": obj.pk, "products": getattr(obj, "manufacturer_id", None)}.get(
            resource, partner_id
        )
        expected = 200 if owner_id == partner_id else 404
        assert client.get(f"{API}/{resource}/{obj.pk}/history/").status_code == expected


def test_lots_are_visible_to_manufacturer_holders_and_regulators(world):
    """Lots A and Q: the manufacturer's, held by nobody else. Lot B: the manufacturer's, also
    held by South Wholesale. Lot C: a rival's, held by nobody."""
    net = world.net
    listed = {
        user.username: ids(client_for(user).get(f"{API}/batches/"))
        for user in (net.qa, net.other_user, net.wholesaler_qa, net.regulator)
    }
    mine = {world.lot_a.pk, world.lot_b.pk, world.lot_q.pk}
    assert listed["qa"] == mine
    assert listed["other"] == {world.lot_b.pk}
    assert listed["wqa"] == set()
    assert listed["regulator"] == mine | {world.lot_c.pk}
    assert client_for(net.qa).get(f"{API}/batches/{world.lot_c.pk}/").status_code == 404


def test_a_holder_cannot_correct_the_manufacturers_lot(world):
    """South Wholesale sees lot B because it holds it; only the manufacturer corrects it."""
    response = client_for(world.other_qa).patch(
        f"{API}/batches/{world.lot_b.pk}/",
        {"expires_on": "2027-11-30", "reason": "typo"},
        format="json",
    )
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    world.lot_b.refresh_from_db()
    assert str(world.lot_b.expires_on) == "2027-12-31"


def test_adjusting_another_partners_location_is_not_found(world):
    response = client_for(world.other_qa).post(
        f"{API}/stock-moves/adjust/",
        {
            "batch": world.lot_a.pk,
            "location": world.net.manufacturer_storage.pk,
            "quantity_change": -10,
            "reason": "count",
        },
        format="json",
    )
    assert response.status_code == 404
    assert world_balance(world.lot_a, world.net.manufacturer_storage) == 100


def test_adjusting_a_lot_the_partner_cannot_see_is_not_found(world):
    """A QA officer cannot conjure stock of a lot that is invisible to their partner."""
    response = client_for(world.other_qa).post(
        f"{API}/stock-moves/adjust/",
        {
            "batch": world.lot_c.pk,
            "location": world.net.other_storage.pk,
            "quantity_change": 10,
            "reason": "found in count",
        },
        format="json",
    )
    assert response.status_code == 404
    assert not StockBalance.objects.filter(batch=world.lot_c, on_hand__gt=0).exists()


def test_location_cannot_be_created_on_another_partners_site(world):
    before = Location.objects.count()
    response = client_for(world.other_admin).post(
        f"{API}/locations/",
        {"site": world.net.manufacturer_site.pk, "code": "X1", "name": "X", "kind": "storage"}
        | {"reason": "new bay"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "does_not_exist"
    assert Location.objects.count() == before


# --- the regulator ----------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ALL_RESOURCES)
def test_regulator_reads_everything(world, resource):
    client = client_for(world.net.regulator)
    spec = SCOPED.get(resource) or READ_BY_ALL[resource]
    first, second = pick(world, spec[0]), pick(world, spec[1])

    listed = ids(client.get(f"{API}/{resource}/"))

    assert {first.pk, second.pk} <= listed
    for obj in (first, second):
        assert client.get(f"{API}/{resource}/{obj.pk}/").status_code == 200


def world_balance(batch, location) -> int:
    row = StockBalance.objects.filter(batch=batch, location=location).first()
    return row.on_hand if row else 0


def create_payloads(world: World) -> dict[str, dict]:
    """A valid POST body for each resource, as its rightful writer would send it."""
    net = world.net
    return {
        "partners": {
            "name": "East Pharmacy",
            "kind": "pharmacy",
            "gln": gln(900_001),
            "region": "DE-BE",
            "contact_email": "east@example.com",
            "contact_phone": "+49 30 123456",
            "reason": "new customer",
        },
        "licences": {
            "number": "WDA-77",
            "kind": "manufacturing",
            "issuing_authority": "BfArM",
            "product_categories": ["vaccine"],
            "valid_from": "2025-01-01",
            "valid_until": "2030-12-31",
            "reason": "renewed",
        },
        "sites": {
            "name": "Plant 2",
            "gln": gln(900_002),
            "address_line": "Werkstraße 2",
            "postal_code": "80331",
            "city": "München",
            "country": "DE",
            "reason": "new plant",
        },
        "locations": {
            "site": net.manufacturer_site.pk,
            "code": "COLD2",
            "name": "Cold room 2",
            "kind": "storage",
            "reason": "new cold room",
        },
        "products": {
            "gtin": gtin14(900_003),
            "name": "Vaxiflu",
            "category": "vaccine",
            "dosage_form": "suspension for injection",
            "strength": "0.5 ml",
            "pack_size": 10,
            "storage_class": world.storage_class.pk,
            "shelf_life_months": 24,
            "reason": "new product",
        },
        "batches": {
            "product": world.product.pk,
            "lot_number": "NEW001",
            "manufactured_on": "2026-02-01",
            "expires_on": "2027-12-31",
            "reason": "new lot",
        },
        "stock-balances": {"batch": world.lot_a.pk, "location": net.manufacturer_storage.pk},
        "stock-moves": {"batch": world.lot_a.pk, "quantity": 1, "reason": "x"},
        "storage-classes": {"code": "frozen", "name": "Frozen", "min_celsius": "-25"},
    }


# The rightful writer of each resource, and the status its POST gets.
WRITERS = {
    "partners": ("superuser", 201),
    "licences": ("net.qa", 201),
    "sites": ("net.admin", 201),
    "locations": ("net.admin", 201),
    "products": ("net.qa", 201),
    "batches": ("net.qa", 201),
    "stock-balances": ("net.qa", 405),
    "stock-moves": ("net.qa", 405),
    "storage-classes": ("superuser", 405),
}
MODELS = {
    "partners": Partner,
    "licences": Licence,
    "sites": Site,
    "locations": Location,
    "products": Product,
    "batches": Batch,
    "stock-balances": StockBalance,
    "stock-moves": StockMove,
    "storage-classes": StorageClass,
}


def count(resource: str) -> int:
    return MODELS[resource].objects.count()


@pytest.mark.parametrize("resource", ALL_RESOURCES)
def test_regulator_create_is_refused_and_the_same_body_works_for_its_writer(world, resource):
    """The 403 is the regulator's, not the payload's: the writer's identical POST goes through."""
    payload = create_payloads(world)[resource]
    before = count(resource)

    refused = client_for(world.net.regulator).post(f"{API}/{resource}/", payload, format="json")

    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    assert count(resource) == before

    writer_path, expected = WRITERS[resource]
    accepted = client_for(pick(world, writer_path)).post(
        f"{API}/{resource}/", payload, format="json"
    )
    assert accepted.status_code == expected, accepted.content
    assert count(resource) == before + (1 if expected == 201 else 0)


# A valid PATCH for each resource, on an object the regulator can see.
PATCHES = {
    "partners": ("net.manufacturer", {"contact_email": "qa@acme.example"}),
    "licences": ("mfr_licence", {"issuing_authority": "BfArM"}),
    "sites": ("net.manufacturer_site", {"city": "Augsburg"}),
    "locations": ("net.manufacturer_storage", {"name": "Main store"}),
    "products": ("product", {"name": "Renamed"}),
    "batches": ("lot_q", {"expires_on": "2027-11-30"}),
    "stock-balances": ("mfr_balance", {"on_hand": 1}),
    "stock-moves": ("mfr_move", {"quantity": 1}),
    "storage-classes": ("storage_class", {"name": "Cold"}),
}


@pytest.mark.parametrize("resource", ALL_RESOURCES)
def test_regulator_update_is_refused(world, resource):
    path, changes = PATCHES[resource]
    obj = pick(world, path)
    before = {f: v for f, v in vars(type(obj).objects.get(pk=obj.pk)).items() if f != "_state"}

    response = client_for(world.net.regulator).patch(
        f"{API}/{resource}/{obj.pk}/", {**changes, "reason": "regulator edit"}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    after = {f: v for f, v in vars(type(obj).objects.get(pk=obj.pk)).items() if f != "_state"}
    assert after == before


def test_regulator_adjustment_is_refused(world):
    response = client_for(world.net.regulator).post(
        f"{API}/stock-moves/adjust/",
        {
            "batch": world.lot_a.pk,
            "location": world.net.manufacturer_storage.pk,
            "quantity_change": -5,
            "reason": "count",
        },
        format="json",
    )
    assert response.status_code == 403
    assert world_balance(world.lot_a, world.net.manufacturer_storage) == 100
    assert StockMove.objects.count() == 2


@pytest.mark.parametrize("resource", ALL_RESOURCES)
def test_regulator_cannot_delete(world, resource):
    path = PATCHES[resource][0]
    obj = pick(world, path)
    response = client_for(world.net.regulator).delete(f"{API}/{resource}/{obj.pk}/")
    assert response.status_code == 403
    assert type(obj).objects.filter(pk=obj.pk).exists()


# --- the rightful writers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "writer"),
    [
        ("partners", "net.admin"),
        ("licences", "net.qa"),
        ("sites", "net.admin"),
        ("locations", "net.admin"),
        ("products", "net.qa"),
        ("batches", "net.qa"),
    ],
)
def test_own_object_is_corrected_by_its_writer(world, resource, writer):
    path, changes = PATCHES[resource]
    obj = pick(world, path)

    response = client_for(pick(world, writer)).patch(
        f"{API}/{resource}/{obj.pk}/", {**changes, "reason": "correction"}, format="json"
    )

    assert response.status_code == 200, response.content
    obj.refresh_from_db()
    field, value = next(iter(changes.items()))
    assert str(getattr(obj, field)) == value
    assert obj.history.latest().history_change_reason == "correction"


@pytest.mark.parametrize(
    ("resource", "user"),
    [
        ("licences", "net.warehouse"),
        ("sites", "net.qa"),
        ("locations", "net.warehouse"),
        ("products", "net.warehouse"),
        ("batches", "net.warehouse"),
        ("partners", "net.admin"),
    ],
)
def test_a_role_without_the_right_is_refused_with_403(world, resource, user):
    payload = create_payloads(world)[resource]
    before = count(resource)

    response = client_for(pick(world, user)).post(f"{API}/{resource}/", payload, format="json")

    assert response.status_code == 403
    assert response.json()["code"] in ("permission_denied", "role_not_permitted")
    assert count(resource) == before


@pytest.mark.parametrize("user", ["net.warehouse", "net.admin", "net.other_user"])
def test_only_qa_adjusts_stock(world, user):
    response = client_for(pick(world, user)).post(
        f"{API}/stock-moves/adjust/",
        {
            "batch": world.lot_a.pk,
            "location": world.net.manufacturer_storage.pk,
            "quantity_change": -5,
            "reason": "count",
        },
        format="json",
    )
    assert response.status_code == 403
    assert world_balance(world.lot_a, world.net.manufacturer_storage) == 100


def test_qa_adjusts_own_stock(world):
    response = client_for(world.net.qa).post(
        f"{API}/stock-moves/adjust/",
        {
            "batch": world.lot_a.pk,
            "location": world.net.manufacturer_storage.pk,
            "quantity_change": -5,
            "reason": "count found 95",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.data["kind"] == "adjustment"
    assert response.data["user"] == "qa"
    assert world_balance(world.lot_a, world.net.manufacturer_storage) == 95
