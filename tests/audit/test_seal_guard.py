"""No path writes a regulated model, a stock move or a signature without its seal.

For each representative service operation (each in its own transaction), the rows it adds to
every sealed table (``audit.chain.sealed_models()``: the history tables, the stock ledger, the
signatures) are compared with the chain entries it adds: exactly one entry per new row, naming
it (``source`` = the table's label, ``record_id`` = its primary key), and no other entry. Then:
a write that fails inside a transaction leaves neither its rows nor its entries, and the chain
goes on without a gap.
"""

from __future__ import annotations

import ast
import datetime
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from audit import services as audit_services
from audit.chain import EVENT, sealed_models, verify
from audit.history import (
    HistoryBypassRefused,
    bulk_create_with_reason,
    bulk_update_with_reason,
    save_with_reason,
)
from audit.models import AuditEntry, ChainHead, SignatureMeaning
from batches import services as stock
from batches.models import BatchStatus, StockMove
from partners import services as partners
from partners.models import LicenceKind, LocationKind, Partner, PartnerKind, ProductCategory
from pharmadms.exceptions import InvalidInput
from tests.factories import (
    TEST_PASSWORD,
    BatchFactory,
    LicenceFactory,
    ProductFactory,
    StorageClassFactory,
    UserFactory,
    gln,
    gtin14,
)

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()


# --- counting ---------------------------------------------------------------------------------


@dataclass
class Written:
    """What one operation added: rows of sealed tables, and chain entries."""

    rows: Counter  # (label, pk) -> 1
    seals: Counter  # (source, record_id) -> number of entries
    events: int  # entries for access events (they seal no row)


def sealed_rows() -> set[tuple[str, int]]:
    return {
        (model._meta.label_lower, pk)
        for model in sealed_models()
        for pk in model._base_manager.values_list("pk", flat=True)
    }


def last_sequence() -> int:
    last = AuditEntry.objects.order_by("-sequence").first()
    return last.sequence if last else 0


def written_by(operation: Callable[[], object]) -> Written:
    """Run ``operation`` in its own transaction; what did it add?"""
    rows_before, sequence_before = sealed_rows(), last_sequence()
    with transaction.atomic():
        operation()
    new = AuditEntry.objects.filter(sequence__gt=sequence_before)
    return Written(
        rows=Counter(sealed_rows() - rows_before),
        seals=Counter(new.exclude(source=EVENT).values_list("source", "record_id")),
        events=new.filter(source=EVENT).count(),
    )


# --- the operations -----------------------------------------------------------------------------


@pytest.fixture
def world(network):
    """The network, a superuser, a product, a quarantined lot and a released lot with stock."""
    net = network
    net.root = UserFactory(username="root", is_superuser=True, partner=net.manufacturer)
    net.product = ProductFactory(manufacturer=net.manufacturer)
    net.licence = LicenceFactory(partner=net.manufacturer)
    net.quarantined = BatchFactory(product=net.product, status=BatchStatus.QUARANTINE)
    net.lot = BatchFactory(
        product=net.product,
        manufactured_on=TODAY - datetime.timedelta(days=20),
        expires_on=TODAY + datetime.timedelta(days=400),
        status=BatchStatus.RELEASED,
    )
    stock.stock_receive(
        batch=net.lot,
        location=net.manufacturer_storage,
        quantity=100,
        actor=net.warehouse,
        reason="opening stock",
    )
    net.allocation = stock.stock_allocate(
        product=net.product,
        quantity=10,
        locations=[net.manufacturer_storage],
        reference="SO-1",
        actor=net.warehouse,
        reason="order SO-1",
    )[0]
    return net


def new_partner(n: int) -> Partner:
    return Partner(
        name=f"Pharmacy {n}",
        kind=PartnerKind.PHARMACY,
        gln=gln(800_000 + n),
        region="DE-BW",
        contact_email=f"pharmacy{n}@example.com",
        contact_phone="+49 711 000000",
    )


def _bulk_update(w):
    pharmacies = bulk_create_with_reason(
        [new_partner(n) for n in range(2)], actor=w.root, reason="import"
    )
    for pharmacy in pharmacies:
        pharmacy.region = "DE-BY"
    bulk_update_with_reason(pharmacies, ["region"], actor=w.root, reason="regions merged")


def _user_save(w):
    w.other_user.first_name = "Renamed"
    w.other_user.save()


def _password_change(w):
    w.other_user.set_password("another-long-password-42")
    w.other_user.save(update_fields=["password"])


