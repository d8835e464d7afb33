"""Hold gates (batches.hooks): a registered check may come with a cheap gate; every gate is read
in one statement, and a check whose gate finds no row is not asked. Checks registered without a
gate are asked as before."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from batches import hooks
from batches.models import Batch
from tests.factories import BatchFactory

HELD = "HELD"


@pytest.fixture
def registry(monkeypatch):
    """An empty hold registry for one test (the project's own checks are put back after)."""
    monkeypatch.setattr(hooks, "_checks", [])
    monkeypatch.setattr(hooks, "_gates", {})
    return hooks


class Check:
    """A hold check that counts how often it is asked: lots named HELD… are held."""

    def __init__(self, code: str = "test_hold"):
        self.code, self.asked = code, 0

    def __call__(self, batch, location):
        self.asked += 1
        if batch.lot_number.startswith(HELD):
            return [hooks.Hold(self.code, f"lot {batch.lot_number} is held", "H-1")]
        return []


def held_lots_gate(batch_id):
    """The gate of Check: a row when the lot may be held (here: exactly when it is)."""
    return Batch.objects.filter(pk=batch_id, lot_number__startswith=HELD)


def test_a_gated_check_is_not_asked_when_its_gate_finds_nothing(registry, db):
    check = Check()
    registry.register_hold_check(check, gate=held_lots_gate)
    lot = BatchFactory(lot_number="FREE1")

    with CaptureQueriesContext(connection) as captured:
        assert registry.lot_holds(lot) == []

    assert check.asked == 0
    assert len(captured) == 1  # every gate in one statement


def test_a_gated_check_is_asked_when_its_gate_finds_a_row(registry, db):
    check = Check()
    registry.register_hold_check(check, gate=held_lots_gate)
    lot = BatchFactory(lot_number="HELD1")

    (hold,) = registry.lot_holds(lot)

    assert (hold.code, hold.reference, check.asked) == ("test_hold", "H-1", 1)


def test_a_check_without_a_gate_is_always_asked(registry, db):
    gated, ungated = Check("gated"), Check("ungated")
    registry.register_hold_check(gated, gate=held_lots_gate)
    registry.register_hold_check(ungated)

    assert registry.lot_holds(BatchFactory(lot_number="FREE2")) == []
    assert (gated.asked, ungated.asked) == (0, 1)
    held = registry.lot_holds(BatchFactory(lot_number="HELD2"))
    assert [hold.code for hold in held] == ["gated", "ungated"]  # in registration order


def test_every_gate_is_read_in_one_statement(registry, db):
    first, second, third = Check("first"), Check("second"), Check("third")
    registry.register_hold_check(first, gate=held_lots_gate)
    registry.register_hold_check(second, gate=held_lots_gate)
    registry.register_hold_check(third, gate=lambda batch_id: Batch.objects.none())

    lot = BatchFactory(lot_number="HELD3")

    with CaptureQueriesContext(connection) as captured:
        held = registry.lot_holds(lot)

    assert [hold.code for hold in held] == ["first", "second"]
    assert (first.asked, second.asked, third.asked) == (1, 1, 0)
    assert len(captured) == 1  # the checks themselves read nothing here


def test_registering_again_keeps_one_entry_and_may_add_the_gate(registry, db):
    check = Check()
    registry.register_hold_check(check)
    registry.register_hold_check(check, gate=held_lots_gate)
    registry.register_hold_check(check)

    assert registry._checks == [check]
    assert registry._gates == {check: held_lots_gate}
    assert registry.lot_holds(BatchFactory(lot_number="FREE4")) == []
    assert check.asked == 0


def test_no_gate_no_statement(registry, db):
    registry.register_hold_check(Check())
    lot = BatchFactory(lot_number="FREE5")
    with CaptureQueriesContext(connection) as captured:
        registry.lot_holds(lot)
    assert len(captured) == 0  # the check itself reads nothing here
