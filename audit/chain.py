"""The hash chain that seals every history row, stock move, signature and access event.

Each append takes the chain head under a row lock (``SELECT … FOR UPDATE``; on SQLite the
IMMEDIATE write transaction serialises instead), so concurrent transactions queue up and the
chain stays one line: one sequence, each previous hash used once. The append runs inside the
transaction of the write it seals, so a rolled-back write leaves no entry and a committed write
never lacks one.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.utils import timezone

from pharmadms.prepared import reused_cursor

from .models import AuditAction, AuditEntry, ChainHead, ColumnSet

GENESIS = "0" * 64
EVENT = "event"
_ENTRIES = AuditEntry._meta.db_table
_HEAD = ChainHead._meta.db_table
_COLUMNS = (
    "sequence",
    "source",
    "record_id",
    "object_model",
    "object_id",
    "action",
    "user_id",
    "username",
    "partner_id",
    "occurred_at",
    "reason",
    "payload",
    "content_hash",
    "column_set",
    "previous_hash",
    "entry_hash",
)


# --- canonical content ---------------------------------------------------------------------


# Values JSON writes as they are (exact types: a subclass takes the long way below).
_AS_IS = frozenset({str, int, bool, float, list, dict, type(None)})


def _canonical_value(model_field: models.Field | None, value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if isinstance(value, datetime.datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, datetime.UTC)
        return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        places = getattr(model_field, "decimal_places", None)
        if places is not None:
            value = value.quantize(decimal.Decimal(1).scaleb(-places))
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


class UnknownColumns(LookupError):
    """A seal or signature names a column set that is not on record, or a column now gone."""


_column_sets: dict[type[models.Model], tuple[str, tuple[str, ...]]] = {}
_fields_by_column: dict[type[models.Model], dict[str, models.Field]] = {}


def column_set(model: type[models.Model]) -> tuple[str, tuple[str, ...]]:
    """The digest and the columns a seal of ``model``'s rows covers now: every concrete column
    but the primary key (the entry's ``record_id``, the link to the row; leaving it out lets a
    history row and its seal be written in one statement, the key drawn there). Moving a seal to
    another row still shows: no two rows have the same content."""
    found = _column_sets.get(model)
    if found is None:
        pk = model._meta.pk
        columns = tuple(sorted(f.attname for f in model._meta.concrete_fields if f is not pk))
        found = _column_sets[model] = (content_hash([model._meta.label_lower, columns]), columns)
    return found


def columns_for(
    digest: str, model: type[models.Model], found: dict[str, tuple[str, ...]] | None = None
) -> tuple[str, ...]:
    """The columns a seal or signature with column set ``digest`` covered (UnknownColumns if
    none is on record or the record does not match its digest). ``found``: the column sets
    read so far in one pass (a verification reads each once, not once per entry)."""
    current_digest, current = column_set(model)
    if digest in (current_digest, ""):  # "" : sealed before column sets were recorded
        return current
    if found is not None and digest in found:
        return found[digest]
    recorded = ColumnSet.objects.filter(digest=digest).first()
    if recorded is None or content_hash([recorded.source, recorded.columns]) != digest:
        raise UnknownColumns(f"column set {digest[:12]}… is not on record")
    columns = tuple(recorded.columns)
    if found is not None:
        found[digest] = columns
    return columns


def record_column_sets(using: str = "default") -> None:
    """Record the column set of every model of the project (after each migrate): when a later
    release changes a table, the seals and signatures made before still know their columns."""
    rows = []
    for model in apps.get_models():
        if model._meta.app_label in _SEALED_APPS:
            digest, columns = column_set(model)
            rows.append(ColumnSet(digest=digest, source=model._meta.label_lower, columns=columns))
    ColumnSet.objects.using(using).bulk_create(rows, ignore_conflicts=True)


_SEALED_APPS = frozenset(
    {"partners", "batches", "orders", "coldchain", "recalls", "audit", "integrations"}
)


def row_content(instance: models.Model, columns: Iterable[str] | None = None) -> dict[str, Any]:
    """The canonical content of a row over ``columns`` (its table's column set now, by
    default): each column as stored, in a stable form."""
    model = type(instance)
    if columns is None:
        columns = column_set(model)[1]
    fields = _fields_by_column.get(model)
    if fields is None:
        fields = _fields_by_column[model] = {f.attname: f for f in model._meta.concrete_fields}
    content = {}
    for name in columns:
        field = fields.get(name)
        if field is None:
            raise UnknownColumns(f"column {name} was sealed but {model._meta.label} has it no more")
        content[name] = _canonical_value(field, getattr(instance, name))
    return content


def content_hash_over(row: models.Model, digest: str) -> str | None:
    """The hash of ``row``'s content now, over the columns of column set ``digest`` (what a
    signature or seal made then covered); None when those columns are not known."""
    try:
        return content_hash(row_content(row, columns_for(digest, type(row))))
    except UnknownColumns:
        return None


def _canonical_json(content: Any) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(content: Any) -> str:
    return hashlib.sha256(_canonical_json(content).encode()).hexdigest()


# What the entry hash covers besides the link (previous hash and sequence): everything but the
# link to the sealed row, which points at what ``content_hash`` covers.
_BODY = tuple(
    name
    for name in _COLUMNS
    if name not in ("sequence", "previous_hash", "entry_hash", "payload", "record_id")
)


def _body_text(values: dict[str, Any]) -> str:
    body = {name: values[name] for name in _BODY}
    body["occurred_at"] = _canonical_value(None, body["occurred_at"])
    return _canonical_json(body)


def _body_hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(_body_text(values).encode()).hexdigest()


def link_hash(previous_hash: str, sequence: int, body_hash: str) -> str:
    """The entry hash: SHA-256 of ``previous|sequence|body``; link_hash_sql() computes the same."""
    return hashlib.sha256(f"{previous_hash}|{sequence}|{body_hash}".encode()).hexdigest()


def _sha256_sql(text: str) -> str:
    return f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"


def link_hash_sql(previous_hash: str, sequence: str, body_hash: str) -> str:
    """link_hash() in PostgreSQL, over three SQL expressions."""
    return _sha256_sql(f"{previous_hash} || '|' || ({sequence})::text || '|' || {body_hash}")


def _entry_hash(values: dict[str, Any]) -> str:
    return link_hash(values["previous_hash"], values["sequence"], _body_hash(values))


# --- appending -----------------------------------------------------------------------------


# Takes the next sequence number and the current head hash, locking the head row, in one round
# trip (PostgreSQL and SQLite 3.35+); the lock is held until the sealing transaction ends. A
# writer may fold it into a statement of its own and hand the result to append(head=...).
ADVANCE_HEAD = (
    f"UPDATE {_HEAD} SET sequence = sequence + 1 WHERE id = 1"  # noqa: S608 - fixed names
    " RETURNING sequence, head_hash"
)
_ADVANCE_HEAD_BY = (
    f"UPDATE {_HEAD} SET sequence = sequence + %s WHERE id = 1"  # noqa: S608 - fixed names
    " RETURNING sequence, head_hash"
)


def _advance_head(cursor, by: int = 1) -> tuple:
    """Take the next ``by`` sequence numbers (returns the last) and the head hash, locking the
    head row until the transaction ends."""
    statement, params = (ADVANCE_HEAD, None) if by == 1 else (_ADVANCE_HEAD_BY, [by])
    cursor.execute(statement, params)
    row = cursor.fetchone()
    if row is None:  # a fresh (or flushed) database: the chain starts here
        ChainHead.objects.bulk_create(
            [ChainHead(id=1, sequence=0, head_hash=GENESIS)], ignore_conflicts=True
        )
        cursor.execute(statement, params)
        row = cursor.fetchone()
    return row


def _insert_entry(cursor, row: list, entry_hash: str) -> None:
    """INSERT the entry and move the head hash on (on PostgreSQL in one round trip)."""
    insert = (
        f"INSERT INTO {_ENTRIES} ({', '.join(_COLUMNS)})"  # noqa: S608 - fixed names
        f" VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
    )
    if connection.vendor == "postgresql":
        cursor.execute(
            f"WITH sealed AS ({insert} RETURNING entry_hash)"  # noqa: S608
            f" UPDATE {_HEAD} SET previous_hash = head_hash,"
            " head_hash = (SELECT entry_hash FROM sealed) WHERE id = 1",
            row,
        )
    else:
        cursor.execute(insert, row)
        cursor.execute(
            f"UPDATE {_HEAD} SET previous_hash = head_hash, head_hash = %s"  # noqa: S608
            " WHERE id = 1",
            [entry_hash],
        )


def _insert_entries(cursor, rows: list[list], previous_hash: str, head_hash: str) -> None:
    """INSERT consecutive entries, as many to a statement as the database takes, and move the
    head's hashes on to the last two: ``previous_hash`` is the entry before the last's."""
    # Django knows SQLite's limit; PostgreSQL's protocol counts a statement's parameters in 16
    # bits.
    most = connection.features.max_query_params or 65_535
    per_statement = max(1, most // len(_COLUMNS))
    one_row = f"({', '.join(['%s'] * len(_COLUMNS))})"
    for start in range(0, len(rows), per_statement):
        part = rows[start : start + per_statement]
        cursor.execute(
            f"INSERT INTO {_ENTRIES} ({', '.join(_COLUMNS)})"  # noqa: S608 - fixed names
            f" VALUES {', '.join([one_row] * len(part))}",
            [value for row in part for value in row],
        )
    cursor.execute(
        f"UPDATE {_HEAD} SET previous_hash = %s, head_hash = %s WHERE id = 1",  # noqa: S608
        [previous_hash, head_hash],
    )


def _entry_values(
    *,
    sequence: int,
    previous_hash: str,
    source: str,
    record_id: int | None,
    object_model: str,
    object_id: Any,
    action: str,
    user: Any,
    occurred_at: datetime.datetime,
    reason: str,
    content: Any,
    payload: Any = None,
    column_set: str = "",
) -> dict[str, Any]:
    """The entry's values but its hash, by column."""
    return {
        "sequence": sequence,
        "source": source,
        "record_id": record_id,
        "object_model": object_model,
        "object_id": "" if object_id is None else str(object_id),
        "action": action,
        "user_id": getattr(user, "pk", None),
        "username": getattr(user, "username", "") or "",
        "partner_id": getattr(user, "partner_id", None),
        "occurred_at": occurred_at,
        "reason": reason or "",
        "payload": payload,
        "content_hash": content_hash(content),
        "column_set": column_set,
        "previous_hash": previous_hash,
    }


