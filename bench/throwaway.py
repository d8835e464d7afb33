"""What every benchmark shares: Django set up for a run, and a database made for it and dropped.

Import this module first: it points Django at the project's settings (DEBUG off, since query
logging would slow every side), then ``throwaway_database()`` creates and migrates a database
of its own on whatever DATABASE_URL names (a temporary file for SQLite, ``<name>_throwaway_<pid>``
on PostgreSQL) and drops it afterwards, failure or not.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pharmadms.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-never-used-to-sign-anything-0123456789")

import django  # noqa: E402  (the environment above must be set first)

django.setup()

from django.db import connection  # noqa: E402


@contextlib.contextmanager
def throwaway_database(label: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pharmadms-bench-") as scratch:
        original_name = connection.settings_dict["NAME"]
        connection.settings_dict["TEST"]["NAME"] = (
            str(Path(scratch) / "bench.sqlite3")
            if connection.vendor == "sqlite"
            else f"{original_name}_throwaway_{os.getpid()}"
        )
        try:
            name = connection.creation.create_test_db(
                verbosity=0, autoclobber=True, serialize=False, keepdb=False
            )
            print(f"{label} bench on {connection.vendor} ({name}, dropped afterwards)")
            yield name
        finally:
            if connection.settings_dict["NAME"] != original_name:  # it was created: drop it
                connection.creation.destroy_test_db(original_name, verbosity=0)
