"""A database owner tampers with the audit trail; ``audit_verify`` names where and how.

Each test builds the same small history through the services (partners, a licence, a product,
a lot created, corrected and released, stock received and moved, a sign-in), checks that it
verifies clean, then plays a database owner: it lifts the append-only triggers
(``append_only_guard_lifted``) and changes the tables with raw SQL. ``audit_verify`` must then
exit non-zero (``CommandError``) naming the first broken sequence number and the problem. The
expected sequence is always looked up in the data (the entry that sealed the tampered row), never
written down. Without the guard lifted, the database itself refuses the same statements.

Runs on SQLite and PostgreSQL; only TRUNCATE (which SQLite does not have) is PostgreSQL-only.
"""

from __future__ import annotations

import datetime
import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from audit import chain
from audit.chain import verify
from audit.models import AuditAction, AuditEntry, ChainHead
from batches import services as stock
from batches.models import Batch, BatchStatus, StockMove
from partners import services as partners
from partners.models import LicenceKind, Partner, ProductCategory
from tests.conftest import append_only_guard_lifted
from tests.factories import TEST_PASSWORD, ProductFactory

pytestmark = pytest.mark.django_db

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL: set DATABASE_URL=postgres://..."
)

ENTRIES = AuditEntry._meta.db_table
HEAD = ChainHead._meta.db_table


# --- the history under test ------------------------------------------------------------------


class History:
    """The rows of the small history, to tamper with."""


@pytest.fixture
def history(network) -> History:
    net = network
    today = timezone.localdate()
    h = History()
    h.net = net
    partners.partner_update(
        partner=net.manufacturer,
        actor=net.admin,
        reason="switchboard number changed",
        contact_phone="+49 89 7654321",
    )
    h.licence = partners.licence_create(
        partner=net.manufacturer,
        actor=net.admin,
        reason="manufacturing authorisation granted",
        number="MIA-2026-001",
        kind=LicenceKind.MANUFACTURING,
        issuing_authority="Regierung von Oberbayern",
        product_categories=[ProductCategory.VACCINE],
        valid_from=today - datetime.timedelta(days=365),
        valid_until=today + datetime.timedelta(days=3 * 365),
    )
    h.product = ProductFactory(manufacturer=net.manufacturer)
    h.lot = stock.batch_create(
        product=h.product,
        lot_number="LOT-A1",
        manufactured_on=today - datetime.timedelta(days=30),
        expires_on=today + datetime.timedelta(days=300),
        actor=net.qa,
        reason="production run 1",
    )
    stock.batch_update_dates(
        batch=h.lot,
        actor=net.qa,
        reason="expiry mistyped on registration",
        expires_on=today + datetime.timedelta(days=330),
    )
    decision = stock.batch_release(
        batch=h.lot, signer=net.qa, password=TEST_PASSWORD, reason="QA release"
    )
    h.lot, h.signature = decision.batch, decision.signature
    h.receipt = stock.stock_receive(
        batch=h.lot,
        location=net.manufacturer_storage,
        quantity=40,
        actor=net.warehouse,
        reason="production output",
    )
    signed_in = Client().post("/login/", {"username": "qa", "password": TEST_PASSWORD})
    assert signed_in.status_code == 302  # the sign-in is sealed as an event
    h.transfer = stock.stock_transfer(
        batch=h.lot,
        from_location=net.manufacturer_storage,
        to_location=net.manufacturer_quarantine,
        quantity=5,
        actor=net.warehouse,
        reason="damaged cartons to quarantine",
    )
    h.adjustment = stock.stock_adjust(
        batch=h.lot,
        location=net.manufacturer_quarantine,
        quantity_change=-2,
        actor=net.qa,
        reason="two packs destroyed",
    )
    partners.partner_update(
        partner=net.manufacturer,
        actor=net.admin,
        reason="new order desk address",
        contact_email="orders@acme.example.com",
    )
    assert verify().ok, verify().as_dict()
    assert AuditEntry.objects.filter(action=AuditAction.LOGIN).exists()
    return h


def version(model, *, reason: str):
    """The one history row of ``model`` written with ``reason``."""
    return model.history.model.objects.get(history_change_reason=reason)


def sealing_entry(row) -> AuditEntry:
    """The chain entry that sealed ``row`` (a history row or a stock move)."""
    return AuditEntry.objects.get(source=row._meta.label_lower, record_id=row.pk)


def run_verify(**options) -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out, **options)
    return out.getvalue()


