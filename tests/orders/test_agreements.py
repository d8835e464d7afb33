"""Agreements: who makes them, what they hold, and which one is in force on a day."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from audit import chain
from orders import services
from orders.models import Agreement, AgreementPrice, AgreementStatus, SalesTarget
from orders.selectors import agreement_in_force
from partners.models import Role
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from tests.factories import UserFactory

D = datetime.date


def counts() -> tuple[int, int, int, int]:
    return (
        Agreement.objects.count(),
        AgreementPrice.objects.count(),
        SalesTarget.objects.count(),
        Agreement.history.count() + AgreementPrice.history.count() + SalesTarget.history.count(),
    )


def make(t, **overrides) -> Agreement:
    fields = {
        "supplier": t.seller,
        "customer": t.net.other,
        "territory": ["DE-BY", "AT"],
        "valid_from": D(2027, 1, 1),
        "valid_until": D(2027, 12, 31),
        "min_remaining_shelf_life_days": 120,
        "actor": t.seller_desk,
        "reason": "annual contract",
    }
    fields.update(overrides)
    return services.agreement_create(**fields)


def test_the_suppliers_order_desk_makes_an_agreement_with_history(trade):
    """The agreement is stored as given, and its first version names the user and the reason."""
    agreement = make(trade)
    assert agreement.status == AgreementStatus.ACTIVE
    assert agreement.territory == ["DE-BY", "AT"]
    first = agreement.history.get()
    assert (first.history_user, first.history_change_reason) == (
        trade.seller_desk,
        "annual contract",
    )
    assert chain.verify().ok


@pytest.mark.parametrize("role", [Role.PARTNER_USER, Role.QA_OFFICER, Role.WAREHOUSE_OPERATOR])
def test_other_roles_of_the_supplier_cannot_make_agreements(trade, role):
    user = UserFactory(partner=trade.seller, role=role)
    before = counts()
    with pytest.raises(NotPermitted) as refused:
        make(trade, actor=user)
    assert refused.value.code == "role_not_permitted"
    assert counts() == before


def test_the_customer_cannot_make_the_suppliers_agreement(trade):
    before = counts()
    with pytest.raises(NotPermitted) as refused:
        make(trade, actor=trade.buyer_desk)
    assert refused.value.code == "not_a_party"
    assert counts() == before


def test_a_superuser_may_make_an_agreement(trade):
    root = UserFactory(partner=None, is_superuser=True, is_staff=True)
    assert make(trade, actor=root).supplier == trade.seller


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"valid_until": D(2026, 12, 31)}, "invalid_period"),
        ({"territory": []}, "invalid_territory"),
        ({"territory": "DE"}, "invalid_territory"),
        ({"territory": ["DE", ""]}, "invalid_territory"),
        ({"reason": " "}, "reason_required"),
    ],
)
def test_bad_agreements_are_refused_and_nothing_is_written(trade, overrides, code):
    before = counts()
    with pytest.raises(InvalidInput) as refused:
        make(trade, **overrides)
    assert refused.value.code == code
    assert counts() == before


def test_a_regulator_is_no_party_to_an_agreement(trade):
    with pytest.raises(RuleViolation) as refused:
        make(trade, customer=trade.net.regulator_partner)
    assert refused.value.code == "not_a_trading_partner"


def test_two_agreements_of_one_pair_never_overlap(trade):
    make(trade)
    before = counts()
    with pytest.raises(RuleViolation) as refused:
        make(trade, valid_from=D(2027, 6, 1), valid_until=D(2028, 5, 31))
    assert refused.value.code == "overlapping_agreement"
    assert counts() == before
    # the next year is fine
    make(trade, valid_from=D(2028, 1, 1), valid_until=D(2028, 12, 31))


def test_the_agreement_in_force_is_active_and_valid_that_day(trade):
    agreement = make(trade)
    other = trade.net.other
    assert agreement_in_force(supplier=trade.seller, customer=other, on=D(2026, 12, 31)) is None
    assert agreement_in_force(supplier=trade.seller, customer=other, on=D(2027, 1, 1)) == agreement
    assert agreement_in_force(supplier=trade.seller, customer=other, on=D(2027, 12, 31)) == (
        agreement
    )
    assert agreement_in_force(supplier=trade.seller, customer=other, on=D(2028, 1, 1)) is None
    # the reverse direction is another agreement
    assert agreement_in_force(supplier=other, customer=trade.seller, on=D(2027, 6, 1)) is None
    services.agreement_update(
        agreement=agreement, actor=trade.seller_desk, reason="payment overdue", status="suspended"
    )
    assert agreement_in_force(supplier=trade.seller, customer=other, on=D(2027, 6, 1)) is None


def test_an_ended_agreement_is_final(trade):
    agreement = make(trade)
    services.agreement_update(
        agreement=agreement, actor=trade.seller_desk, reason="terminated", status="ended"
    )
    with pytest.raises(RuleViolation) as refused:
        services.agreement_update(
            agreement=agreement, actor=trade.seller_desk, reason="oops", status="active"
        )
    assert refused.value.code == "agreement_ended"
    assert agreement.history.count() == 2


def test_only_its_terms_and_status_can_be_changed(trade):
    agreement = make(trade)
    with pytest.raises(InvalidInput) as refused:
        services.agreement_update(
            agreement=agreement, actor=trade.seller_desk, reason="x", customer=trade.buyer
        )
    assert refused.value.code == "field_not_editable"


def test_setting_a_price_creates_then_changes_it_with_history(trade):
    agreement = make(trade)
    price = services.agreement_set_price(
        agreement=agreement,
        product=trade.vaccine,
        unit_price=Decimal("10.00"),
        currency="EUR",
        actor=trade.seller_desk,
        reason="price list 2027",
    )
    changed = services.agreement_set_price(
        agreement=agreement,
        product=trade.vaccine,
        unit_price=Decimal("11.2500"),
        currency="EUR",
        actor=trade.seller_desk,
        reason="index clause",
    )
    assert changed.pk == price.pk
    assert AgreementPrice.objects.get(pk=price.pk).unit_price == Decimal("11.2500")
    reasons = list(
        price.history.order_by("history_id").values_list("history_change_reason", flat=True)
    )
    assert reasons == ["price list 2027", "index clause"]


@pytest.mark.parametrize(
    ("unit_price", "currency", "code"),
    [
        (Decimal("0"), "EUR", "invalid_price"),
        (Decimal("-1"), "EUR", "invalid_price"),
        (Decimal("1.00001"), "EUR", "invalid_price"),
        (Decimal("NaN"), "EUR", "invalid_price"),
        (Decimal("1"), "eur", "invalid_currency"),
        (Decimal("1"), "EURO", "invalid_currency"),
    ],
)
def test_bad_prices_are_refused(trade, unit_price, currency, code):
    agreement = make(trade)
    before = counts()
    with pytest.raises(InvalidInput) as refused:
        services.agreement_set_price(
            agreement=agreement,
            product=trade.vaccine,
            unit_price=unit_price,
            currency=currency,
            actor=trade.seller_desk,
            reason="price",
        )
    assert refused.value.code == code
    assert counts() == before


def test_one_agreement_prices_in_one_currency(trade):
    with pytest.raises(RuleViolation) as refused:
        services.agreement_set_price(
            agreement=trade.agreement,
            product=trade.unpriced,
            unit_price=Decimal("1"),
            currency="USD",
            actor=trade.seller_desk,
            reason="price",
        )
    assert refused.value.code == "currency_mismatch"


def test_the_database_refuses_a_second_price_or_a_price_of_zero(trade):
    with pytest.raises(IntegrityError), transaction.atomic():
        AgreementPrice(
            agreement=trade.agreement, product=trade.vaccine, unit_price=1, currency="EUR"
        ).save_base()
    with pytest.raises(IntegrityError), transaction.atomic():
        AgreementPrice(
            agreement=trade.agreement, product=trade.unpriced, unit_price=0, currency="EUR"
        ).save_base()


def test_sales_targets_by_quantity_value_or_both(trade):
    target = services.sales_target_set(
        agreement=trade.agreement,
        period_start=D(2027, 1, 1),
        period_end=D(2027, 3, 31),
        product=trade.vaccine,
        target_quantity=1000,
        actor=trade.seller_desk,
        reason="Q1 plan",
    )
    again = services.sales_target_set(
        agreement=trade.agreement,
        period_start=D(2027, 1, 1),
        period_end=D(2027, 3, 31),
        product=trade.vaccine,
        target_quantity=1200,
        target_value=Decimal("15000.00"),
        actor=trade.seller_desk,
        reason="Q1 plan raised",
    )
    assert again.pk == target.pk
    assert (again.target_quantity, again.target_value) == (1200, Decimal("15000.00"))
    whole = services.sales_target_set(
        agreement=trade.agreement,
        period_start=D(2027, 1, 1),
        period_end=D(2027, 12, 31),
        target_value=Decimal("90000"),
        actor=trade.seller_desk,
        reason="annual",
    )
    assert whole.product is None
    assert SalesTarget.objects.count() == 2


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "target_required"),
        ({"target_quantity": 0}, "min_value"),
        ({"target_value": Decimal("-5")}, "min_value"),
        ({"target_quantity": 5, "period_end": D(2026, 12, 1)}, "invalid_period"),
    ],
)
def test_bad_targets_are_refused(trade, fields, code):
    before = counts()
    arguments = {
        "agreement": trade.agreement,
        "period_start": D(2027, 1, 1),
        "period_end": D(2027, 3, 31),
        "actor": trade.seller_desk,
        "reason": "plan",
        **fields,
    }
    with pytest.raises(InvalidInput) as refused:
        services.sales_target_set(**arguments)
    assert refused.value.code == code
    assert counts() == before


def test_the_customer_cannot_set_prices_or_targets(trade):
    with pytest.raises(NotPermitted):
        services.agreement_set_price(
            agreement=trade.agreement,
            product=trade.vaccine,
            unit_price=Decimal("0.01"),
            currency="EUR",
            actor=trade.buyer_desk,
            reason="a discount, please",
        )
    with pytest.raises(NotPermitted):
        services.sales_target_set(
            agreement=trade.agreement,
            period_start=D(2027, 1, 1),
            period_end=D(2027, 3, 31),
            target_quantity=1,
            actor=trade.buyer_desk,
            reason="easy target",
        )
