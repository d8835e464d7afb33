"""The audit trail as files for inspectors: CSV (every field, for tools) and PDF (for people)."""

from __future__ import annotations

import csv
import datetime
import io
import json
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from .selectors import ExportData

CSV_COLUMNS = (
    "sequence",
    "occurred_at",
    "action",
    "object_model",
    "object_id",
    "source",
    "record_id",
    "user_id",
    "username",
    "partner_id",
    "reason",
    "content_hash",
    "previous_hash",
    "entry_hash",
    "payload",
)


def utc(moment: datetime.datetime) -> datetime.datetime:
    return moment.astimezone(datetime.UTC)


def utc_text(moment: datetime.datetime) -> str:
    """A time as people read it in an export: always UTC, and saying so."""
    return f"{utc(moment):%Y-%m-%d %H:%M:%S} UTC"


def export_filename(extension: str, generated_at: datetime.datetime) -> str:
    return f"audit-trail-{utc(generated_at):%Y%m%dT%H%M%SZ}.{extension}"


def truncation_note(export: ExportData) -> str:
    return (
        f"export cut at {len(export.entries):,} of {export.total:,} matching entries "
        f"(limit {export.limit:,}): narrow the filter to export the rest"
    )


# --- CSV -----------------------------------------------------------------------------------


