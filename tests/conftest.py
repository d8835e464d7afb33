"""Shared fixtures, and the rule that in CI nothing skips."""

from __future__ import annotations

import os

import pytest
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
def _fast_password_hashing(settings):
    """Hashing with PBKDF2 costs ~0.2 s a user; the tests check behaviour, not hash strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
