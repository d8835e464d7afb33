"""The trace's covering indexes on PostgreSQL (recalls/selectors.py, docs/architecture.md).

The recursive trace reads every shipment line of a lot with its shipment's status and its
order's seller and buyer. With these three indexes PostgreSQL answers that from the indexes
alone (index-only scans, nested loops): about 2.5 ms for a lot of 1000 lines over 200 000,
against 15 to 35 ms through a sequential scan and hash of every shipment, which is the plan
it takes without them. They belong to the trace, so the recalls app creates them; the tables
stay the orders app's. Built CONCURRENTLY (outside a transaction) so a production database
keeps taking orders while they build. SQLite takes the per-tier path and has no INCLUDE.
"""

from django.db import migrations

INDEXES = {
    "recalls_trace_line_lot": (
        "orders_shipmentline",
        "(batch_id) INCLUDE (shipment_id, quantity, received_quantity, damaged_quantity)",
    ),
    "recalls_trace_shipment": ("orders_shipment", "(id) INCLUDE (order_id, status)"),
    "recalls_trace_order": ("orders_order", "(id) INCLUDE (seller_id, buyer_id)"),
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (table, columns) in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {columns}"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("recalls", "0001_initial"),
        ("orders", "0004_picking_packages_delivery"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
