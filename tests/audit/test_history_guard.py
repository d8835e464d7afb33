"""No code path writes a regulated model without history, a reason and an actor."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from audit.history import (
    HistoryBypassRefused,
    ReasonRequired,
    bulk_create_with_reason,
    bulk_update_with_reason,
    regulated_models,
    save_with_reason,
)
from batches.models import Batch
from partners.models import Licence, Location, Partner, Site
from tests.factories import BatchFactory, PartnerFactory, UserFactory, gln

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [
    "pharmadms",
    "audit",
    "partners",
    "batches",
    "orders",
    "coldchain",
    "recalls",
    "integrations",
]
# The only module allowed to call the bulk APIs: it wraps them with their history rows.
HISTORY_HELPERS = ROOT / "audit" / "history.py"
QUERYSET_METHODS = {
    "objects",
    "filter",
    "exclude",
    "all",
    "select_for_update",
    "select_related",
    "order_by",
    "using",
    "distinct",
    "_default_manager",
    "_base_manager",
}


def test_every_regulated_model_keeps_history():
    models = regulated_models()
    assert {Partner, Licence, Site, Location, Batch} <= set(models)
    for model in models:
        assert hasattr(model, "history"), f"{model._meta.label} has no HistoricalRecords"


def test_every_regulated_model_writes_history_with_its_seal():
    """Each model's history comes from audit.history.HistoricalRecords, which writes the version
    and its chain entry together (a plain simple-history declaration is still sealed, by the
    post_create_historical_record receiver, but in more round trips)."""
    from django.db.models.signals import post_save

    import audit.history

    for model in regulated_models():
        receivers = post_save._live_receivers(model)
        if isinstance(receivers, tuple):  # Django 5: (sync receivers, async receivers)
            receivers = [r for group in receivers for r in group]
        owners = [getattr(r, "__self__", None) for r in receivers]
        assert any(isinstance(o, audit.history.HistoricalRecords) for o in owners), (
            f"{model._meta.label}: declare history = audit.history.HistoricalRecords()"
        )


def test_history_written_with_its_seal_matches_the_orm_row(db):
    """The version written in one statement with its seal reads back, through the ORM, with
    exactly the content the chain sealed, and the chain verifies."""
    from audit.chain import content_hash, row_content, verify
    from audit.models import AuditEntry

    partner = PartnerFactory()
    partner.contact_phone = "+49 89 555 0100"
    actor = UserFactory(partner=partner)
    save_with_reason(partner, actor=actor, reason="phone changed", update_fields=["contact_phone"])
    version = Partner.history.filter(id=partner.pk).latest("history_id")
    entry = AuditEntry.objects.get(source="partners.historicalpartner", record_id=version.pk)
    assert version.contact_phone == "+49 89 555 0100"
    assert version.history_change_reason == "phone changed"
    assert entry.content_hash == content_hash(row_content(version))
    assert entry.action == "changed"
    assert entry.object_id == str(partner.pk)
    assert verify().ok


def test_save_without_reason_is_refused(db):
    partner = PartnerFactory()
    partner.name = "Renamed"
    with pytest.raises(ReasonRequired):
        partner.save()
    partner.refresh_from_db()
    assert partner.name != "Renamed"


def test_save_with_reason_records_user_and_reason(network):
    partner = network.wholesaler
    partner.contact_email = "orders@north.example.com"
    save_with_reason(
        partner, actor=network.admin, reason="contact changed", update_fields=["contact_email"]
    )
    latest = partner.history.latest()
    assert latest.history_user == network.admin
    assert latest.history_change_reason == "contact changed"
    assert latest.contact_email == "orders@north.example.com"


def test_reason_is_used_once(db):
    """A reason belongs to one save; the next change must state its own."""
    partner = PartnerFactory()
    partner._change_reason = "first"
    partner.save()
    with pytest.raises(ReasonRequired):
        partner.save()


@pytest.mark.parametrize("model", [Partner, Batch])
def test_bulk_and_queryset_writes_are_refused(db, model):
    with pytest.raises(HistoryBypassRefused):
        model.objects.all().update(pk=1)
    with pytest.raises(HistoryBypassRefused):
        model.objects.bulk_create([])
    with pytest.raises(HistoryBypassRefused):
        model.objects.bulk_update([], ["pk"])
    with pytest.raises(HistoryBypassRefused):
        model.objects.all().delete()


def test_regulated_rows_are_never_deleted(db):
    batch = BatchFactory()
    with pytest.raises(HistoryBypassRefused):
        batch.delete()
    assert Batch.objects.filter(pk=batch.pk).exists()


def test_history_aware_bulk_helpers_write_history(network):
    partners = [
        Partner(
            name=f"Pharmacy {n}",
            kind="pharmacy",
            gln=gln(900_000 + n),
            region="DE-BW",
            contact_email=f"p{n}@example.com",
            contact_phone="+49 711 000000",
        )
        for n in range(3)
    ]
    created = bulk_create_with_reason(partners, actor=network.admin, reason="import")
    assert all(p.history.count() == 1 for p in created)
    for partner in created:
        partner.region = "DE-BY"
    bulk_update_with_reason(created, ["region"], actor=network.admin, reason="regions merged")
    for partner in created:
        latest = partner.history.latest()
        assert (latest.region, latest.history_change_reason) == ("DE-BY", "regions merged")
        assert latest.history_user == network.admin
    with pytest.raises(ReasonRequired):
        bulk_update_with_reason(created, ["region"], actor=network.admin, reason="")


def _queryset_like(node: ast.expr) -> bool:
    """Whether an expression looks like a queryset or manager (x.objects, x.filter(...), ...)."""
    while isinstance(node, ast.Call):
        node = node.func
    return isinstance(node, ast.Attribute) and node.attr in QUERYSET_METHODS


def _bypasses(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        if name in {
            "bulk_create",
            "bulk_update",
            "bulk_create_with_history",
            "bulk_update_with_history",
            "update_or_create",
        } or (name == "update" and _queryset_like(node.func.value)):
            found.append(f"{path.relative_to(root)}:{node.lineno} {name}()")
    return found


# Writes that are allowed because their model is not regulated; each names why.
ALLOWED = {
    # StockBalance is the ledger's projection, written only by the ledger service in the same
    # transaction as the append-only StockMove that is its history.
    ("batches/services.py", "update"),
    ("batches/services.py", "bulk_create"),
    # ChainHead is the chain's single counter row, created once with INSERT … ON CONFLICT.
    ("audit/chain.py", "bulk_create"),
}


def test_no_code_writes_regulated_models_around_history():
    """Scan the source: bulk and queryset writes appear only in the history helpers, or on
    models that are not regulated (listed in ALLOWED with the reason)."""
    offenders = []
    for directory in SOURCE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            if path == HISTORY_HELPERS or "migrations" in path.parts:
                continue
            for hit in _bypasses(path):
                file, rest = hit.split(":", 1)
                call = rest.split(" ", 1)[1].rstrip("()")
                if (file, call) not in ALLOWED:
                    offenders.append(hit)
    assert offenders == []


def test_scanner_finds_a_bypass(tmp_path):
    """The scanner itself works: it flags the calls it is meant to flag."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "Batch.objects.filter(pk=1).update(status='released')\n"
        "Partner.objects.bulk_create([])\n"
        "settings.update({})\n"
    )
    hits = _bypasses(sample, root=tmp_path)
    assert [h.split(" ")[1] for h in hits] == ["update()", "bulk_create()"]