def assert_broken(sequence: int, problem: str, **options) -> str:
    """``audit_verify`` exits non-zero and names ``sequence`` and ``problem`` first."""
    with pytest.raises(CommandError) as caught:
        run_verify(**options)
    message = str(caught.value)
    assert re.match(rf"audit chain broken at sequence {sequence}: {problem} ", message), message
    return message


def tamper(sql: str, params=()) -> None:
    """Run ``sql`` as a database owner would: with the append-only triggers lifted."""
    with append_only_guard_lifted(connection), connection.cursor() as cursor:
        cursor.execute(sql, params)


def columns(model) -> list[str]:
    return [f.column for f in model._meta.concrete_fields]


def head() -> tuple[int, str]:
    row = ChainHead.objects.get(pk=1)
    return row.sequence, row.head_hash


# --- an untouched trail -------------------------------------------------------------------------


def test_untouched_history_verifies_clean(history):
    out = run_verify()
    last = AuditEntry.objects.order_by("sequence").last()
    assert f"audit chain intact: {AuditEntry.objects.count()} entries, head #{last.sequence}" in out
    assert head() == (last.sequence, last.entry_hash)
    assert list(AuditEntry.objects.values_list("sequence", flat=True)) == list(
        range(1, last.sequence + 1)
    )


# --- the history rows ---------------------------------------------------------------------------


def test_changed_history_row_is_content_changed_where_it_was_sealed(history):
    row = version(Batch, reason="expiry mistyped on registration")
    sealed = sealing_entry(row)
    tamper(
        f"UPDATE {row._meta.db_table} SET lot_number = %s WHERE history_id = %s",  # noqa: S608
        ["LOT-FORGED", row.pk],
    )
    message = assert_broken(sealed.sequence, "content_changed")
    assert f"{row._meta.label_lower} row {row.pk}" in message


def test_changed_reason_in_a_history_row_is_content_changed(history):
    row = version(Partner, reason="switchboard number changed")
    sealed = sealing_entry(row)
    tamper(
        f"UPDATE {row._meta.db_table} SET history_change_reason = %s"  # noqa: S608
        " WHERE history_id = %s",
        ["routine update", row.pk],
    )
    assert_broken(sealed.sequence, "content_changed")


def test_deleted_history_row_is_row_missing_where_it_was_sealed(history):
    row = version(Partner, reason="switchboard number changed")
    sealed = sealing_entry(row)
    tamper(f"DELETE FROM {row._meta.db_table} WHERE history_id = %s", [row.pk])  # noqa: S608
    message = assert_broken(sealed.sequence, "row_missing")
    assert f"{row._meta.label_lower} row {row.pk} is gone" in message


def test_deleted_stock_move_is_row_missing_where_it_was_sealed(history):
    sealed = sealing_entry(history.transfer)
    tamper(f"DELETE FROM {StockMove._meta.db_table} WHERE id = %s", [history.transfer.pk])  # noqa: S608
    assert_broken(sealed.sequence, "row_missing")


def test_forged_history_row_is_row_inserted_where_it_would_stand(history):
    """A version of the lot, back-dated to just after its date correction, saying it was
    released then: it has no chain entry. It is reported at the first entry sealed after the
    time it claims, the place it would have had in the chain."""
    corrected = version(Batch, reason="expiry mistyped on registration")
    before = sealing_entry(corrected)
    after = AuditEntry.objects.get(sequence=before.sequence + 1)
    assert after.occurred_at > before.occurred_at
    claimed = before.occurred_at + (after.occurred_at - before.occurred_at) / 2
    table, cols = corrected._meta.db_table, columns(type(corrected))
    overrides = {
        "status": BatchStatus.RELEASED.value,
        "history_change_reason": "QA release",
        "history_date": connection.ops.adapt_datetimefield_value(claimed),
    }
    copied = [c for c in cols if c != "history_id"]
    select = ", ".join("%s" if c in overrides else c for c in copied)
    tamper(
        f"INSERT INTO {table} ({', '.join(copied)})"  # noqa: S608 - names from the model
        f" SELECT {select} FROM {table} WHERE history_id = %s",
        [*(overrides[c] for c in copied if c in overrides), corrected.pk],
    )
    forged = type(corrected).objects.filter(history_change_reason="QA release").order_by("pk")
    assert forged.count() == 2
    message = assert_broken(after.sequence, "row_inserted")
    assert f"{corrected._meta.label_lower} row {forged.last().pk} has no chain entry" in message


# --- the chain entries --------------------------------------------------------------------------


