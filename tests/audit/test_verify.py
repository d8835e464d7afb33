"""The chain verifies clean when untouched, and audit_verify / the API say so."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from audit.chain import verify
from audit.models import AuditEntry
from batches import services
from tests.conftest import client_for
from tests.factories import BatchFactory, ProductFactory


@pytest.fixture
def busy(network):
    lot = BatchFactory(product=ProductFactory(manufacturer=network.manufacturer))
    services.stock_receive(
        batch=lot,
        location=network.manufacturer_storage,
        quantity=9,
        actor=network.warehouse,
        reason="production output",
    )
    return lot


def test_every_write_is_sealed_and_the_chain_verifies(busy):
    result = verify()
    assert result.ok, result.as_dict()
    assert result.checked == AuditEntry.objects.count() > 0
    assert AuditEntry.objects.filter(source="batches.stockmove").count() == 1


def test_command_reports_an_intact_chain(busy, capsys):
    call_command("audit_verify")
    assert "audit chain intact" in capsys.readouterr().out


def test_anchor_round_trip(busy, tmp_path, capsys):
    anchor = tmp_path / "head.json"
    call_command("audit_anchor", output=anchor)
    head = json.loads(anchor.read_text())
    assert head["sequence"] == AuditEntry.objects.count()
    call_command("audit_verify", anchor=anchor)
    forged = {**head, "hash": "f" * 64}
    anchor.write_text(json.dumps(forged))
    with pytest.raises(CommandError, match="anchor_mismatch"):
        call_command("audit_verify", anchor=anchor)


def test_api_verify_is_for_auditors(busy, network):
    response = client_for(network.qa).get("/api/v1/audit/verify/")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert client_for(network.warehouse).get("/api/v1/audit/verify/").status_code == 403
    assert client_for(network.regulator).get("/api/v1/audit/verify/").status_code == 200