OPERATIONS: dict[str, Callable] = {
    "partner_create": lambda w: partners.partner_create(
        actor=w.root,
        reason="new customer",
        name="Central Pharmacy",
        kind=PartnerKind.PHARMACY,
        gln=gln(700_001),
        region="DE-BY",
        contact_email="central@example.com",
        contact_phone="+49 89 111111",
    ),
    "partner_update": lambda w: partners.partner_update(
        partner=w.manufacturer, actor=w.admin, reason="new phone", contact_phone="+49 89 222222"
    ),
    "licence_create": lambda w: partners.licence_create(
        partner=w.manufacturer,
        actor=w.admin,
        reason="licence granted",
        number="WDA-77",
        kind=LicenceKind.WHOLESALE,
        issuing_authority="Regierung von Oberbayern",
        product_categories=[ProductCategory.VACCINE],
        valid_from=TODAY,
        valid_until=TODAY + datetime.timedelta(days=700),
    ),
    "licence_update": lambda w: partners.licence_update(
        licence=w.licence,
        actor=w.admin,
        reason="renewed",
        valid_until=TODAY + datetime.timedelta(days=900),
    ),
    "site_create": lambda w: partners.site_create(
        partner=w.manufacturer,
        actor=w.admin,
        reason="second warehouse",
        name="Warehouse 2",
        gln=gln(600_001),
        address_line="Hafenstraße 2",
        postal_code="20457",
        city="Hamburg",
        country="DE",
    ),
    "site_update": lambda w: partners.site_update(
        site=w.manufacturer_site, actor=w.admin, reason="renamed", name="Main warehouse"
    ),
    "location_create": lambda w: partners.location_create(
        site=w.manufacturer_site,
        actor=w.admin,
        reason="new bay",
        code="RET",
        name="Returns bay",
        kind=LocationKind.RETURNS,
    ),
    "location_update": lambda w: partners.location_update(
        location=w.manufacturer_storage, actor=w.admin, reason="relabelled", name="Cold room A"
    ),
    "storage_class_create": lambda w: stock.storage_class_create(
        actor=w.root,
        reason="frozen goods",
        code="frozen",
        name="Frozen",
        min_celsius=-25,
        max_celsius=-15,
    ),
    "product_create": lambda w: stock.product_create(
        manufacturer=w.manufacturer,
        actor=w.qa,
        reason="new product",
        gtin=gtin14(90_001),
        name="Vaccine X",
        category=ProductCategory.VACCINE,
        dosage_form="suspension for injection",
        strength="0.5 ml",
        pack_size=10,
        storage_class=StorageClassFactory(),
        shelf_life_months=24,
    ),
    "product_update": lambda w: stock.product_update(
        product=w.product, actor=w.qa, reason="pack size corrected", pack_size=20
    ),
    "batch_create": lambda w: stock.batch_create(
        product=w.product,
        lot_number="NEW-1",
        manufactured_on=TODAY - datetime.timedelta(days=5),
        expires_on=TODAY + datetime.timedelta(days=300),
        actor=w.qa,
        reason="production run",
    ),
    "batch_update_dates": lambda w: stock.batch_update_dates(
        batch=w.quarantined,
        actor=w.qa,
        reason="expiry mistyped",
        expires_on=w.quarantined.expires_on - datetime.timedelta(days=1),
    ),
    "batch_change_status": lambda w: stock.batch_change_status(
        batch=w.lot, to_status=BatchStatus.QUARANTINE, actor=w.qa, reason="complaint: hold"
    ),
    "batch_release": lambda w: stock.batch_release(
        batch=w.quarantined, signer=w.qa, password=TEST_PASSWORD, reason="QA release"
    ),
    "signature_sign": lambda w: audit_services.signature_sign(
        signer=w.qa,
        password=TEST_PASSWORD,
        meaning=SignatureMeaning.REVIEWED,
        reason="licence reviewed",
        record=w.licence,
    ),
    "stock_receive": lambda w: stock.stock_receive(
        batch=w.lot,
        location=w.manufacturer_storage,
        quantity=5,
        actor=w.warehouse,
        reason="production output",
    ),
    "stock_transfer": lambda w: stock.stock_transfer(
        batch=w.lot,
        from_location=w.manufacturer_storage,
        to_location=w.manufacturer_quarantine,
        quantity=3,
        actor=w.warehouse,
        reason="damaged",
    ),
    "stock_adjust_up": lambda w: stock.stock_adjust(
        batch=w.lot,
        location=w.manufacturer_storage,
        quantity_change=2,
        actor=w.qa,
        reason="count found two more",
    ),
    "stock_adjust_down": lambda w: stock.stock_adjust(
        batch=w.lot,
        location=w.manufacturer_storage,
        quantity_change=-2,
        actor=w.qa,
        reason="two broken",
    ),
    "stock_allocate": lambda w: stock.stock_allocate(
        product=w.product,
        quantity=4,
        locations=[w.manufacturer_storage],
        reference="SO-2",
        actor=w.warehouse,
        reason="order SO-2",
    ),
    "stock_deallocate": lambda w: stock.stock_deallocate(
        allocation=w.allocation, actor=w.warehouse, reason="order cancelled"
    ),
    "stock_move_consuming_allocation": lambda w: stock.stock_post_move(
        batch=w.lot,
        quantity=10,
        kind="shipment",
        actor=w.warehouse,
        reason="shipped SO-1",
        from_location=w.manufacturer_storage,
        consume_allocation=w.allocation,
    ),
    "bulk_create_with_reason": lambda w: bulk_create_with_reason(
        [new_partner(n) for n in range(3)], actor=w.root, reason="import"
    ),
    "bulk_update_with_reason": _bulk_update,
    "user_create": lambda w: UserFactory(partner=w.wholesaler),
    "user_save": _user_save,
    "user_password_change": _password_change,
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_new_sealed_row_has_exactly_one_entry(world, name):
    written = written_by(lambda: OPERATIONS[name](world))

    assert written.rows, f"{name} wrote no sealed row: not a representative operation"
    assert written.events == 0
    assert sum(written.seals.values()) == sum(written.rows.values())
    assert written.seals == written.rows  # each new row, one entry naming it; nothing else
    assert verify().ok


def test_sign_in_seals_the_event_and_the_user_version(world):
    """A sign-in writes the user's last-login version (sealed) and a sign-in event."""

    def sign_in():
        response = Client().post("/login/", {"username": "qa", "password": TEST_PASSWORD})
        assert response.status_code == 302

    written = written_by(sign_in)
    assert written.seals == written.rows
    assert {label for label, _ in written.rows} == {"partners.historicaluser"}
    assert written.events == 1


def test_sealed_tables_are_the_history_ledger_and_signature_tables():
    labels = {model._meta.label_lower for model in sealed_models()}
    assert {"batches.stockmove", "audit.signature", "partners.historicaluser"} <= labels
    assert {
        "partners.historicalpartner",
        "partners.historicallicence",
        "partners.historicalsite",
        "partners.historicallocation",
        "batches.historicalstorageclass",
        "batches.historicalproduct",
        "batches.historicalbatch",
        "batches.historicalstockallocation",
    } <= labels
    assert "audit.auditentry" not in labels


# --- atomicity ----------------------------------------------------------------------------------


def chain_state() -> tuple[int, tuple[int, str], set]:
    head = ChainHead.objects.get(pk=1)
    return last_sequence(), (head.sequence, head.head_hash), sealed_rows()


def test_a_failed_transaction_leaves_no_row_and_no_entry(world):
    before = chain_state()

    @transaction.atomic
    def writes_then_fails():
        partners.partner_update(
            partner=world.manufacturer, actor=world.admin, reason="x", contact_phone="+49 89 999"
        )
        stock.stock_receive(
            batch=world.lot,
            location=world.manufacturer_storage,
            quantity=1,
            actor=world.warehouse,
            reason="receipt",
        )
        assert last_sequence() == before[0] + 2  # sealed inside the transaction ...
        raise RuntimeError("the caller fails after the writes")

    with pytest.raises(RuntimeError):
        writes_then_fails()
    assert chain_state() == before  # ... and gone with it
    world.manufacturer.refresh_from_db()
    assert world.manufacturer.contact_phone != "+49 89 999"


def test_a_rolled_back_savepoint_gives_its_sequence_back(world):
    """A write sealed in a savepoint that rolls back: the next write takes its sequence number,
    and the chain stays one line without a gap."""
    sequence_before = last_sequence()

    @transaction.atomic
    def sealed_then_rolled_back():
        partners.partner_update(
            partner=world.manufacturer, actor=world.admin, reason="x", contact_phone="+49 89 999"
        )
        raise RuntimeError("rolled back to the savepoint")

    with transaction.atomic():
        with pytest.raises(RuntimeError):
            sealed_then_rolled_back()
        move = stock.stock_receive(
            batch=world.lot,
            location=world.manufacturer_storage,
            quantity=1,
            actor=world.warehouse,
            reason="receipt",
        )
    entry = AuditEntry.objects.get(source="batches.stockmove", record_id=move.pk)
    assert entry.sequence == sequence_before + 1
    assert last_sequence() == sequence_before + 1
    assert verify().ok


def test_a_write_the_database_refuses_leaves_no_entry(world):
    """A duplicate GLN in a bulk import: the database refuses it, nothing is written or sealed,
    and the next write seals on without a gap."""
    before = chain_state()
    duplicate = new_partner(1)
    duplicate.gln = world.wholesaler.gln
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_create_with_reason([new_partner(0), duplicate], actor=world.root, reason="import")
    assert chain_state() == before
    with pytest.raises(InvalidInput, match="already has a lot"), transaction.atomic():
        stock.batch_create(
            product=world.product,
            lot_number=world.lot.lot_number,
            manufactured_on=world.lot.manufactured_on,
            expires_on=world.lot.expires_on,
            actor=world.qa,
            reason="duplicate lot",
        )
    assert chain_state() == before
    written = written_by(
        lambda: save_with_reason(
            world.wholesaler, actor=world.root, reason="after the refusals", update_fields=None
        )
    )
    assert written.seals == written.rows
    assert AuditEntry.objects.filter(sequence=before[0] + 1).exists()
    assert verify().ok


# --- the append-only rows are sealed by hand: every place that writes one seals it ---------------


def test_a_move_written_around_the_ledger_is_caught_by_verify(world):
    """The ORM can still add a move (the triggers refuse only UPDATE and DELETE); such a move
    has no seal, and the chain says so."""
    move = StockMove.objects.create(
        batch=world.lot,
        quantity=1,
        to_location=world.manufacturer_storage,
        kind="receipt",
        reason="around the ledger",
        user=world.warehouse,
        created_at=timezone.now(),
    )
    result = verify()
    assert not result.ok
    assert result.first.problem == "row_inserted"
    assert f"batches.stockmove row {move.pk} has no chain entry" in result.first.detail


ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [
    "pharmadms",
    "audit",
    "partners",
    "batches",
    "orders",
    "coldchain",
    "recalls",
    "integrations",
]
CREATING = {"create", "get_or_create", "bulk_create"}


def _append_only_writes(function: ast.AST, names: set[str], tables: set[str]) -> list[int]:
    """Lines in ``function`` that add a row to an append-only table: ``Model.objects.create()``
    (or ``Model(...)``) for an append-only model, or SQL that inserts into one."""
    lines = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (
                node.func.attr in CREATING
                and isinstance(owner, ast.Attribute)
                and isinstance(owner.value, ast.Name)
                and owner.value.id in names
            ):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names:
            lines.append(node.lineno)  # an instance built to be saved
        if isinstance(node, ast.JoinedStr | ast.Constant):
            text = ast.unparse(node).upper()
            if "INSERT INTO" in text and (
                any(table.upper() in text for table in tables) or "_MOVES" in text
            ):
                lines.append(node.lineno)
    return lines


# seal_row seals a row written before; insert_sealed_row writes the row and its seal together.
SEALING = frozenset({"seal_row", "insert_sealed_row"})


def _calls_seal(function: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and getattr(node.func, "attr", getattr(node.func, "id", "")) in SEALING
        for node in ast.walk(function)
    )


def _writers(path: Path, root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Functions in ``path`` that add an append-only row, and those of them that do not seal."""
    append_only = [m for m in sealed_models() if getattr(m, "APPEND_ONLY", False)]
    names = {m.__name__ for m in append_only}
    tables = {m._meta.db_table for m in append_only}
    writers, unsealed = [], []
    for function in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(function, ast.FunctionDef):
            continue
        lines = _append_only_writes(function, names, tables)
        if lines:
            where = f"{path.relative_to(root)}:{function.name}"
            writers.append(where)
            if not _calls_seal(function):
                unsealed.append(f"{where} (line {lines[0]})")
    return writers, unsealed


def test_every_function_that_writes_an_append_only_row_seals_it():
    """Stock moves and signatures are not history rows: no signal seals them. Every function
    that adds one (through the ORM or in SQL) must call ``chain.seal_row`` itself, or write it
    with ``chain.insert_sealed_row``."""
    writers, unsealed = [], []
    for directory in SOURCE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            if "migrations" not in path.parts:
                found, missing = _writers(path)
                writers += found
                unsealed += missing
    assert "batches/services.py:stock_post_move" in writers  # the scanner sees the ledger
    assert "audit/services.py:signature_apply" in writers  # ... and the signatures
    assert unsealed == []


def test_scanner_finds_an_unsealed_writer(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def sealed():\n"
        "    move = StockMove.objects.create(quantity=1)\n"
        "    chain.seal_row(move, action='moved')\n"
        "def forgets():\n"
        "    Signature.objects.create(reason='x')\n"
        "def in_sql(cursor):\n"
        "    cursor.execute('INSERT INTO batches_stockmove (quantity) VALUES (1)')\n"
        "def reads():\n"
        "    return StockMove.objects.filter(quantity=1)\n"
    )
    writers, unsealed = _writers(sample, root=tmp_path)
    assert writers == ["sample.py:sealed", "sample.py:forgets", "sample.py:in_sql"]
    assert unsealed == ["sample.py:forgets (line 5)", "sample.py:in_sql (line 7)"]


def test_the_orm_refuses_bulk_moves():
    """The one ORM write that would add many moves at once, unsealed, is refused."""
    with pytest.raises(HistoryBypassRefused):
        StockMove.objects.bulk_create([])