def _entry_params(values: dict[str, Any], db=connection) -> list:
    """The entry's values as parameters of its INSERT, in _COLUMNS order."""
    row = [values.get(name) for name in _COLUMNS]
    row[_COLUMNS.index("occurred_at")] = db.ops.adapt_datetimefield_value(values["occurred_at"])
    payload = values["payload"]
    row[_COLUMNS.index("payload")] = None if payload is None else json.dumps(payload)
    return row


def _entry_row(**seal: Any) -> tuple[list, str]:
    """The entry's INSERT parameters, in _COLUMNS order, and its hash (_entry_values' arguments)."""
    values = _entry_values(**seal)
    entry_hash = values["entry_hash"] = _entry_hash(values)
    return _entry_params(values), entry_hash


def _in_transaction():
    # Inside the sealed write's transaction already (the rule); open one only when called bare.
    if connection.in_atomic_block:
        return contextlib.nullcontext()
    return transaction.atomic(savepoint=False)


def append(
    *,
    source: str,
    record_id: int | None,
    object_model: str,
    object_id: Any,
    action: str,
    user: Any,
    occurred_at: datetime.datetime,
    reason: str,
    content: Any,
    payload: Any = None,
    column_set: str = "",
    head: tuple[int, str] | None = None,
) -> int:
    """Seal one row (or event) as the next link of the chain; returns its sequence number.

    ``head`` is the (sequence, previous hash) pair that the caller took with ADVANCE_HEAD in
    this same transaction, when it folded that into a statement of its own.
    """
    cursor = reused_cursor()
    with _in_transaction():
        sequence, previous_hash = head or _advance_head(cursor)
        row, entry_hash = _entry_row(
            sequence=sequence,
            previous_hash=previous_hash,
            source=source,
            record_id=record_id,
            object_model=object_model,
            object_id=object_id,
            action=action,
            user=user,
            occurred_at=occurred_at,
            reason=reason,
            content=content,
            payload=payload,
            column_set=column_set,
        )
        _insert_entry(cursor, row, entry_hash)
    return sequence


