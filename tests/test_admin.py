"""The back office: every regulated model is listed with its history, edits need a reason."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from partners.models import Partner, User
from tests.factories import BatchFactory


@pytest.fixture
def operator(db):
    return User.objects.create_superuser("operator", "op@example.com", "a-long-password-1")


@pytest.fixture
def admin_client(client, operator):
    client.force_login(operator)
    return client


def test_every_registered_model_lists(admin_client):
    BatchFactory()
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert admin_client.get(url).status_code == 200, url


def test_history_page_shows_reason_and_user(admin_client):
    batch = BatchFactory()
    url = reverse("admin:batches_batch_history", args=[batch.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b"test fixture" in response.content


def test_edit_without_reason_is_refused_and_with_reason_is_recorded(admin_client, operator):
    partner = BatchFactory().product.manufacturer
    url = reverse("admin:partners_partner_change", args=[partner.pk])
    form = {
        "name": "Renamed Pharma",
        "kind": partner.kind,
        "gln": partner.gln,
        "region": partner.region,
        "contact_email": partner.contact_email,
        "contact_phone": partner.contact_phone,
        "gs1_company_prefix": "",
        "is_active": "on",
    }
    response = admin_client.post(url, {**form, "change_reason": ""})
    assert response.status_code == 200  # the form comes back with the error
    assert Partner.objects.get(pk=partner.pk).name != "Renamed Pharma"
    response = admin_client.post(url, {**form, "change_reason": "company renamed"})
    assert response.status_code == 302
    latest = Partner.objects.get(pk=partner.pk).history.latest()
    assert (latest.name, latest.history_change_reason, latest.history_user) == (
        "Renamed Pharma",
        "company renamed",
        operator,
    )


def test_nothing_regulated_can_be_deleted_in_the_admin(admin_client):
    batch = BatchFactory()
    response = admin_client.get(reverse("admin:batches_batch_delete", args=[batch.pk]))
    assert response.status_code == 403
