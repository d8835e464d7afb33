"""Querysets built once and run again with new values, for the few hot paths where building a
query costs more than running it.

A scan station waits for every answer, and Django builds each queryset anew: the filters, the
joins of ``select_related``, the compiler's SQL. On the scan path that work took 0.5–0.8 ms a
query against a database round trip of under 0.1 ms. :class:`PreparedQuery` builds the
queryset once per database connection with placeholder values, keeps its SQL, and afterwards
only binds the values, runs the SQL and turns the rows into model instances exactly as the
ORM does (its converters, ``from_db`` and ``select_related`` populators)::

    LOTS = PreparedQuery(
        lambda gtin, lot: Batch.objects.select_related("product").filter(
            product__gtin=gtin, lot_number=lot
        ),
        gtin=str,
        lot=str,
    )
    batch = LOTS.first(gtin="09501101530003", lot="A1")

The query must have the same shape whatever the values (no ``if`` on them in ``build``), and
each value may only be compared as it is (exact lookups): a lookup that changes the value
(``icontains``, ``startswith``) is refused when the query is prepared.

:class:`OneRow` reads several such queries of at most one row each, and EXISTS tests, in a
single statement: one round trip instead of one each. A test may take its value from a row
read in the same statement (``OneRow.column``), as a hold gate takes the id of the scanned lot.

Both run on :func:`reused_cursor`, which the audit chain's sealed writes use too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators
from django.utils.asyncio import async_unsafe

# Placeholders: values no real query would hold, and within a 32-bit integer column's range
# (Django refuses out-of-range values before they reach the SQL).
_INT_PLACEHOLDER = 2_100_000_000
_TEXT_PLACEHOLDER = "\ue000prepared:{}\ue001"
# Django's SQL marks each parameter with %s and writes a literal percent sign as %%.
_MARKS = re.compile(r"%%|%s")


@async_unsafe
def reused_cursor(connection=None):
    """A cursor of ``connection`` (the default database's) that is kept while the connection
    lives and handed out again: each psycopg cursor learns how to send each type of value and
    read each type of column (a timestamp column's time zone, ...), and a new one learns it all
    again for every statement: on the scan path about 40 µs of CPU a statement.

    As ``connection.cursor()`` it checks the connection's health (once a request), connects
    when needed, and wraps the cursor as Django does: errors become Django's, and statements
    are logged when Django logs them (DEBUG, CaptureQueriesContext). Never close it: use it
    without ``with``. A connection belongs to one thread, and so does its cursor.
    """
    if connection is None:
        connection = connections[DEFAULT_DB_ALIAS]
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    kept = _kept(connection, "cursor")
    if kept.get("on") is not connection.connection:  # a new connection: a new cursor
        with connection.wrap_database_errors:
            kept.update(on=connection.connection, cursor=connection.create_cursor())
    return connection._prepare_cursor(kept["cursor"])


def _kept(connection, what: str) -> dict:
    """What this module keeps for ``connection``, on the connection object itself."""
    return connection.__dict__.setdefault(f"_prepared_{what}", {})


class SQL(str):
    """An SQL expression given in place of a value: it goes into the statement as written."""


class _Compiled:
    """One queryset's SQL on one connection, and how to turn its rows into instances."""

    def __init__(self, queryset: QuerySet, placeholders: dict[str, Any], connection) -> None:
        compiler = queryset.query.get_compiler(connection=connection, elide_empty=False)
        sql, params = compiler.as_sql()
        self.sql = sql
        # The SQL between the parameters' marks: a value may be replaced by an SQL expression.
        self.chunks, start = [], 0
        for mark in _MARKS.finditer(sql):
            if mark.group() == "%s":
                self.chunks.append(sql[start : mark.start()])
                start = mark.end()
        self.chunks.append(sql[start:])
        # Each parameter is either a constant of the query or the name of a value to bind.
        self.params: list[tuple[bool, Any]] = []
        found = set()
        for param in params:
            name = next(
                (n for n, p in placeholders.items() if type(p) is type(param) and p == param),
                None,
            )
            if name is None:
                self.params.append((False, param))
            else:
                found.add(name)
                self.params.append((True, name))
        missing = set(placeholders) - found
        if missing and not queryset.query.is_empty():  # an empty query needs no value
            raise ValueError(
                f"prepared query: {', '.join(sorted(missing))} not bound as given "
                "(only exact comparisons can be prepared)"
            )
        self.compiler = compiler
        self.db = connection.alias
        select, klass_info = compiler.select, compiler.klass_info
        if klass_info is None:  # values() and the like: rows as they come
            self.model = None
            return
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start : self.end]]
        self.width = len(select)
        self.pk_at = self.start + self.init_list.index(self.model._meta.pk.attname)
        self.populators = get_related_populators(klass_info, select, self.db)
        self.annotations = dict(compiler.annotation_col_map or {})
        self.converters = compiler.get_converters([column[0] for column in select])

    def bind(self, values: dict[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its parameters for ``values`` (an SQL value goes into the text)."""
        if not any(isinstance(value, SQL) for value in values.values()):
            return self.sql, self.values(values)
        parts, params = [self.chunks[0]], []
        for (named, value), chunk in zip(self.params, self.chunks[1:], strict=True):
            value = values[value] if named else value
            if isinstance(value, SQL):
                parts.append(value)
            else:
                parts.append("%s")
                params.append(value)
            parts.append(chunk)
        return "".join(parts), params

    def values(self, values: dict[str, Any]) -> list[Any]:
        """The parameters for ``values``, but those that are SQL (they went into the text)."""
        return [
            values[value] if named else value
            for named, value in self.params
            if not (named and isinstance(values[value], SQL))
        ]

    def instances(self, rows: list) -> list[Model]:
        if self.converters:
            rows = self.compiler.apply_converters(rows, self.converters)
        found = []
        for row in rows:
            instance = self.model.from_db(self.db, self.init_list, row[self.start : self.end])
            for populator in self.populators:
                populator.populate(row, instance)
            for name, position in self.annotations.items():
                setattr(instance, name, row[position])
            found.append(instance)
        return found


class PreparedQuery:
    """A queryset built by ``build(**values)``, compiled once per connection of the default
    database (see the module doc); ``kinds`` names each value and its type (``int`` or
    ``str``)."""

    def __init__(self, build: Callable[..., QuerySet], **kinds: type) -> None:
        for name, kind in kinds.items():
            if kind not in (int, str):
                raise TypeError(f"prepared query value {name}: int or str, not {kind!r}")
        self.build, self.kinds = build, kinds

    def _placeholders(self) -> dict[str, Any]:
        return {
            name: _INT_PLACEHOLDER + index if kind is int else _TEXT_PLACEHOLDER.format(name)
            for index, (name, kind) in enumerate(self.kinds.items())
        }

    def compiled(self, connection=None) -> _Compiled:
        """The query compiled on ``connection`` (the default database's, by default)."""
        if connection is None:
            connection = connections[DEFAULT_DB_ALIAS]
        # Kept on the connection object (each thread has its own; a compiler belongs to one),
        # so that it goes with it: a server that runs each request in a new thread keeps none.
        kept = _kept(connection, "queries")
        compiled = kept.get(self)
        if compiled is None:
            placeholders = self._placeholders()
            compiled = kept[self] = _Compiled(self.build(**placeholders), placeholders, connection)
        return compiled

    def statement(self, **values: Any) -> tuple[str, list[Any]]:
        """The SQL and its parameters, to run or to fold into a statement of one's own."""
        self._check(values)
        return self.compiled().bind(values)

    def all(self, **values: Any) -> list[Model]:
        """The instances the query finds for ``values``, as the queryset would give them."""
        sql, params = self.statement(**values)
        compiled = self.compiled()
        if compiled.model is None:
            raise TypeError("prepared query: all() and first() need a queryset of models")
        cursor = reused_cursor()
        cursor.execute(sql, params)
        return compiled.instances(cursor.fetchall())

    def first(self, **values: Any) -> Model | None:
        """The first instance found, or None (the query states its own order and limit)."""
        found = self.all(**values)
        return found[0] if found else None

    def _check(self, values: dict[str, Any]) -> None:
        if values.keys() != self.kinds.keys():
            raise TypeError(
                f"prepared query takes {', '.join(self.kinds)}, was given {', '.join(values)}"
            )
        for name, value in values.items():
            if type(value) is not self.kinds[name] and not isinstance(value, SQL):
                raise TypeError(f"prepared query value {name}: {self.kinds[name].__name__}")


class OneRow:
    """Prepared queries of at most one row each, and EXISTS tests, read in one statement::

        read = OneRow()
        lot = read.query(LOTS, gtin=gtin, lot=lot_number)
        recalled = read.exists(RECALLED, batch_id=read.column(lot, "id"))
        (batch,), (is_recalled,) = read.run()

    Each query's row comes back as its instance, or None where it found no row. The statement
    is written once per connection for each shape (its queries and tests, and the SQL given as
    values); afterwards a read only binds the values.
    """

    def __init__(self) -> None:
        self._queries: list[tuple[PreparedQuery, dict[str, Any]]] = []
        self._tests: list[tuple[PreparedQuery, dict[str, Any]]] = []

    def query(self, query: PreparedQuery, **values: Any) -> int:
        query._check(values)
        self._queries.append((query, values))
        return len(self._queries) - 1

    def exists(self, query: PreparedQuery, **values: Any) -> int:
        query._check(values)
        self._tests.append((query, values))
        return len(self._tests) - 1

    def column(self, index: int, attname: str) -> SQL:
        """The column ``attname`` of query ``index``'s model, for a value of a later part."""
        compiled = self._queries[index][0].compiled()
        return SQL(f"q{index}.c{compiled.start + compiled.init_list.index(attname)}")

    def run(self) -> tuple[list[Model | None], list[bool]]:
        """The instances (or None) of the queries, in order, and the tests' answers."""
        connection = connections[DEFAULT_DB_ALIAS]
        parts = [(query.compiled(connection), values) for query, values in self._queries]
        tests = [(query.compiled(connection), values) for query, values in self._tests]
        shape = tuple(
            (compiled, tuple(sorted(item for item in values.items() if isinstance(item[1], SQL))))
            for compiled, values in parts + tests
        )
        statements = _kept(connection, "statements")
        sql = statements.get(shape)
        if sql is None:
            sql = statements[shape] = self._statement(parts, tests)
        params = [param for compiled, values in parts + tests for param in compiled.values(values)]
        cursor = reused_cursor(connection)
        cursor.execute(sql, params)
        row = cursor.fetchone()
        found: list[Model | None] = []
        at = 0
        for compiled, _ in parts:
            own = row[at : at + compiled.width]
            at += compiled.width
            found.append(None if own[compiled.pk_at] is None else compiled.instances([own])[0])
        return found, [bool(value) for value in row[at:]]

    @staticmethod
    def _statement(parts: list, tests: list) -> str:
        named = []
        for index, (compiled, values) in enumerate(parts):
            names = ", ".join(f"c{n}" for n in range(compiled.width))
            named.append(f"q{index}({names}) AS ({compiled.bind(values)[0]})")
        selected = [f"q{index}.*" for index in range(len(parts))]
        selected += [f"EXISTS ({compiled.bind(values)[0]})" for compiled, values in tests]
        joins = "".join(f" LEFT JOIN q{index} ON true" for index in range(len(parts)))
        # Only compiled SQL and names of our own go into the text; every value is a parameter.
        head = f"WITH {', '.join(named)} " if named else ""
        return f"{head}SELECT {', '.join(selected) or '1'} FROM (SELECT 1) AS one{joins}"  # noqa: S608
