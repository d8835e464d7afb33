"""The database itself refuses to change or delete a stock move, whatever the client."""

from django.db import migrations

# schema_editor.execute() passes parameters, so a literal % is written %%.
POSTGRES = """
CREATE OR REPLACE FUNCTION batches_stockmove_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'stock moves are append-only (%% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER batches_stockmove_append_only
    BEFORE UPDATE OR DELETE ON batches_stockmove
    FOR EACH ROW EXECUTE FUNCTION batches_stockmove_append_only();
CREATE TRIGGER batches_stockmove_no_truncate
    BEFORE TRUNCATE ON batches_stockmove
    FOR EACH STATEMENT EXECUTE FUNCTION batches_stockmove_append_only();
"""
POSTGRES_REVERSE = """
DROP TRIGGER IF EXISTS batches_stockmove_no_truncate ON batches_stockmove;
DROP TRIGGER IF EXISTS batches_stockmove_append_only ON batches_stockmove;
DROP FUNCTION IF EXISTS batches_stockmove_append_only();
"""
SQLITE = [
    """CREATE TRIGGER batches_stockmove_no_update BEFORE UPDATE ON batches_stockmove
       BEGIN SELECT RAISE(ABORT, 'stock moves are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER batches_stockmove_no_delete BEFORE DELETE ON batches_stockmove
       BEGIN SELECT RAISE(ABORT, 'stock moves are append-only (DELETE refused)'); END;""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS batches_stockmove_no_update;",
    "DROP TRIGGER IF EXISTS batches_stockmove_no_delete;",
]


def forwards(apps, schema_editor):
    statements = {"postgresql": [POSTGRES], "sqlite": SQLITE}.get(schema_editor.connection.vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps, schema_editor):
    statements = {"postgresql": [POSTGRES_REVERSE], "sqlite": SQLITE_REVERSE}.get(
        schema_editor.connection.vendor, []
    )
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("batches", "0002_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
