"""Shared fixtures, and the rule that in CI nothing skips."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def append_only_guard_lifted(connection):
    """Lift the triggers that keep history, the chain and the ledger append-only, then put them
    back. Only the test database's flush (which empties every table after a transactional test)
    and the tamper tests, which play a database owner, go through here."""
    from audit.append_only import TRIGGER, install

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE tgname = %s",
                [TRIGGER],
            )
            for (table,) in cursor.fetchall():
                cursor.execute(f"DROP TRIGGER {TRIGGER} ON {table}")
                cursor.execute(f"DROP TRIGGER {TRIGGER}_truncate ON {table}")
        elif connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                [f"{TRIGGER}%"],
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f"DROP TRIGGER {name}")
    try:
        yield
    finally:
        install(connection)


@pytest.fixture(autouse=True, scope="session")
def _append_only_guard_yields_to_test_flush():
    """Let Django's test flush empty the guarded tables; nothing else can (see above)."""
    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        with append_only_guard_lifted(self.connection):
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
def _tasks_in_process(request):
    """Run Celery tasks in-process, as the embedded default does, even when CI sets a broker:
    no worker consumes the test broker's default queue. Tests marked ``real_broker`` prove the
    broker path with a worker of their own."""
    from pharmadms.celery import app as celery_app

    if request.node.get_closest_marker("real_broker"):
        yield
        return
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _empty_cache():
    """Throttle counters live in the cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Hashing with PBKDF2 costs ~0.2 s a user; the tests check behaviour, not hash strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
