"""Lots: creation, date corrections and the QA status lifecycle."""

from __future__ import annotations

import datetime

import pytest

from batches import services
from batches.models import Batch, BatchStatus
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from tests.factories import TEST_PASSWORD, BatchFactory, ProductFactory

SIGNED = {BatchStatus.RELEASED: services.batch_release, BatchStatus.REJECTED: services.batch_reject}


@pytest.fixture
def product(network):
    return ProductFactory(manufacturer=network.manufacturer, shelf_life_months=24)


def create(network, product, **overrides):
    fields = {
        "product": product,
        "lot_number": "A123",
        "manufactured_on": datetime.date(2026, 3, 1),
        "expires_on": datetime.date(2028, 2, 29),
        "actor": network.qa,
        "reason": "lot registered from batch record BR-1",
    }
    return services.batch_create(**{**fields, **overrides})


def test_new_lot_starts_in_quarantine_with_history(network, product):
    lot = create(network, product)
    assert lot.status == BatchStatus.QUARANTINE
    first = lot.history.get()
    assert first.history_user == network.qa
    assert first.history_change_reason == "lot registered from batch record BR-1"


def test_duplicate_lot_is_refused(network, product):
    create(network, product)
    with pytest.raises(InvalidInput) as refusal:
        create(network, product)
    assert refusal.value.code == "duplicate_lot"
    assert Batch.objects.count() == 1


def test_same_lot_number_on_another_product_is_fine(network, product):
    create(network, product)
    create(network, ProductFactory(manufacturer=network.manufacturer))
    assert Batch.objects.count() == 2


@pytest.mark.parametrize(
    ("manufactured_on", "expires_on", "code"),
    [
        (datetime.date(2026, 3, 1), datetime.date(2026, 3, 1), "expiry_before_manufacture"),
        (datetime.date(2026, 3, 1), datetime.date(2025, 3, 1), "expiry_before_manufacture"),
        (datetime.date(2026, 3, 1), datetime.date(2028, 6, 30), "expiry_beyond_shelf_life"),
    ],
)
def test_impossible_dates_are_refused(network, product, manufactured_on, expires_on, code):
    with pytest.raises(InvalidInput) as refusal:
        create(network, product, manufactured_on=manufactured_on, expires_on=expires_on)
    assert refusal.value.code == code
    assert not Batch.objects.exists()


@pytest.mark.parametrize("lot_number", ["", "LOT 1", "x" * 21, "Ä1"])
def test_lot_number_must_be_gs1_characters(network, product, lot_number):
    with pytest.raises(InvalidInput):
        create(network, product, lot_number=lot_number)


def test_only_the_manufacturers_qa_or_admin_creates_lots(network, product):
    with pytest.raises(NotPermitted):
        create(network, product, actor=network.warehouse)
    with pytest.raises(NotPermitted):
        create(network, product, actor=network.wholesaler_qa)


def test_dates_of_a_quarantined_lot_can_be_corrected_with_a_reason(network, product):
    lot = create(network, product)
    services.batch_update_dates(
        batch=lot,
        expires_on=datetime.date(2027, 12, 31),
        actor=network.qa,
        reason="typo in batch record",
    )
    lot.refresh_from_db()
    assert lot.expires_on == datetime.date(2027, 12, 31)
    assert lot.history.latest().history_change_reason == "typo in batch record"


def test_released_lot_expiry_cannot_change(network, product):
    lot = create(network, product)
    services.batch_release(
        batch=lot, signer=network.qa, password=TEST_PASSWORD, reason="batch record reviewed"
    )
    with pytest.raises(RuleViolation) as refusal:
        services.batch_update_dates(
            batch=lot, expires_on=datetime.date(2027, 12, 31), actor=network.qa, reason="extend"
        )
    assert refusal.value.code == "batch_dates_locked"
    lot.refresh_from_db()
    assert lot.expires_on == datetime.date(2028, 2, 29)


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        (BatchStatus.QUARANTINE, BatchStatus.RELEASED, True),
        (BatchStatus.QUARANTINE, BatchStatus.REJECTED, True),
        (BatchStatus.RELEASED, BatchStatus.QUARANTINE, True),
        (BatchStatus.RELEASED, BatchStatus.RECALLED, True),
        (BatchStatus.QUARANTINE, BatchStatus.RECALLED, True),  # a lot under investigation
        (BatchStatus.REJECTED, BatchStatus.RELEASED, False),
        (BatchStatus.RECALLED, BatchStatus.RELEASED, False),
        (BatchStatus.RELEASED, BatchStatus.REJECTED, False),
    ],
)
def test_status_lifecycle(network, start, target, allowed):
    """Release and rejection go through the signed decisions; the rest through
    batch_change_status; both refuse a transition the lifecycle does not allow."""
    lot = BatchFactory(product=ProductFactory(manufacturer=network.manufacturer), status=start)

    def change():
        if target in SIGNED:
            SIGNED[target](batch=lot, signer=network.qa, password=TEST_PASSWORD, reason="QA")
        else:
            services.batch_change_status(batch=lot, to_status=target, actor=network.qa, reason="QA")

    if allowed:
        change()
        lot.refresh_from_db()
        assert lot.status == target
    else:
        with pytest.raises(RuleViolation) as refusal:
            change()
        assert refusal.value.code == "invalid_status_transition"


def test_status_change_needs_a_qa_officer(network, product):
    lot = BatchFactory(
        product=ProductFactory(manufacturer=network.manufacturer), status=BatchStatus.RELEASED
    )
    with pytest.raises(NotPermitted):
        services.batch_change_status(
            batch=lot, to_status=BatchStatus.QUARANTINE, actor=network.warehouse, reason="x"
        )


@pytest.mark.parametrize("target", [BatchStatus.RELEASED, BatchStatus.REJECTED])
def test_release_and_rejection_need_a_signature(network, product, target):
    """batch_change_status refuses the two decisions that need a QA e-signature."""
    lot = create(network, product)
    with pytest.raises(NotPermitted) as refusal:
        services.batch_change_status(batch=lot, to_status=target, actor=network.qa, reason="QA")
    assert refusal.value.code == "signature_required"
    lot.refresh_from_db()
    assert lot.status == BatchStatus.QUARANTINE


def test_product_gtin_is_validated_and_immutable(network):
    with pytest.raises(InvalidInput) as refusal:
        services.product_create(
            manufacturer=network.manufacturer,
            actor=network.qa,
            reason="new product",
            gtin="04000000000019",
            name="X",
            category="vaccine",
            dosage_form="tablet",
            strength="1 mg",
            pack_size=1,
            storage_class=ProductFactory().storage_class,
            shelf_life_months=12,
        )
    assert refusal.value.code == "invalid_gtin"
    product = ProductFactory(manufacturer=network.manufacturer)
    with pytest.raises(RuleViolation):
        services.product_update(
            product=product, actor=network.qa, reason="x", gtin="04000000000026"
        )