def entries_csv(export: ExportData) -> bytes:
    """One header row, then one row per entry with every field as stored (times in UTC, ISO 8601).

    Values are written exactly as recorded, including reasons that begin with ``=`` or ``+``:
    the export is a true copy whose hashes can be recomputed, so a spreadsheet user should
    import it as text rather than open it directly. When the export was cut, a last row
    starting with ``#`` says so.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in export.entries:
        writer.writerow(
            [
                entry.sequence,
                utc(entry.occurred_at).isoformat(timespec="microseconds"),
                entry.action,
                entry.object_model,
                entry.object_id,
                entry.source,
                "" if entry.record_id is None else entry.record_id,
                "" if entry.user_id is None else entry.user_id,
                entry.username,
                "" if entry.partner_id is None else entry.partner_id,
                entry.reason,
                entry.content_hash,
                entry.previous_hash,
                entry.entry_hash,
                ""
                if entry.payload is None
                else json.dumps(entry.payload, sort_keys=True, ensure_ascii=False),
            ]
        )
    if export.truncated:
        writer.writerow([f"# {truncation_note(export)}"])
    return buffer.getvalue().encode("utf-8")


# --- PDF -----------------------------------------------------------------------------------

# A Unicode font, so that names such as Łukasz or Dvořák print as written: Debian's DejaVu when
# the machine has it, else the Bitstream Vera that ships inside reportlab (Latin-1).
_FONT_CANDIDATES = (
    (
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    ),
    (
        Path(rl_config.__file__).parent / "fonts" / "Vera.ttf",
        Path(rl_config.__file__).parent / "fonts" / "VeraBd.ttf",
    ),
)
MONO = "Courier"  # hashes are hexadecimal ASCII: a standard font is enough


@cache
def _fonts() -> tuple[str, str]:
    for regular, bold in _FONT_CANDIDATES:
        if regular.exists() and bold.exists():
            pdfmetrics.registerFont(TTFont("AuditSans", str(regular)))
            pdfmetrics.registerFont(TTFont("AuditSans-Bold", str(bold)))
            return "AuditSans", "AuditSans-Bold"
    return "Helvetica", "Helvetica-Bold"


def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = _fonts()
    base = ParagraphStyle("base", fontName=regular, fontSize=7.5, leading=9, alignment=TA_LEFT)
    return {
        "title": ParagraphStyle("title", parent=base, fontName=bold, fontSize=16, leading=20),
        "h2": ParagraphStyle("h2", parent=base, fontName=bold, fontSize=11, leading=14),
        "meta": ParagraphStyle("meta", parent=base, fontSize=8.5, leading=11),
        "meta_key": ParagraphStyle("meta_key", parent=base, fontName=bold, fontSize=8.5),
        "cell": base,
        "head": ParagraphStyle("head", parent=base, fontName=bold, textColor=colors.white),
        "hash": ParagraphStyle("hash", parent=base, fontName=MONO, fontSize=6.5, leading=8),
        "warn": ParagraphStyle(
            "warn", parent=base, fontName=bold, fontSize=9, textColor=colors.HexColor("#b42318")
        ),
    }


def _p(text: Any, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)


def _hash_lines(value: str, separator: str = "<br/>") -> str:
    """A 64-digit hash on two lines of 32, so the column stays narrow and the hash complete."""
    return separator.join(value[i : i + 32] for i in range(0, len(value), 32))


TABLE_STYLE = [
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#12324a")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c5d0da")),
    ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f3f6f9")]),
    ("LEFTPADDING", (0, 0), (-1, -1), 3),
    ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ("TOPPADDING", (0, 0), (-1, -1), 2),
    ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
]


def _detail(entry) -> str:
    """The reason, and for an access event what the event recorded."""
    if entry.payload is None:
        return entry.reason
    payload = json.dumps(entry.payload, sort_keys=True, ensure_ascii=False)
    return f"{entry.reason}\n{payload}" if entry.reason else payload


# Rows per table: a table re-measures the rows left at each page break, so one table of 10,000
# rows costs quadratic time (8 s); tables of a few pages each keep the export linear (~2 s).
ROWS_PER_TABLE = 200


def _entries_tables(export: ExportData, styles, width: float) -> list[LongTable]:
    head = ["#", "Occurred (UTC)", "Action", "Record", "User", "Reason / detail", "Entry hash"]
    widths = [w * width for w in (0.06, 0.12, 0.07, 0.14, 0.09, 0.35, 0.17)]
    header = [_p(h, styles["head"]) for h in head]
    font, size = styles["cell"].fontName, styles["cell"].fontSize
    style = TableStyle(
        [
            *TABLE_STYLE,
            ("FONT", (0, 1), (-2, -1), font, size, styles["cell"].leading),
            ("FONT", (-1, 1), (-1, -1), MONO, 6.5, 8),
        ]
    )
    # Cells are plain text wrapped here, not Paragraphs: a Paragraph per cell is several times
    # slower to lay out.
    wrap = _wrapper(font, size)
    rows = [
        [
            str(entry.sequence),
            f"{utc(entry.occurred_at):%Y-%m-%d %H:%M:%S}",
            entry.action,
            wrap(f"{entry.object_model} {entry.object_id}".strip(), widths[3]),
            wrap(entry.username or "—", widths[4]),
            wrap(_detail(entry) or "—", widths[5]),
            _hash_lines(entry.entry_hash, "\n"),
        ]
        for entry in export.entries
    ]
    tables = []
    for start in range(0, len(rows), ROWS_PER_TABLE):
        chunk = [header, *rows[start : start + ROWS_PER_TABLE]]
        table = LongTable(chunk, colWidths=widths, repeatRows=1, hAlign="LEFT")
        table.setStyle(style)
        tables.append(table)
    return tables


def _wrapper(font: str, size: float):
    padding = 6  # the cell's left and right padding (TABLE_STYLE)

    def wrap(text: str, width: float) -> str:
        lines = []
        for paragraph in str(text).splitlines() or [""]:
            lines += simpleSplit(paragraph, font, size, width - padding) or [""]
        return "\n".join(lines)

    return wrap


def _signatures_table(export: ExportData, styles, width: float) -> Table:
    head = ["Printed name", "Signed (UTC)", "Meaning", "Reason", "Record", "Status", "Sealed #"]
    widths = [0.15, 0.14, 0.11, 0.25, 0.13, 0.15, 0.07]
    rows: list[list[Any]] = [[_p(h, styles["head"]) for h in head]]
    cell = styles["cell"]
    for signature in export.signatures:
        rows.append(
            [
                _p(signature.printed_name, cell),
                _p(utc_text(signature.signed_at), cell),
                _p(signature.get_meaning_display(), cell),
                _p(signature.reason, cell),
                _p(f"{signature.object_model} {signature.object_id}", cell),
                _p(signature.status, cell),
                _p(signature.sealed_sequence or "—", cell),
            ]
        )
    table = LongTable(rows, colWidths=[w * width for w in widths], repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle(TABLE_STYLE))
    return table


def _who(user) -> str:
    name = user.get_full_name() or user.username
    role = user.get_role_display() if hasattr(user, "get_role_display") else ""
    partner = getattr(getattr(user, "partner", None), "name", "")
    parts = [f"{name} ({user.username})", role, partner]
    return ", ".join(part for part in parts if part)


def entries_pdf(
    export: ExportData,
    *,
    filters: list[tuple[str, str]],
    generated_by,
    generated_at: datetime.datetime,
    compress: bool = True,
) -> bytes:
    """A PDF report: what was asked, by whom and when, the chain head, the entries, signatures.

    Every time is printed in UTC and says so. ``compress=False`` leaves the page streams
    readable, for tests and for anyone checking the file with a text editor.
    """
    styles = _styles()
    buffer = io.BytesIO()
    page = landscape(A4)
    margin = 12 * mm
    who = _who(generated_by)
    stamp = utc_text(generated_at)
    doc = SimpleDocTemplate(
        buffer,
        pagesize=page,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin + 4 * mm,
        title="Audit trail export",
        author=who,
        subject=f"PharmaDMS audit trail, generated {stamp}",
        creator="PharmaDMS",
        pageCompression=1 if compress else 0,
    )
    width = page[0] - 2 * margin
    regular, _ = _fonts()

    def footer(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(regular, 7)
        canvas.setFillColor(colors.HexColor("#5b6b7a"))
        canvas.drawString(
            margin, margin - 2 * mm, f"PharmaDMS audit trail · generated {stamp} by {who}"
        )
        canvas.drawRightString(page[0] - margin, margin - 2 * mm, f"page {document.page}")
        canvas.restoreState()

    filter_text = (
        "; ".join(f"{label} = {value}" for label, value in filters)
        if filters
        else "none: every entry visible to the requester"
    )
    shown = f"{len(export.entries):,}"
    counted = shown if not export.truncated else f"{shown} of {export.total:,} matching"
    meta = [
        ("Generated at", stamp),
        ("Generated by", who),
        ("Filter", filter_text),
        ("Chain head at export", f"#{export.head_sequence}  {export.head_hash}"),
        ("Entries", counted),
        ("Signatures", f"{len(export.signatures):,} on the exported records"),
    ]
    meta_table = Table(
        [[_p(key, styles["meta_key"]), _p(value, styles["meta"])] for key, value in meta],
        colWidths=[0.18 * width, 0.82 * width],
        hAlign="LEFT",
    )
    meta_table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )

    story: list[Any] = [
        _p("Audit trail export", styles["title"]),
        Spacer(1, 2 * mm),
        meta_table,
        Spacer(1, 3 * mm),
    ]
    if export.truncated:
        story += [_p(truncation_note(export).capitalize() + ".", styles["warn"]), Spacer(1, 2 * mm)]
    story.append(_p("Entries", styles["h2"]))
    story.append(Spacer(1, 1.5 * mm))
    if export.entries:
        story += _entries_tables(export, styles, width)
    else:
        story.append(_p("No entry matches the filter.", styles["meta"]))
    story += [Spacer(1, 5 * mm), _p("Signature manifestations", styles["h2"]), Spacer(1, 1.5 * mm)]
    if export.signatures:
        story.append(_signatures_table(export, styles, width))
    else:
        story.append(_p("No signature on the exported records.", styles["meta"]))
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
