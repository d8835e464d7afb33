"""Users act for one partner in one role, and are deactivated, never deleted."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from audit.history import HistoryBypassRefused
from partners.models import Role, User
from tests.factories import UserFactory


def test_users_are_never_deleted(db):
    user = UserFactory()
    with pytest.raises(HistoryBypassRefused):
        user.delete()
    assert User.objects.filter(pk=user.pk).exists()


def test_a_username_is_never_reused(db):
    UserFactory(username="jdoe")
    with pytest.raises(IntegrityError), transaction.atomic():
        UserFactory(username="jdoe")


def test_every_non_superuser_belongs_to_a_partner(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user(username="loose", password="x" * 12, role=Role.QA_OFFICER)


def test_changes_to_users_are_kept_in_history(db):
    user = UserFactory(role=Role.PARTNER_USER)
    user.role = Role.QA_OFFICER
    user.save()
    assert [v.role for v in user.history.order_by("history_id")][-1] == Role.QA_OFFICER
    assert not hasattr(user.history.latest(), "password")
