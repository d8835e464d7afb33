"""Exports of the audit trail: CSV with every field of the filtered entries, and a PDF report
with the filter, the requester, the chain head and the signature manifestations."""

from __future__ import annotations

import base64
import csv
import datetime
import io
import re
import zlib

import pytest
from django.utils import timezone

from audit import selectors
from audit.exports import CSV_COLUMNS, entries_pdf
from audit.models import AuditEntry, ChainHead, SignatureMeaning
from audit.services import signature_sign
from tests.audit.test_viewer_api import ENTRIES, all_results, build_trail
from tests.conftest import client_for
from tests.factories import TEST_PASSWORD, UserFactory

EXPORT = f"{ENTRIES}export/"


@pytest.fixture
def trail(network):
    return build_trail(network)


def pdf_text(data: bytes) -> str:
    """The text drawn in a PDF made by reportlab, read from its (inflated) content streams.

    Enough for ASCII text: reportlab keeps ASCII readable even in embedded TrueType subsets.
    """
    chunks = []
    for raw in re.findall(rb"stream\r?\n(.*?)endstream", data, re.S):
        for decode in (
            lambda b: zlib.decompressobj().decompress(b),
            lambda b: zlib.decompressobj().decompress(base64.a85decode(b.strip(), adobe=True)),
            lambda b: b,
        ):
            try:
                chunks.append(decode(raw).decode("latin-1"))
                break
            except (ValueError, zlib.error):
                continue
    drawn = re.findall(r"\(((?:\\.|[^\\)])*)\)\s*Tj", "\n".join(chunks))
    return "\n".join(re.sub(r"\\(.)", r"\1", text) for text in drawn)


def read_csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


# --- CSV -------------------------------------------------------------------------------------


def test_csv_has_a_header_and_one_row_per_filtered_entry(trail, network):
    client = client_for(network.qa)
    query = f"model=batches.batch&object_id={trail.lot.pk}"

    response = client.get(f"{EXPORT}?format=csv&{query}")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    assert response["X-Export-Truncated"] == "false"
    header, *rows = read_csv(response)
    assert tuple(header) == CSV_COLUMNS
    listed = all_results(client, query)
    assert [int(row[0]) for row in rows] == [r["sequence"] for r in listed]
    assert [row[2] for row in rows] == ["created", "changed", "signed"]
    first = dict(zip(header, rows[0], strict=True))
    entry = AuditEntry.objects.get(sequence=int(first["sequence"]))
    assert first == {
        "sequence": str(entry.sequence),
        "occurred_at": entry.occurred_at.astimezone(datetime.UTC).isoformat(
            timespec="microseconds"
        ),
        "action": "created",
        "object_model": "batches.batch",
        "object_id": str(trail.lot.pk),
        "source": "batches.historicalbatch",
        "record_id": str(entry.record_id),
        "user_id": str(network.qa.pk),
        "username": "qa",
        "partner_id": str(network.manufacturer.pk),
        "reason": "production order PO-118",
        "content_hash": entry.content_hash,
        "previous_hash": entry.previous_hash,
        "entry_hash": entry.entry_hash,
        "payload": "",
    }
    assert first["occurred_at"].endswith("+00:00")


def test_csv_keeps_the_scope_of_the_requester(trail, network):
    rows = read_csv(client_for(network.wholesaler_qa).get(f"{EXPORT}?format=csv"))[1:]

    assert rows
    assert not [row for row in rows if row[9] == str(network.manufacturer.pk)]
    everything = read_csv(client_for(network.regulator).get(f"{EXPORT}?format=csv"))[1:]
    assert len(everything) == AuditEntry.objects.count()


def test_csv_is_utf8_and_keeps_reasons_verbatim(trail, network):
    from batches import services

    services.batch_update_dates(
        batch=trail.lot,
        actor=network.qa,
        reason='Chargenprotokoll geprüft, "Verfall" korrigiert; =SUM(A1)',
        expires_on=datetime.date(2027, 9, 1),
    )

    rows = read_csv(client_for(network.qa).get(f"{EXPORT}?format=csv&action=changed&user=qa"))

    assert rows[-1][10] == 'Chargenprotokoll geprüft, "Verfall" korrigiert; =SUM(A1)'