HISTORY_ACTIONS = {"+": AuditAction.CREATED, "~": AuditAction.CHANGED, "-": AuditAction.DELETED}


def _history_seal(history_row: models.Model) -> dict[str, Any]:
    tracked = history_row.instance_type._meta
    return {
        "source": history_row._meta.label_lower,
        "record_id": history_row.pk,
        "object_model": tracked.label_lower,
        "object_id": getattr(history_row, tracked.pk.attname),
        "action": HISTORY_ACTIONS[history_row.history_type],
        "user": history_row.history_user,
        "occurred_at": history_row.history_date,
        "reason": history_row.history_change_reason or "",
        "content": row_content(history_row),
        "column_set": column_set(type(history_row))[0],
    }


def seal_history_row(history_row: models.Model) -> int:
    """Seal a django-simple-history row already written (bulk history, other writers)."""
    return append(**_history_seal(history_row))


def append_many(seals: Sequence[dict[str, Any]]) -> int:
    """Seal several rows as consecutive links, in the order given (each as append()'s
    arguments); returns the last sequence number.

    The statements do not grow with the rows: the head advances once by their number, the
    entries are inserted together (in parts only beyond what one statement takes) and the head
    moves on to the last. The entries and their hashes are those that append() would write one
    by one, so ``verify`` cannot tell the two apart.
    """
    if not seals:
        raise ValueError("nothing to seal")
    cursor = reused_cursor()
    with _in_transaction():
        last, previous_hash = _advance_head(cursor, by=len(seals))
        rows, hashes = [], [previous_hash]
        for sequence, seal in enumerate(seals, start=last - len(seals) + 1):
            row, entry_hash = _entry_row(sequence=sequence, previous_hash=hashes[-1], **seal)
            rows.append(row)
            hashes.append(entry_hash)
        _insert_entries(cursor, rows, previous_hash=hashes[-2], head_hash=hashes[-1])
    return last


