"""Whether a partner may receive a product on a date: the licence check every sale relies on."""

from __future__ import annotations

import datetime

import pytest

from partners import services
from partners.models import LicenceStatus, PartnerKind, ProductCategory
from partners.selectors import partner_may_receive
from pharmadms.exceptions import InvalidInput, NotPermitted
from tests.factories import LicenceFactory, PartnerFactory, ProductFactory

DAY = datetime.date(2026, 11, 28)


@pytest.fixture
def pharmacy(db):
    return PartnerFactory(kind=PartnerKind.PHARMACY, name="Apotheke am Markt")


@pytest.fixture
def vaccine(db):
    return ProductFactory(category=ProductCategory.VACCINE)


@pytest.fixture
def opioid(db):
    return ProductFactory(category=ProductCategory.SMALL_MOLECULE, controlled_schedule="CII")


def test_a_valid_licence_covering_the_category_allows(pharmacy, vaccine):
    licence = LicenceFactory(partner=pharmacy, product_categories=["vaccine"])
    decision = partner_may_receive(partner=pharmacy, product=vaccine, on=DAY)
    assert decision.allowed
    assert decision.licence == licence


def test_no_licence_refuses(pharmacy, vaccine):
    decision = partner_may_receive(partner=pharmacy, product=vaccine, on=DAY)
    assert (decision.allowed, decision.code) == (False, "no_valid_licence")


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "allowed"),
    [
        (datetime.date(2026, 11, 28), datetime.date(2026, 11, 28), True),  # bounds are inclusive
        (datetime.date(2026, 11, 29), datetime.date(2027, 1, 1), False),  # not yet valid
        (datetime.date(2020, 1, 1), datetime.date(2026, 11, 27), False),  # expired yesterday
    ],
)
def test_validity_period(pharmacy, vaccine, valid_from, valid_until, allowed):
    LicenceFactory(partner=pharmacy, valid_from=valid_from, valid_until=valid_until)
    assert partner_may_receive(partner=pharmacy, product=vaccine, on=DAY).allowed is allowed


def test_suspended_licence_does_not_count(pharmacy, vaccine):
    LicenceFactory(partner=pharmacy, status=LicenceStatus.SUSPENDED)
    assert partner_may_receive(partner=pharmacy, product=vaccine, on=DAY).code == "no_valid_licence"


def test_scope_must_cover_the_category(pharmacy, vaccine):
    LicenceFactory(partner=pharmacy, product_categories=["small_molecule"])
    decision = partner_may_receive(partner=pharmacy, product=vaccine, on=DAY)
    assert decision.code == "licence_scope_excludes_product"


def test_controlled_substances_need_a_licence_that_says_so(pharmacy, opioid):
    LicenceFactory(partner=pharmacy, product_categories=["small_molecule"])
    assert partner_may_receive(partner=pharmacy, product=opioid, on=DAY).code == (
        "licence_excludes_controlled"
    )
    LicenceFactory(
        partner=pharmacy, product_categories=["small_molecule"], covers_controlled_substances=True
    )
    assert partner_may_receive(partner=pharmacy, product=opioid, on=DAY).allowed


def test_inactive_partner_and_regulator_cannot_receive(db, vaccine):
    closed = PartnerFactory(kind=PartnerKind.PHARMACY, is_active=False)
    LicenceFactory(partner=closed)
    assert partner_may_receive(partner=closed, product=vaccine, on=DAY).code == "partner_inactive"
    agency = PartnerFactory(kind=PartnerKind.REGULATOR)
    assert partner_may_receive(partner=agency, product=vaccine, on=DAY).code == (
        "partner_cannot_hold_stock"
    )


def test_licence_service_validates_scope_and_period(network):
    with pytest.raises(InvalidInput):
        services.licence_create(
            partner=network.manufacturer,
            actor=network.qa,
            reason="new",
            number="X-1",
            kind="wholesale",
            issuing_authority="A",
            product_categories=["fireworks"],
            valid_from=DAY,
            valid_until=DAY,
        )
    with pytest.raises(InvalidInput):
        services.licence_create(
            partner=network.manufacturer,
            actor=network.qa,
            reason="new",
            number="X-2",
            kind="wholesale",
            issuing_authority="A",
            product_categories=["vaccine"],
            valid_from=DAY,
            valid_until=DAY - datetime.timedelta(days=1),
        )
    with pytest.raises(NotPermitted):
        services.licence_create(
            partner=network.wholesaler,
            actor=network.qa,
            reason="new",
            number="X-3",
            kind="wholesale",
            issuing_authority="A",
            product_categories=["vaccine"],
            valid_from=DAY,
            valid_until=DAY,
        )
    licence = services.licence_create(
        partner=network.manufacturer,
        actor=network.qa,
        reason="renewed authorisation",
        number="X-4",
        kind="manufacturing",
        issuing_authority="A",
        product_categories=["vaccine"],
        valid_from=DAY,
        valid_until=DAY + datetime.timedelta(days=365),
    )
    assert licence.history.get().history_change_reason == "renewed authorisation"