def test_an_export_over_the_limit_is_cut_and_says_so(trail, network, monkeypatch):
    monkeypatch.setattr(selectors, "EXPORT_LIMIT", 3)
    total = AuditEntry.objects.count()

    response = client_for(network.regulator).get(f"{EXPORT}?format=csv")

    assert response["X-Export-Truncated"] == "true"
    header, *rows = read_csv(response)
    assert len(rows) == 4
    assert rows[-1] == [
        f"# export cut at 3 of {total} matching entries (limit 3): narrow the filter to export "
        "the rest"
    ]
    pdf = client_for(network.regulator).get(f"{EXPORT}?format=pdf")
    assert pdf["X-Export-Truncated"] == "true"
    assert f"Export cut at 3 of {total} matching entries" in pdf_text(pdf.content)


def entries_pdf_uncompressed(network, *, query: dict) -> bytes:
    from audit.filters import AuditEntryFilter

    filterset = AuditEntryFilter(query, queryset=selectors.visible_entries(network.regulator))
    assert filterset.is_valid()
    data = selectors.export_entries(filterset.qs)
    return entries_pdf(
        data,
        filters=filterset.described(),
        generated_by=network.regulator,
        generated_at=timezone.now(),
        compress=False,
    )


@pytest.mark.parametrize("query", ["", "format=xlsx", "format=pdf&action=shredded"])
def test_export_refusals_are_json(trail, network, query):
    response = client_for(network.qa).get(f"{EXPORT}?{query}")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "invalid_choice"


@pytest.mark.parametrize("kind", ["csv", "pdf"])
def test_exports_are_for_auditors_only(trail, network, kind):
    response = client_for(network.warehouse).get(f"{EXPORT}?format={kind}")

    assert response.status_code == 403
    assert response.json()["code"] == "role_not_permitted"


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_reports_filter_requester_head_entries_and_signatures(trail, network):
    client = client_for(network.regulator)
    head = ChainHead.objects.get(pk=1)

    response = client.get(f"{EXPORT}?format=pdf&model=batches.batch&object_id={trail.lot.pk}")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].endswith('.pdf"')
    assert response.content.startswith(b"%PDF-")
    text = pdf_text(response.content)
    assert "Audit trail export" in text
    assert "Model (model) = batches.batch" in text
    assert f"Object id (object_id) = {trail.lot.pk}" in text
    assert f"{network.regulator.get_full_name()} (regulator)" in text
    assert f"#{head.sequence}" in text
    assert head.head_hash in text
    assert "production order PO-118" in text
    assert "expiry misread from the batch record" in text
    # the signature's manifestation: printed name, UTC time, meaning, reason, status
    assert "Signature manifestations" in text
    assert network.qa.get_full_name() in text
    assert "Reviewed" in text
    assert "batch record reviewed against the master formula" in text
    signed_at = trail.signature.signed_at.astimezone(datetime.UTC)
    assert f"{signed_at:%Y-%m-%d %H:%M:%S} UTC" in text
    assert "valid" in text


def test_pdf_without_compression_is_readable_as_is(trail, network):
    data = entries_pdf_uncompressed(network, query={"action": "signed"})

    assert data.startswith(b"%PDF-")
    assert b"(Action \\(action\\) = signed) Tj" in data  # the page streams are plain text
    text = pdf_text(data)
    assert "Action (action) = signed" in text
    assert network.qa.get_full_name() in text


def test_pdf_prints_names_outside_ascii_and_a_changed_signature(trail, network):
    from batches import services

    signer = UserFactory(
        username="lukasz",
        first_name="Łukasz",
        last_name="Dvořák-Øster",
        partner=network.manufacturer,
        role="qa_officer",
    )
    signature_sign(
        signer=signer,
        password=TEST_PASSWORD,
        meaning=SignatureMeaning.APPROVED,
        reason="zweite Prüfung",
        record=trail.lot,
    )
    services.batch_update_dates(
        batch=trail.lot,
        actor=network.qa,
        reason="changed after both signatures",
        expires_on=datetime.date(2027, 9, 1),
    )

    response = client_for(network.qa).get(f"{EXPORT}?format=pdf&model=batches.batch")

    assert response.status_code == 200
    text = pdf_text(response.content)
    assert "changed after signature" in text
    assert "Approved" in text


def test_empty_pdf_says_nothing_matched(trail, network):
    response = client_for(network.qa).get(f"{EXPORT}?format=pdf&user=nobody")

    text = pdf_text(response.content)
    assert "No entry matches the filter." in text
    assert "No signature on the exported records." in text