def seal_history_rows(history_rows: Sequence[models.Model]) -> int:
    """Seal django-simple-history rows already written (a bulk write's), in their order."""
    return append_many([_history_seal(row) for row in history_rows])


class _SealedInsert:
    """The statements that write one model's rows with their seal, built once per model.

    ``own_record``: the row is its own record (a scan): the entry's object is the row itself,
    whose id the database draws in the same statement.
    """

    def __init__(self, model: type[models.Model], *, own_record: bool) -> None:
        qn = connection.ops.quote_name
        meta = model._meta
        self.pk = meta.pk
        self.fields = [f for f in meta.concrete_fields if f is not meta.pk]
        columns = ", ".join(qn(f.column) for f in self.fields)
        marks = ", ".join(["%s"] * len(self.fields))
        self.sql = (
            f"INSERT INTO {qn(meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608
            f" RETURNING {qn(self.pk.column)}"
        )
        self.own_record = own_record
        self.taken_in_sql = _TAKEN_IN_SQL | ({"object_id"} if own_record else set())
        self.sealed_sql = self._sealed_sql() if connection.vendor == "postgresql" else ""

    def _sealed_sql(self) -> str:
        """PostgreSQL: write the row, advance the head and write the row's entry, in one
        statement.

        The head is advanced by an upsert (a flushed database has no head row yet) whose SET
        sees the newest committed head under its row lock, and computes the entry hash there
        (link_hash_sql), so nothing has to come back to Python in between. The entry is built
        from what the head and the row's INSERT return. The row is written first, so the head
        stays locked only for the rest of the statement's transaction. For a row that is its own
        record the entry's body names the row's id: its canonical text comes in the two parts
        around the id, and is hashed here."""
        qn = connection.ops.quote_name
        entry_fields = {f.column: f for f in AuditEntry._meta.concrete_fields}
        row_id = f"row_written.{qn(self.pk.column)}"
        taken = {
            "sequence": "head.sequence",
            "record_id": row_id,
            "object_id": f"CAST({row_id} AS text)",
            "previous_hash": "head.previous_hash",
            "entry_hash": "head.head_hash",
        }
        select = ", ".join(
            taken[name]
            if name in self.taken_in_sql
            else f"CAST(%s AS {entry_fields[name].db_type(connection)})"
            for name in _COLUMNS
        )
        body = (
            _sha256_sql(f"CAST(%s AS text) || {row_id}::text || CAST(%s AS text)")
            if self.own_record
            else "CAST(%s AS text)"
        )
        first_link = link_hash_sql(f"'{GENESIS}'", "1", "body.hash")
        link = link_hash_sql("h.head_hash", "h.sequence + 1", "(SELECT hash FROM body)")
        return (
            f"WITH row_written AS ({self.sql}),"  # noqa: S608 - fixed names
            f" body AS (SELECT {body} AS hash FROM row_written),"
            f" head AS (INSERT INTO {_HEAD} AS h (id, sequence, previous_hash, head_hash)"
            f" SELECT 1, 1, '{GENESIS}', {first_link} FROM body"
            " ON CONFLICT (id) DO UPDATE SET sequence = h.sequence + 1,"
            f" previous_hash = h.head_hash, head_hash = {link}"
            " RETURNING sequence, previous_hash, head_hash)"
            f" INSERT INTO {_ENTRIES} ({', '.join(_COLUMNS)}) SELECT {select}"
            " FROM head, row_written RETURNING sequence, record_id"
        )

    def params(self, row: models.Model, db) -> list:
        return [f.get_db_prep_save(f.pre_save(row, True), db) for f in self.fields]

    def write(self, row: models.Model, seal: dict[str, Any]) -> int:
        """Write ``row`` and its seal (append()'s arguments but the record id, and for a row
        that is its own record the object id); returns the sequence."""
        # The connection itself, not django.db.connection: each of the fields' look-ups through
        # that proxy finds the thread's connection anew.
        db = connections[DEFAULT_DB_ALIAS]
        cursor = reused_cursor(db)
        if self.sealed_sql:  # one statement: a transaction of its own when called bare
            sequence, row.pk = self._write_in_one(cursor, row, seal, db)
        else:
            with _in_transaction():
                cursor.execute(self.sql, self.params(row, db))
                row.pk = cursor.fetchone()[0]
                own = {"object_id": row.pk} if self.own_record else {}
                sequence = append(**seal, **own, record_id=row.pk)
        row._state.adding = False
        row._state.db = db.alias
        return sequence

    def _write_in_one(self, cursor, row: models.Model, seal: dict[str, Any], db) -> tuple[int, int]:
        # Sequence, link and ids are the database's to fill in; the body is ours.
        mark = f"\ue000{uuid.uuid4().hex}\ue001"  # where the row's id goes in the body's text
        if self.own_record:
            seal = {**seal, "object_id": mark}
        values = _entry_values(sequence=0, previous_hash=GENESIS, record_id=None, **seal)
        text = _body_text(values)
        if self.own_record:
            before, after = text.split(mark)
            body_params = [before, after]
        else:
            body_params = [hashlib.sha256(text.encode()).hexdigest()]
        constants = [
            value
            for name, value in zip(_COLUMNS, _entry_params(values, db), strict=True)
            if name not in self.taken_in_sql
        ]
        cursor.execute(self.sealed_sql, [*self.params(row, db), *body_params, *constants])
        return cursor.fetchone()


