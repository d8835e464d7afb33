"""pharmadms.prepared: a queryset built once and run again gives what the queryset gives, and
OneRow reads several of them, and EXISTS tests, in one statement."""

from __future__ import annotations

import gc
import threading

import pytest
from django.db import DatabaseError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper as DatabaseWrapper
from django.db.models import FilteredRelation, Q
from django.test.utils import CaptureQueriesContext

from batches.models import Batch, Product
from batches.services import serial_commission
from partners.models import Location
from pharmadms.prepared import SQL, OneRow, PreparedQuery, reused_cursor
from tests.factories import BatchFactory, ProductFactory

LOT = PreparedQuery(
    lambda gtin, lot: (
        Batch.objects.select_related("product")
        .filter(product__gtin=gtin, lot_number=lot)
        .order_by()[:1]
    ),
    gtin=str,
    lot=str,
)
PACK = PreparedQuery(
    lambda batch_id, serial: (
        Batch.objects.filter(pk=batch_id)
        .annotate(pack=FilteredRelation("serials", condition=Q(serials__serial_number=serial)))
        .select_related("pack")
    ),
    batch_id=int,
    serial=str,
)
LOCATION = PreparedQuery(
    lambda location_id: Location.objects.select_related("site__partner").filter(pk=location_id),
    location_id=int,
)
PRODUCT_LOTS = PreparedQuery(
    lambda batch_id: Batch.objects.filter(pk=batch_id).values("pk"), batch_id=int
)


@pytest.fixture
def lot(network):
    return BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer, gtin="09501101530003"),
        lot_number="L1",
    )


def test_a_prepared_query_finds_what_the_queryset_finds(lot):
    found = LOT.first(gtin="09501101530003", lot="L1")
    again = LOT.first(gtin="09501101530003", lot="L1")

    assert found == again == lot
    assert found.product == lot.product  # read with it, as select_related does
    assert found.expires_on == lot.expires_on  # converted as the ORM converts
    assert LOT.first(gtin="09501101530003", lot="L2") is None
    assert LOT.all(gtin="00000000000000", lot="L1") == []


def test_it_is_built_once_per_connection_and_then_only_run(lot):
    LOT.first(gtin="09501101530003", lot="L1")
    built = LOT.compiled()
    with CaptureQueriesContext(connection) as captured:
        assert LOT.first(gtin="x", lot="y") is None
    assert LOT.compiled() is built
    assert len(captured) == 1


def test_a_filtered_relation_reads_the_pack_or_nothing(network, lot):
    serial_commission(batch=lot, serial_numbers=["S1"], actor=network.warehouse, reason="labels")

    with_pack = PACK.first(batch_id=lot.pk, serial="S1")
    without = PACK.first(batch_id=lot.pk, serial="S2")

    assert with_pack.pack.serial_number == "S1"
    assert getattr(without, "pack", None) is None


def test_values_are_checked_by_name_and_type(lot):
    with pytest.raises(TypeError, match="takes gtin, lot"):
        LOT.first(gtin="09501101530003")
    with pytest.raises(TypeError, match="lot: str"):
        LOT.first(gtin="09501101530003", lot=1)


def test_a_lookup_that_changes_its_value_cannot_be_prepared(db):
    query = PreparedQuery(lambda name: Product.objects.filter(name__icontains=name), name=str)
    with pytest.raises(ValueError, match="only exact comparisons"):
        query.first(name="vaccine")


def test_an_empty_query_needs_no_value(db):
    nothing = PreparedQuery(lambda batch_id: Batch.objects.none(), batch_id=int)
    assert nothing.statement(batch_id=1)[0]  # compiles (WHERE 0 = 1): a gate that finds nothing


def test_an_sql_value_goes_into_the_text(lot):
    sql, params = PRODUCT_LOTS.statement(batch_id=SQL("outer_id"))
    assert "outer_id" in sql
    assert params == []
    sql, params = PRODUCT_LOTS.statement(batch_id=lot.pk)
    assert params == [lot.pk]