def test_swapped_entries_are_order_changed_at_the_first(history):
    k = sealing_entry(history.receipt).sequence
    tamper(f"UPDATE {ENTRIES} SET sequence = -1 WHERE sequence = %s", [k])  # noqa: S608
    tamper(f"UPDATE {ENTRIES} SET sequence = %s WHERE sequence = %s", [k, k + 1])  # noqa: S608
    tamper(f"UPDATE {ENTRIES} SET sequence = %s WHERE sequence = -1", [k + 1])  # noqa: S608
    message = assert_broken(k, "order_changed")
    assert f"the entry sealed as #{k + 1} now stands at #{k}" in message


def test_deleted_entry_is_row_missing_at_its_sequence(history):
    k = sealing_entry(version(Batch, reason="QA release")).sequence
    tamper(f"DELETE FROM {ENTRIES} WHERE sequence = %s", [k])  # noqa: S608
    assert_broken(k, "row_missing")


def test_deleted_entry_with_the_tail_renumbered_is_row_missing_at_its_sequence(history):
    """The gap closed: the entries after it moved down by one and the head followed."""
    k = sealing_entry(version(Batch, reason="QA release")).sequence
    tamper(f"DELETE FROM {ENTRIES} WHERE sequence = %s", [k])  # noqa: S608
    renumber_tail(k + 1, -1)
    tamper(f"UPDATE {HEAD} SET sequence = sequence - 1")  # noqa: S608
    assert_broken(k, "row_missing")


def renumber_tail(first: int, shift: int) -> None:
    """Move entries ``first``… by ``shift`` (via negative numbers: ``sequence`` is unique)."""
    tamper(
        f"UPDATE {ENTRIES} SET sequence = -(sequence + %s) WHERE sequence >= %s",  # noqa: S608
        [shift, first],
    )
    tamper(f"UPDATE {ENTRIES} SET sequence = -sequence WHERE sequence < 0")  # noqa: S608


def forged_entry(k: int, *, linked: bool = True, hashed: bool = True) -> dict:
    """An entry for position ``k``: a sign-in of the QA officer that never happened, built by
    someone who knows the algorithm (it is in the source): correct content and entry hashes,
    linked to the entry before ``k``."""
    qa = AuditEntry.objects.filter(username="qa").first().user
    before = AuditEntry.objects.get(sequence=k - 1)
    payload = {"username": "qa", "ip": "10.0.0.66"}
    values = {
        "sequence": k,
        "source": chain.EVENT,
        "record_id": None,
        "object_model": "partners.user",
        "object_id": str(qa.pk),
        "action": AuditAction.LOGIN.value,
        "user_id": qa.pk,
        "username": "qa",
        "partner_id": qa.partner_id,
        "occurred_at": before.occurred_at + datetime.timedelta(microseconds=1),
        "reason": "",
        "payload": payload,
        "content_hash": chain.content_hash(payload),
        "column_set": "",
        "previous_hash": before.entry_hash if linked else "e" * 64,
    }
    values["entry_hash"] = chain._entry_hash(values) if hashed else "f" * 64
    return values


def insert_entry(values: dict) -> None:
    payload = values["payload"]
    row = {
        **values,
        "occurred_at": connection.ops.adapt_datetimefield_value(values["occurred_at"]),
        "payload": None if payload is None else json.dumps(payload),
    }
    names = list(row)
    tamper(
        f"INSERT INTO {ENTRIES} ({', '.join(names)})"  # noqa: S608 - fixed names
        f" VALUES ({', '.join(['%s'] * len(names))})",
        [row[n] for n in names],
    )


@pytest.mark.parametrize(
    ("linked", "hashed", "problem"),
    [
        (True, True, "row_inserted"),  # a careful forger: it links and hashes right
        (False, True, "row_inserted"),  # it does not link to the entry before
        (True, False, "content_changed"),  # its own hash is wrong: the first broken entry
    ],
    ids=["linked", "unlinked", "bad-hash"],
)
def test_forged_entry_in_the_middle_is_reported_at_its_sequence(history, linked, hashed, problem):
    k = sealing_entry(history.transfer).sequence
    renumber_tail(k, +1)
    insert_entry(forged_entry(k, linked=linked, hashed=hashed))
    tamper(f"UPDATE {HEAD} SET sequence = sequence + 1")  # noqa: S608
    assert_broken(k, problem)


def test_changed_reason_of_an_entry_is_content_changed(history):
    k = sealing_entry(version(Batch, reason="expiry mistyped on registration")).sequence
    tamper(
        f"UPDATE {ENTRIES} SET reason = %s WHERE sequence = %s",  # noqa: S608
        ["routine correction", k],
    )
    message = assert_broken(k, "content_changed")
    assert "no longer match its hash" in message