_sealed_inserts: dict[tuple[type[models.Model], bool], _SealedInsert] = {}
_TAKEN_IN_SQL = frozenset({"sequence", "record_id", "previous_hash", "entry_hash"})


def _sealed_insert(model: type[models.Model], *, own_record: bool) -> _SealedInsert:
    insert = _sealed_inserts.get((model, own_record))
    if insert is None:
        insert = _sealed_inserts[model, own_record] = _SealedInsert(model, own_record=own_record)
    return insert


def insert_history_row(history_row: models.Model) -> int:
    """Write a new django-simple-history row and its seal together; returns the sequence.

    What ``history_row.save()`` followed by :func:`seal_history_row` does, in fewer round trips:
    on PostgreSQL one statement (see ``_SealedInsert._sealed_sql``), on SQLite four cheap
    ones. The row is written exactly as the ORM would write it (each field's
    ``get_db_prep_save``) and sealed with the same content and the same hashes, so ``verify``
    cannot tell the paths apart. The historical model's own pre_save/post_save signals are not
    sent (nothing in the project listens to them; django-simple-history's signals are).
    """
    seal = _history_seal(history_row)  # the row's key is not part of it: drawn by the INSERT
    del seal["record_id"]
    sequence = _sealed_insert(type(history_row), own_record=False).write(history_row, seal)
    history_row._sealed = True
    return sequence


def insert_sealed_row(
    row: models.Model, *, action: str, user: Any, occurred_at: datetime.datetime, reason: str
) -> int:
    """Write a new append-only row that is its own record (a scan) and its seal together;
    returns the sequence.

    What ``row.save()`` followed by :func:`seal_row` does, with the same content and hashes: on
    PostgreSQL in one statement, so that outside a transaction the row and its seal commit in
    one round trip; on SQLite in four. The model's pre_save/post_save signals are not sent: the
    row has no history of its own (it never changes) and nothing listens to them.
    """
    model = type(row)
    return _sealed_insert(model, own_record=True).write(
        row,
        {
            "source": model._meta.label_lower,
            "object_model": model._meta.label_lower,
            "action": action,
            "user": user,
            "occurred_at": occurred_at,
            "reason": reason,
            "content": row_content(row),
            "column_set": column_set(model)[0],
        },
    )


def seal_row(
    row: models.Model,
    *,
    head: tuple[int, str] | None = None,
    action: str,
    user: Any,
    occurred_at,
    reason: str,
    object_model=None,
    object_id=None,
) -> int:
    """Seal an append-only row that is its own record (a stock move, a signature)."""
    return append(
        source=row._meta.label_lower,
        record_id=row.pk,
        object_model=object_model or row._meta.label_lower,
        object_id=row.pk if object_id is None else object_id,
        action=action,
        user=user,
        occurred_at=occurred_at,
        reason=reason,
        content=row_content(row),
        column_set=column_set(type(row))[0],
        head=head,
    )


