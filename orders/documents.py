"""The transaction information and statement of a shipment, rendered as a PDF (reportlab)."""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle


def _party_text(party: dict[str, Any]) -> str:
    site = party["site"]
    return (
        f"<b>{escape(party['name'])}</b> (GLN {party['gln']})<br/>"
        f"{escape(site['name'])} (GLN {site['gln']})<br/>"
        f"{escape(site['address_line'])}, {escape(site['postal_code'])} "
        f"{escape(site['city'])}, {escape(site['country'])}"
    )


def transaction_information_pdf(information: dict[str, Any]) -> bytes:
    """Render :func:`orders.selectors.shipment_transaction_information` as a PDF document."""
    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8, leading=10)
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"Transaction information {information['shipment']}",
    )
    story: list[Any] = [
        Paragraph("Transaction information and transaction statement", styles["Title"]),
        Paragraph(
            f"Shipment <b>{escape(information['shipment'])}</b> · order "
            f"{escape(information['order'])} · transaction date "
            f"{information['transaction_date']}",
            body,
        ),
        Spacer(1, 4 * mm),
    ]
    parties = Table(
        [
            [
                Paragraph("<b>Seller (transferring ownership)</b>", body),
                Paragraph("<b>Buyer</b>", body),
            ],
            [
                Paragraph(_party_text(information["seller"]), body),
                Paragraph(_party_text(information["buyer"]), body),
            ],
        ],
        colWidths=[90 * mm, 90 * mm],
    )
    parties.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story += [parties, Spacer(1, 4 * mm), Paragraph("<b>Products</b>", styles["Heading3"])]
    rows: list[list[Any]] = [
        ["Product", "GTIN", "Strength", "Form", "Pack", "Lot", "Expiry", "Qty"]
    ]
    for line in information["lines"]:
        rows.append(
            [
                Paragraph(escape(line["product_name"]), small),
                line["gtin"],
                Paragraph(escape(line["strength"]), small),
                Paragraph(escape(line["dosage_form"]), small),
                str(line["pack_size"]),
                Paragraph(escape(line["lot"]), small),
                line["expires_on"],
                str(line["quantity"]),
            ]
        )
    products = Table(
        rows,
        colWidths=[34 * mm, 27 * mm, 18 * mm, 30 * mm, 11 * mm, 22 * mm, 20 * mm, 13 * mm],
        repeatRows=1,
    )
    products.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 8),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    story += [
        products,
        Spacer(1, 4 * mm),
        Paragraph("<b>Transaction history</b>", styles["Heading3"]),
    ]
    for line in information["lines"]:
        owners = line["previous_owners"]
        text = f"Lot {escape(line['lot'])} ({line['gtin']}): "
        if not owners:
            text += "no earlier transaction on this platform (the seller is the first owner)."
        else:
            text += "; ".join(
                f"{entry['transaction_date'][:10]} {escape(entry['seller']['name'])} "
                f"(GLN {entry['seller']['gln']}) to {escape(entry['buyer']['name'])} "
                f"(GLN {entry['buyer']['gln']}), {entry['quantity']} units, "
                f"shipment {escape(entry['shipment'])}"
                for entry in owners
            )
        story.append(Paragraph(text, small))
    story += [
        Spacer(1, 4 * mm),
        Paragraph("<b>Transaction statement</b>", styles["Heading3"]),
        Paragraph(escape(information["transaction_statement"]), body),
    ]
    document.build(story)
    return buffer.getvalue()