def test_changed_event_payload_is_content_changed(history):
    sign_in = AuditEntry.objects.get(action=AuditAction.LOGIN)
    tamper(
        f"UPDATE {ENTRIES} SET payload = %s WHERE sequence = %s",  # noqa: S608
        [json.dumps({**sign_in.payload, "ip": "192.0.2.1"}), sign_in.sequence],
    )
    assert_broken(sign_in.sequence, "content_changed")


def test_a_row_sealed_twice_is_row_inserted_at_the_second_seal(history):
    """A forged entry appended at the head, linked and hashed right, that seals an existing
    move once more (a replayed seal): every row has exactly one entry."""
    last_sequence, last_hash = head()
    first = sealing_entry(history.receipt)
    values = {
        **chain._stored_values(first),
        "sequence": last_sequence + 1,
        "previous_hash": last_hash,
    }
    values["entry_hash"] = chain._entry_hash(values)
    insert_entry(values)
    tamper(
        f"UPDATE {HEAD} SET sequence = %s, head_hash = %s",  # noqa: S608
        [last_sequence + 1, values["entry_hash"]],
    )
    message = assert_broken(last_sequence + 1, "row_inserted")
    assert f"already sealed at #{first.sequence}" in message


# --- the tail and the anchor --------------------------------------------------------------------


def truncate_tail(count: int) -> int:
    """Delete the last ``count`` entries and the rows they sealed, and roll the head back, as a
    database owner covering the tracks of the last writes would; returns the first sequence
    deleted."""
    last_sequence, _ = head()
    first = last_sequence - count + 1
    model_by_label = {m._meta.label_lower: m for m in chain.sealed_models()}
    for entry in AuditEntry.objects.filter(sequence__gte=first):
        if entry.source != chain.EVENT:
            model = model_by_label[entry.source]
            tamper(
                f"DELETE FROM {model._meta.db_table} WHERE {model._meta.pk.column} = %s",  # noqa: S608
                [entry.record_id],
            )
    tamper(f"DELETE FROM {ENTRIES} WHERE sequence >= %s", [first])  # noqa: S608
    new_head = AuditEntry.objects.get(sequence=first - 1)
    tamper(
        f"UPDATE {HEAD} SET sequence = %s, head_hash = %s",  # noqa: S608
        [new_head.sequence, new_head.entry_hash],
    )
    return first


def test_truncated_tail_is_caught_only_by_the_anchor(history, tmp_path):
    anchor = tmp_path / "head.json"
    call_command("audit_anchor", output=anchor, stdout=StringIO())
    anchored = json.loads(anchor.read_text())
    assert anchored["sequence"] == head()[0]
    run_verify(anchor=anchor)  # the anchor holds before the tampering

    first_deleted = truncate_tail(4)

    assert "audit chain intact" in run_verify()  # the chain alone cannot tell
    message = assert_broken(first_deleted, "row_missing", anchor=anchor)
    assert f"the anchored head #{anchored['sequence']} is no longer in the chain" in message


def test_truncated_tail_without_rolling_the_head_back_is_row_missing(history):
    """The head row still names the last entry: the chain ends before it."""
    last_sequence, last_hash = head()
    first_deleted = truncate_tail(3)
    tamper(f"UPDATE {HEAD} SET sequence = %s, head_hash = %s", [last_sequence, last_hash])  # noqa: S608
    assert_broken(first_deleted, "row_missing")


def test_rehashed_chain_is_caught_only_by_the_anchor(history, tmp_path):
    """The strongest owner changes a history row and recomputes every hash from its entry to the
    head (the hashes carry no secret). The chain is consistent again; the signed anchor, kept
    outside the database, no longer matches."""
    anchor = tmp_path / "head.json"
    call_command("audit_anchor", output=anchor, stdout=StringIO())
    anchored = json.loads(anchor.read_text())
    row = version(Batch, reason="expiry mistyped on registration")
    k = sealing_entry(row).sequence
    tamper(
        f"UPDATE {row._meta.db_table} SET lot_number = %s WHERE history_id = %s",  # noqa: S608
        ["LOT-FORGED", row.pk],
    )
    row.refresh_from_db()
    previous = AuditEntry.objects.get(sequence=k - 1).entry_hash
    for entry in AuditEntry.objects.filter(sequence__gte=k).order_by("sequence"):
        values = chain._stored_values(entry)
        if entry.sequence == k:
            values["content_hash"] = chain.content_hash(chain.row_content(row))
        values["previous_hash"] = previous
        values["entry_hash"] = previous = chain._entry_hash(values)
        tamper(
            f"UPDATE {ENTRIES} SET content_hash = %s, previous_hash = %s, entry_hash = %s"  # noqa: S608
            " WHERE sequence = %s",
            [values["content_hash"], values["previous_hash"], values["entry_hash"], entry.sequence],
        )
    tamper(f"UPDATE {HEAD} SET head_hash = %s", [previous])  # noqa: S608

    assert "audit chain intact" in run_verify()
    message = assert_broken(anchored["sequence"], "content_changed", anchor=anchor)
    assert "no longer has the anchored hash" in message