def record_event(
    *, action: str, user: Any = None, username: str = "", reason: str = "", detail: dict
) -> int:
    """Seal an access event (sign-in, sign-out, failure, lockout, denied request)."""
    payload = {"username": username or getattr(user, "username", ""), **detail}
    return append(
        source=EVENT,
        record_id=None,
        object_model=settings.AUTH_USER_MODEL.lower(),
        object_id=getattr(user, "pk", None),
        action=action,
        user=user,
        occurred_at=timezone.now(),
        reason=reason,
        content=payload,
        payload=payload,
    )


# --- verification --------------------------------------------------------------------------


@dataclass
class Finding:
    sequence: int
    problem: str  # content_changed | row_missing | row_inserted | order_changed | anchor_mismatch
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "problem": self.problem, "detail": self.detail}


@dataclass
class Verification:
    checked: int = 0
    head_sequence: int = 0
    head_hash: str = GENESIS
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return min(self.findings, key=lambda f: f.sequence) if self.findings else None

    def as_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head": {"sequence": self.head_sequence, "hash": self.head_hash},
            "first_broken": first.as_dict() if first else None,
        }


def sealed_models() -> list[type[models.Model]]:
    """Every model whose rows must each have a chain entry: history models and append-only ones."""
    return [
        model
        for model in apps.get_models()
        if hasattr(model, "instance_type")
        and hasattr(model, "history_id")
        or getattr(model, "APPEND_ONLY", False)
    ]


def _entries(chunk: int = 2000) -> Iterator[list[AuditEntry]]:
    last = 0
    while True:
        batch = list(AuditEntry.objects.filter(sequence__gt=last).order_by("sequence")[:chunk])
        if not batch:
            return
        yield batch
        last = batch[-1].sequence


def _stored_values(entry: AuditEntry) -> dict[str, Any]:
    values = {name: getattr(entry, name) for name in _COLUMNS}
    values["occurred_at"] = entry.occurred_at
    return values


def verify(*, anchor: dict | None = None, key: bytes | None = None) -> Verification:
    """Recompute the whole chain and report what is broken, first sequence first.

    Checks, entry by entry: the sequence runs on without a gap; each entry's hash covers its own
    fields; each previous hash is the hash of the entry before; each sealed row still exists, has
    the content that was sealed, and is sealed once only. Then: the chain still reaches the head
    row, and every row of a sealed table has an entry. With ``anchor`` (a signed head kept outside
    the database), the chain must still hold that head.

    Safe while the application writes: the head is read before the entries (appends only add
    after it), and a row committed after the scan came with its entry in the same transaction.
    """
    result = Verification()
    head_row = ChainHead.objects.filter(pk=1).values_list("sequence", "head_hash").first()
    earlier: dict[str, int] = {GENESIS: 0}
    expected_sequence, previous_hash = 1, GENESIS
    sealed_ids: dict[str, dict[int, int]] = {}  # source -> record id -> sequence that sealed it
    last_flagged = 0  # the last sequence at which a finding was made
    hash_at_head = GENESIS if head_row and head_row[0] == 0 else None
    model_by_label = {m._meta.label_lower: m for m in sealed_models()}
    column_sets: dict[str, tuple[str, ...]] = {}  # older column sets, read once each
    for batch in _entries():
        rows = _load_rows(batch, model_by_label)
        for entry in batch:
            result.checked += 1
            finding = (
                _check_link(entry, expected_sequence, previous_hash, earlier, last_flagged)
                or _check_row(entry, rows, column_sets)
                or _check_sealed_once(entry, sealed_ids)
            )
            if finding:
                result.findings.append(finding)
                last_flagged = entry.sequence
            if entry.source != EVENT and entry.record_id is not None:
                sealed_ids.setdefault(entry.source, {}).setdefault(entry.record_id, entry.sequence)
            if head_row and entry.sequence == head_row[0]:
                hash_at_head = entry.entry_hash
            earlier[entry.entry_hash] = entry.sequence
            expected_sequence = entry.sequence + 1
            previous_hash = entry.entry_hash
            result.head_sequence, result.head_hash = entry.sequence, entry.entry_hash
    head_after = ChainHead.objects.filter(pk=1).values_list("sequence", flat=True).first()
    result.findings.extend(_check_head(head_row, hash_at_head, head_after, result))
    result.findings.extend(_unsealed_rows(model_by_label, sealed_ids, result.head_sequence))
    if anchor is not None:
        result.findings.extend(_check_anchor(anchor, key, result))
    return result


