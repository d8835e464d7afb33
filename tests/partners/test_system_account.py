"""The platform's own account: the "who" of what the platform does by itself."""

from __future__ import annotations

import pytest

from partners.models import User
from partners.services import SYSTEM_USERNAME, system_account
from pharmadms.exceptions import NotPermitted
from tests.factories import UserFactory


def test_created_once_cannot_sign_in_and_records_its_own_creation(db):
    system = system_account()
    assert system_account().pk == system.pk
    assert system.is_superuser
    assert system.is_active
    assert not system.has_usable_password()
    assert system.partner_id is None
    created = User.history.get(id=system.pk, history_type="+")
    assert created.history_user_id == system.pk
    assert created.history_change_reason


def test_a_user_named_system_that_could_sign_in_is_never_acted_as(db):
    UserFactory(username=SYSTEM_USERNAME, partner=None, is_superuser=True)  # has a password
    with pytest.raises(NotPermitted) as refused:
        system_account()
    assert refused.value.code == "system_account_invalid"