# --- the guard: without lifting it, the database refuses ----------------------------------------


def guarded_statements(history) -> list[tuple[str, str, list]]:
    """(table, SQL, params): an UPDATE and a DELETE of a history row, a chain entry, a move."""
    row = version(Batch, reason="QA release")
    targets = [
        (row._meta.db_table, "lot_number = 'X'", "history_id", row.pk),
        (ENTRIES, "reason = 'x'", "sequence", sealing_entry(row).sequence),
        (StockMove._meta.db_table, "quantity = 1", "id", history.receipt.pk),
    ]
    statements = []
    for table, change, key, value in targets:  # names from the models, values as parameters
        statements.append((table, f"UPDATE {table} SET {change} WHERE {key} = %s", [value]))  # noqa: S608
        statements.append((table, f"DELETE FROM {table} WHERE {key} = %s", [value]))  # noqa: S608
    return statements


def test_the_database_refuses_update_and_delete_without_the_guard_lifted(history):
    refused = []
    for what, sql, params in guarded_statements(history):
        with (
            pytest.raises(IntegrityError) as caught,
            transaction.atomic(),
            connection.cursor() as c,
        ):
            c.execute(sql, params)
        assert "append-only" in str(caught.value), what
        refused.append(what)
    assert len(refused) == 6
    assert "audit chain intact" in run_verify()


@needs_postgres
def test_postgres_refuses_truncate_without_the_guard_lifted(history):
    row = version(Batch, reason="QA release")
    with connection.cursor() as cursor:  # no deferred foreign-key checks pending: TRUNCATE
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # would refuse for that reason first
    for table in (row._meta.db_table, ENTRIES, StockMove._meta.db_table):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"TRUNCATE {table} CASCADE")
    assert "audit chain intact" in run_verify()


# --- the anchor itself ----------------------------------------------------------------------------


def test_an_anchor_taken_before_the_first_entry_holds(db, tmp_path):
    """A fresh database: the head is the genesis; whatever is written later, the anchor holds."""
    assert not AuditEntry.objects.exists()
    anchor = tmp_path / "genesis.json"
    call_command("audit_anchor", output=anchor, stdout=StringIO())
    assert json.loads(anchor.read_text())["sequence"] == 0
    ProductFactory()
    assert "anchor #0 holds" in run_verify(anchor=anchor)


def test_anchor_commands_without_a_key_refuse_cleanly(history, tmp_path, settings):
    anchor = tmp_path / "head.json"
    call_command("audit_anchor", output=anchor, stdout=StringIO())
    settings.AUDIT_ANCHOR_KEY = ""
    with pytest.raises(CommandError, match="AUDIT_ANCHOR_KEY is not set"):
        call_command("audit_anchor", stdout=StringIO())
    with pytest.raises(CommandError, match="AUDIT_ANCHOR_KEY is not set"):
        run_verify(anchor=anchor)


@pytest.mark.parametrize("text", ["[1, 2]", "not json", '{"sequence": "x", "hash": 1}'])
def test_an_unreadable_or_forged_anchor_is_refused(history, tmp_path, text):
    anchor = tmp_path / "head.json"
    anchor.write_text(text)
    with pytest.raises(CommandError, match="cannot read the anchor|anchor_mismatch"):
        run_verify(anchor=anchor)


def test_head_rolled_back_over_entries_is_row_inserted_after_it(history):
    """The head row says #N-2 while entries #N-1 and #N are still there: they were added
    without moving the head (or the head was moved back over them)."""
    last_sequence, _ = head()
    behind = AuditEntry.objects.get(sequence=last_sequence - 2)
    tamper(
        f"UPDATE {HEAD} SET sequence = %s, head_hash = %s",  # noqa: S608
        [behind.sequence, behind.entry_hash],
    )
    message = assert_broken(last_sequence - 1, "row_inserted")
    assert f"stand after the chain head #{behind.sequence}" in message


def test_deleted_head_row_is_row_missing(history):
    last_sequence, _ = head()
    tamper(f"DELETE FROM {HEAD}")  # noqa: S608
    assert_broken(last_sequence + 1, "row_missing")