def _check_link(
    entry: AuditEntry,
    expected_sequence: int,
    previous_hash: str,
    earlier: dict[str, int],
    last_flagged: int = 0,
) -> Finding | None:
    sequence = entry.sequence
    if sequence > expected_sequence:
        return Finding(
            expected_sequence,
            "row_missing",
            f"entries #{expected_sequence}–#{sequence - 1} are gone",
        )
    if _entry_hash(_stored_values(entry)) != entry.entry_hash:
        moved_from = _sealed_position(entry)
        if moved_from is not None:
            return _moved(entry, moved_from, earlier, last_flagged)
        return Finding(
            sequence, "content_changed", "the entry's own fields no longer match its hash"
        )
    if entry.previous_hash != previous_hash:
        if entry.previous_hash in earlier:
            return Finding(
                sequence,
                "row_missing",
                f"entries after #{earlier[entry.previous_hash]} were removed",
            )
        following = AuditEntry.objects.filter(sequence=sequence + 1).first()
        if following is not None and following.previous_hash == previous_hash:
            return Finding(sequence, "row_inserted", f"entry #{sequence} was slipped in")
        return Finding(sequence, "order_changed", "the entry does not link to the one before")
    return None


def _moved(entry: AuditEntry, moved_from: int, earlier: dict[str, int], last_flagged: int):
    """An intact entry that stands at another sequence than it was sealed at: entries were
    removed before it (and the tail renumbered), slipped in before it, or swapped."""
    sequence = entry.sequence
    if moved_from > sequence and not (
        entry.previous_hash in earlier
        or AuditEntry.objects.filter(entry_hash=entry.previous_hash).exists()
    ):
        return Finding(
            sequence,
            "row_missing",
            f"the entry sealed as #{moved_from} now stands at #{sequence}: "
            f"the {moved_from - sequence} before it were removed and the tail renumbered",
        )
    sealed_after = earlier.get(entry.previous_hash)
    if (
        moved_from < sequence
        and sealed_after is not None
        and sealed_after < sequence - 1
        and last_flagged <= sealed_after  # the entries between all link and hash correctly
    ):
        first = sealed_after + 1
        return Finding(
            first,
            "row_inserted",
            f"entries #{first}–#{sequence - 1} were slipped in before the entry sealed as "
            f"#{moved_from}",
        )
    return Finding(
        sequence, "order_changed", f"the entry sealed as #{moved_from} now stands at #{sequence}"
    )


def _sealed_position(entry: AuditEntry, reach: int = 50) -> int | None:
    """The sequence an entry was sealed at, if it now stands at another (entries swapped)."""
    values = _stored_values(entry)
    for candidate in range(max(1, entry.sequence - reach), entry.sequence + reach + 1):
        if candidate != entry.sequence and (
            _entry_hash({**values, "sequence": candidate}) == entry.entry_hash
        ):
            return candidate
    return None


def _load_rows(batch: list[AuditEntry], model_by_label) -> dict[tuple[str, int], models.Model]:
    wanted: dict[str, list[int]] = {}
    for entry in batch:
        if entry.source != EVENT and entry.record_id is not None:
            wanted.setdefault(entry.source, []).append(entry.record_id)
    rows = {}
    for label, ids in wanted.items():
        model = model_by_label.get(label)
        if model is None:
            continue
        for pk, row in model._base_manager.in_bulk(ids).items():
            rows[(label, pk)] = row
    return rows


def _check_row(entry: AuditEntry, rows, column_sets: dict) -> Finding | None:
    if entry.source == EVENT:
        if content_hash(entry.payload) != entry.content_hash:
            return Finding(entry.sequence, "content_changed", "the event's content was changed")
        return None
    row = rows.get((entry.source, entry.record_id))
    if row is None:
        return Finding(
            entry.sequence, "row_missing", f"{entry.source} row {entry.record_id} is gone"
        )
    try:
        content = row_content(row, columns_for(entry.column_set, type(row), column_sets))
    except UnknownColumns as unknown:
        return Finding(entry.sequence, "content_changed", f"{entry.source}: {unknown}")
    if content_hash(content) != entry.content_hash:
        return Finding(
            entry.sequence,
            "content_changed",
            f"{entry.source} row {entry.record_id} differs from what was sealed",
        )
    return None


