"""Database triggers that refuse UPDATE and DELETE on every append-only table.

The tables: every django-simple-history table, the audit chain, signatures, and models that
declare ``APPEND_ONLY = True`` (the stock ledger). Installed after every ``migrate``
(``post_migrate``), so a table added later is guarded as soon as it exists. The application
never changes these rows; a database owner who lifts a trigger is caught by ``audit_verify``.
"""

from __future__ import annotations

from django.apps import apps
from django.db import connection as default_connection

from .models import AuditEntry, ColumnSet

TRIGGER = "pharmadms_append_only"

POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% on %% is refused: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql
"""


def append_only_tables() -> list[str]:
    tables = {AuditEntry._meta.db_table, ColumnSet._meta.db_table}
    for model in apps.get_models():
        is_history = hasattr(model, "instance_type") and hasattr(model, "history_id")
        # APPEND_ONLY rows are sealed one by one; APPEND_ONLY_UNSEALED ones (telemetry) are not.
        if is_history or any(
            getattr(model, flag, False) for flag in ("APPEND_ONLY", "APPEND_ONLY_UNSEALED")
        ):
            tables.add(model._meta.db_table)
    return sorted(tables)


def install(connection=default_connection) -> None:
    """Create the guard triggers that are missing (idempotent)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # schema_editor-free cursor.execute with no params: a literal % stays as it is.
            cursor.execute(POSTGRES_FUNCTION.replace("%%", "%"))
            for table in append_only_tables():
                cursor.execute(
                    f"CREATE OR REPLACE TRIGGER {TRIGGER} BEFORE UPDATE OR DELETE ON {table}"
                    f" FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"
                )
                cursor.execute(
                    f"CREATE OR REPLACE TRIGGER {TRIGGER}_truncate BEFORE TRUNCATE ON {table}"
                    f" FOR EACH STATEMENT EXECUTE FUNCTION {TRIGGER}()"
                )
        elif connection.vendor == "sqlite":
            for table in append_only_tables():
                for operation in ("UPDATE", "DELETE"):
                    cursor.execute(
                        f"CREATE TRIGGER IF NOT EXISTS {TRIGGER}_{operation.lower()}_{table}"
                        f" BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT,"
                        f" '{operation} on {table} is refused: the table is append-only'); END"
                    )


def on_post_migrate(sender, using="default", **kwargs) -> None:
    from django.db import connections

    from .chain import record_column_sets
    from .models import ChainHead

    install(connections[using])
    ChainHead.objects.using(using).get_or_create(id=1, defaults={"head_hash": "0" * 64})
    record_column_sets(using)
