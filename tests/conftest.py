"""Shared fixtures, and the rule that in CI nothing skips."""

from __future__ import annotations

import contextlib
import importlib
import os

import pytest
from django.db.backends.base.operations import BaseDatabaseOperations
from rest_framework.test import APIClient

from partners.models import PartnerKind, Role
from tests.factories import LocationFactory, PartnerFactory, SiteFactory, UserFactory

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test fails: every real service must be there."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, where nothing may skip: {reason}"


_LEDGER_GUARD = importlib.import_module("batches.migrations.0003_stockmove_append_only")


@contextlib.contextmanager
def ledger_guard_lifted(connection):
    """Lift, for one statement list, the triggers that keep batches_stockmove append-only.

    Only the test database's flush (which empties every table after a transactional test:
    TRUNCATE on PostgreSQL, DELETE on SQLite) goes through here; the guards are back on before
    the next statement of any test.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'batches_stockmove'::regclass"
                " AND tgname LIKE 'batches_stockmove_%%' AND tgenabled <> 'D'"
            )
            names = [row[0] for row in cursor.fetchall()]
            lift = [f"ALTER TABLE batches_stockmove DISABLE TRIGGER {n}" for n in names]
            restore = [f"ALTER TABLE batches_stockmove ENABLE TRIGGER {n}" for n in names]
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                " AND tbl_name = 'batches_stockmove'"
            )
            names = {row[0] for row in cursor.fetchall()}
            lift = [f"DROP TRIGGER {n}" for n in sorted(names)]
            restore = [sql for sql in _LEDGER_GUARD.SQLITE if any(n in sql for n in names)]
        else:
            lift = restore = []
        for statement in lift:
            cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in restore:
                cursor.execute(statement)


@pytest.fixture(autouse=True, scope="session")
def _ledger_guard_yields_to_test_flush():
    """Let Django's test flush empty the ledger; nothing else ever can (see ledger_guard_lifted)."""
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        with ledger_guard_lifted(self.connection):
            return original(self, sql_list)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = original


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


class Network:
    """The partners, sites, locations and users of a small test network."""


@pytest.fixture
def network(db):
    """A manufacturer and two wholesalers, each with a site, storage and quarantine locations,
    and one user per role that matters."""
    return build_network()


def build_network() -> Network:
    net = Network()
    net.manufacturer = PartnerFactory(name="Acme Pharma", kind=PartnerKind.MANUFACTURER)
    net.wholesaler = PartnerFactory(name="North Wholesale", kind=PartnerKind.WHOLESALER)
    net.other = PartnerFactory(name="South Wholesale", kind=PartnerKind.WHOLESALER)
    net.regulator_partner = PartnerFactory(name="Agency", kind=PartnerKind.REGULATOR)
    for name in ("manufacturer", "wholesaler", "other"):
        partner = getattr(net, name)
        site = SiteFactory(partner=partner)
        setattr(net, f"{name}_site", site)
        setattr(net, f"{name}_storage", LocationFactory(site=site, code="STORE"))
        setattr(
            net, f"{name}_quarantine", LocationFactory(site=site, code="QUAR", kind="quarantine")
        )
    net.qa = UserFactory(username="qa", partner=net.manufacturer, role=Role.QA_OFFICER)
    net.warehouse = UserFactory(
        username="warehouse", partner=net.manufacturer, role=Role.WAREHOUSE_OPERATOR
    )
    net.admin = UserFactory(username="mfadmin", partner=net.manufacturer, role=Role.ADMIN)
    net.wholesaler_qa = UserFactory(username="wqa", partner=net.wholesaler, role=Role.QA_OFFICER)
    net.other_user = UserFactory(username="other", partner=net.other, role=Role.PARTNER_USER)
    net.regulator = UserFactory(
        username="regulator", partner=net.regulator_partner, role=Role.REGULATOR
    )
    return net


@pytest.fixture(autouse=True)
def _empty_cache():
    """Throttle counters live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Hashing with PBKDF2 costs ~0.2 s a user; the tests check behaviour, not hash strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