def _check_sealed_once(entry: AuditEntry, sealed_ids: dict[str, dict[int, int]]):
    """Each row has exactly one entry: a second one is a forged (replayed) seal."""
    if entry.source == EVENT or entry.record_id is None:
        return None
    first = sealed_ids.get(entry.source, {}).get(entry.record_id)
    if first is None:
        return None
    return Finding(
        entry.sequence,
        "row_inserted",
        f"{entry.source} row {entry.record_id} is already sealed at #{first}",
    )


def _check_head(
    head_row: tuple[int, str] | None,
    hash_at_head: str | None,
    head_after: int | None,
    result: Verification,
) -> list[Finding]:
    """The chain and its head row agree. The head read before the entries must be among them
    (entries cut from the tail without rolling the head back show here, not only at the next
    append); the head read after them must not stand before the last one (entries added
    without moving the head, or a head rolled back over them). The head moves in the same
    transaction as each append, so neither holds only because the application is writing."""
    if head_row is None or head_after is None:
        if result.head_sequence == 0:
            return []
        return [Finding(result.head_sequence + 1, "row_missing", "the chain head row is gone")]
    if head_after < result.head_sequence:
        return [
            Finding(
                head_after + 1,
                "row_inserted",
                f"entries #{head_after + 1}–#{result.head_sequence} stand after the chain head "
                f"#{head_after}",
            )
        ]
    head_sequence, head_hash = head_row
    if hash_at_head == head_hash:
        return []
    if head_sequence > result.head_sequence:
        return [
            Finding(
                result.head_sequence + 1,
                "row_missing",
                f"the chain head is #{head_sequence} but the chain ends at #{result.head_sequence}",
            )
        ]
    return [
        Finding(
            head_sequence,
            "content_changed",
            f"entry #{head_sequence} no longer has the chain head's hash",
        )
    ]


def _unsealed_rows(
    model_by_label, sealed_ids: dict[str, dict[int, int]], head: int
) -> list[Finding]:
    findings = []
    for label, model in model_by_label.items():
        known = sealed_ids.get(label, {})
        unsealed = set(model._base_manager.values_list("pk", flat=True)).difference(known)
        if unsealed:
            # A row committed after the entries were read came in the same transaction as its
            # entry, which stands after the last one read: sealed, only later (verify runs while
            # the application writes).
            unsealed.difference_update(
                AuditEntry.objects.filter(source=label, sequence__gt=head).values_list(
                    "record_id", flat=True
                )
            )
        for pk in sorted(unsealed)[:1]:
            row = model._base_manager.get(pk=pk)
            when = (
                getattr(row, "history_date", None)
                or getattr(row, "created_at", None)
                or getattr(row, "signed_at", None)
            )
            after = (
                AuditEntry.objects.filter(occurred_at__gt=when).order_by("sequence").first()
                if when
                else None
            )
            sequence = after.sequence if after else head + 1
            findings.append(
                Finding(sequence, "row_inserted", f"{label} row {pk} has no chain entry")
            )
    return findings


# --- the anchor: the signed head kept outside the database ----------------------------------


def sign_head(sequence: int, head_hash: str, key: bytes) -> dict[str, Any]:
    message = f"{sequence}:{head_hash}".encode()
    return {
        "sequence": sequence,
        "hash": head_hash,
        "signed_at": timezone.now().isoformat(),
        "algorithm": "HMAC-SHA256",
        "signature": hmac.new(key, message, hashlib.sha256).hexdigest(),
    }


def anchor_is_authentic(anchor: dict, key: bytes) -> bool:
    message = f"{anchor.get('sequence')}:{anchor.get('hash')}".encode()
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, str(anchor.get("signature", "")))


def _check_anchor(anchor: dict, key: bytes | None, result: Verification) -> Iterable[Finding]:
    if key is None or not anchor_is_authentic(anchor, key):
        signed = anchor.get("sequence") if isinstance(anchor, dict) else None
        sequence = signed if isinstance(signed, int) else 0
        return [Finding(sequence, "anchor_mismatch", "the anchor's signature is not valid")]
    sequence = int(anchor["sequence"])
    if sequence == 0 and anchor.get("hash") == GENESIS:
        return []  # anchored before the first entry: any chain holds it
    entry = AuditEntry.objects.filter(sequence=sequence).first()
    if entry is None or sequence > result.head_sequence:
        return [
            Finding(
                min(sequence, result.head_sequence + 1),
                "row_missing",
                f"the anchored head #{sequence} is no longer in the chain",
            )
        ]
    if entry.entry_hash != anchor.get("hash"):
        return [
            Finding(
                sequence, "content_changed", f"entry #{sequence} no longer has the anchored hash"
            )
        ]
    return []