def test_one_row_reads_queries_and_tests_in_one_statement(network, lot):
    read = OneRow()
    read.query(LOCATION, location_id=network.manufacturer_storage.pk)
    found_lot = read.query(LOT, gtin="09501101530003", lot="L1")
    exists = read.exists(PRODUCT_LOTS, batch_id=read.column(found_lot, "id"))
    missing = read.query(LOT, gtin="09501101530003", lot="NONE")
    nothing = read.exists(PRODUCT_LOTS, batch_id=read.column(missing, "id"))

    with CaptureQueriesContext(connection) as captured:
        (location, batch, absent), tests = read.run()

    assert len(captured) == 1
    assert location == network.manufacturer_storage
    assert location.site.partner == network.manufacturer  # select_related, two levels
    assert batch == lot
    assert batch.product == lot.product
    assert absent is None
    assert (tests[exists], tests[nothing]) == (True, False)


def test_one_row_with_nothing_found(db):
    read = OneRow()
    read.query(LOCATION, location_id=10**9)
    (location,), tests = read.run()
    assert (location, tests) == (None, [])


def test_one_row_writes_its_statement_once_per_shape_and_binds_each_read(network, lot):
    def lot_and_its_siblings(lot_number: str) -> OneRow:
        read = OneRow()
        found = read.query(LOT, gtin="09501101530003", lot=lot_number)
        read.exists(PRODUCT_LOTS, batch_id=read.column(found, "id"))
        return read

    (first,), (first_has_lots,) = lot_and_its_siblings("L1").run()
    known = dict(connections["default"]._prepared_statements)
    (second,), (second_has_lots,) = lot_and_its_siblings("NONE").run()

    assert (first, first_has_lots) == (lot, True)
    assert (second, second_has_lots) == (None, False)
    assert connections["default"]._prepared_statements == known  # the same shape: no new text


def test_the_reused_cursor_is_kept_per_connection_and_logged_as_django_logs(db):
    first, again = reused_cursor(), reused_cursor()
    assert first.cursor is again.cursor  # one psycopg (or sqlite3) cursor, wrapped anew

    with CaptureQueriesContext(connection) as captured:
        cursor = reused_cursor()
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1
    assert [query["sql"] for query in captured] == ["SELECT 1"]


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_gets_a_new_cursor_and_errors_are_djangos():
    before, raw_before = reused_cursor().cursor, connection.connection
    connection.close()
    after = reused_cursor().cursor
    # A new connection has a new cursor (Django keeps an in-memory SQLite database open).
    assert (after is before) == (connection.connection is raw_before)
    with pytest.raises(DatabaseError):
        reused_cursor().execute("SELECT no_such_column FROM no_such_table")
    cursor = reused_cursor()  # still usable after the error
    cursor.execute("SELECT 2")
    assert cursor.fetchone()[0] == 2


@pytest.mark.django_db(transaction=True)
def test_what_is_kept_for_a_connection_goes_with_it():
    """A server that runs each request in a thread of its own (runserver) leaves nothing behind:
    the compiled queries, statements and cursor are kept on the thread's connection."""

    def one_request():
        LOT.first(gtin="09501101530003", lot="L1")
        read = OneRow()
        read.query(LOCATION, location_id=1)
        read.run()
        connections.close_all()

    for _ in range(3):  # the first ones may build what is shared
        one_request_in_a_thread(one_request)
    gc.collect()
    before = connection_objects()
    for _ in range(20):
        one_request_in_a_thread(one_request)
    gc.collect()
    after = connection_objects()
    assert after <= before


def one_request_in_a_thread(work) -> None:
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


def connection_objects() -> int:
    # type(), not isinstance(): the heap may hold dead weak proxies, which refuse attributes.
    return sum(issubclass(type(found), DatabaseWrapper) for found in gc.get_objects())
