"""Printable GS1 labels: a lot's DataMatrix and a case's SSCC, read back by a barcode reader.

Every symbol drawn here is decoded again with zxing-cpp (PNG directly, PDF after rasterising
its vector rectangles) and the decoded string is parsed with biip: the label carries exactly
the application identifiers it should, as a real GS1 symbol (FNC1 first: ``]d2``, ``]C1``).
"""

from __future__ import annotations

import datetime
import io
import re

import biip
import pytest
import zxingcpp
from PIL import Image, ImageDraw

from batches import labels
from pharmadms.exceptions import InvalidInput

GS = "\x1d"
GTIN = "09501101530003"
SSCC = "106141411234567897"


def lot_label(**changes) -> labels.LotLabel:
    values = {
        "gtin": GTIN,
        "expires_on": datetime.date(2027, 3, 31),
        "lot_number": "FQ4821A",
        "product_name": "Meriflu Quadrivalent influenza vaccine",
        "strength": "0.5 mL",
    }
    return labels.LotLabel(**{**values, **changes})


def read(image: Image.Image) -> list[zxingcpp.Barcode]:
    return zxingcpp.read_barcodes(image, text_mode=zxingcpp.TextMode.Plain)


def read_png(content: bytes) -> zxingcpp.Barcode:
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    (barcode,) = read(image)
    return barcode


def ais(barcode: zxingcpp.Barcode) -> dict[str, str]:
    """The element strings of a decoded GS1 symbol, as biip reads the scanner string."""
    result = biip.parse(barcode.symbology_identifier + barcode.text)
    assert result.gs1_message is not None, result
    return {element.ai.ai: element.value for element in result.gs1_message.element_strings}


RECTANGLE = re.compile(rb"n ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) re f\*")


def rasterise_pdf(content: bytes, pixels_per_point: int = 6) -> Image.Image:
    """Draw the page's filled rectangles (the symbol's modules) into an image, as a printer
    would, so that the PDF's barcode can be decoded."""
    width, height = (
        float(value)
        for value in re.search(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", content).groups()
    )
    image = Image.new("L", (round(width * pixels_per_point), round(height * pixels_per_point)), 255)
    draw = ImageDraw.Draw(image)
    rectangles = RECTANGLE.findall(content)
    assert rectangles, "no module was drawn"
    for x, y, w, h in rectangles:
        x, y, w, h = (float(v) * pixels_per_point for v in (x, y, w, h))
        top = image.height - (y + h)
        draw.rectangle((round(x), round(top), round(x + w) - 1, round(top + h) - 1), fill=0)
    return image


def assert_valid_pdf(content: bytes, pages: int = 1) -> None:
    """A structurally sound PDF: header, trailer, and a cross-reference table whose every
    offset points at the object it names."""
    assert content.startswith(b"%PDF-1.")
    assert content.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", content).group(1))
    assert content[startxref:].startswith(b"xref")
    table = re.match(rb"xref\s+0 (\d+)\s+((?:\d{10} \d{5} [fn]\s*)+)", content[startxref:])
    count, entries = int(table.group(1)), table.group(2).split()
    assert len(entries) == count * 3
    for number in range(1, count):
        offset = int(entries[number * 3])
        assert content[offset:].startswith(f"{number} 0 obj".encode())
    assert len(re.findall(rb"/Type /Page\b", content)) == pages


# --- the lot's GS1 DataMatrix -------------------------------------------------------------------


def test_lot_label_png_is_a_gs1_datamatrix_with_gtin_expiry_lot_and_serial():
    label = lot_label(serial="SN(1)X")

    barcode = read_png(labels.lot_label_png(label))

    assert barcode.format == zxingcpp.BarcodeFormat.DataMatrix
    assert barcode.symbology_identifier == "]d2", "FNC1 in first position: a GS1 DataMatrix"
    assert barcode.content_type == zxingcpp.ContentType.GS1
    # The lot is variable-length and not last: a GS ends it before the serial.
    assert barcode.text == f"01{GTIN}17270331" + "10FQ4821A" + GS + "21SN(1)X"
    assert ais(barcode) == {"01": GTIN, "17": "270331", "10": "FQ4821A", "21": "SN(1)X"}


def test_lot_label_without_serial_carries_three_ais():
    barcode = read_png(labels.lot_label_png(lot_label()))

    assert barcode.symbology_identifier == "]d2"
    assert ais(barcode) == {"01": GTIN, "17": "270331", "10": "FQ4821A"}


@pytest.mark.parametrize("lot", ["10D9T", "21ABC", "(10)X", "A-1/2.3", "Z" * 20])
def test_lots_that_look_like_ais_or_hri_are_encoded_as_lots(lot):
    """A lot named like an AI or holding parentheses stays one lot; nothing is re-read."""
    barcode = read_png(labels.lot_label_png(lot_label(lot_number=lot, serial="7")))

    assert ais(barcode) == {"01": GTIN, "17": "270331", "10": lot, "21": "7"}


def test_the_datamatrix_is_square_for_every_scanner():
    """Rectangular DMRE sizes are not read everywhere: the symbol is square."""
    matrix = labels.module_matrix(labels.datamatrix_symbol(lot_label(serial="123456789012")))
    assert len(matrix) == len(matrix[0])
    assert len(matrix) in {10, 12, 14, 16, 18, 20, 22, 24, 26, 32, 36, 40, 44}


def test_the_png_is_a_70_by_35_mm_label_at_300_dpi_with_the_text_beside_the_code():
    image = Image.open(io.BytesIO(labels.lot_label_png(lot_label())))
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.1)
    assert image.size == (827, 413)  # 70 × 35 mm at 300 dpi
    # The symbol sits left; the right part holds the text (dark pixels there too).
    right = image.crop((image.width // 2, 0, image.width, image.height)).convert("L")
    assert right.getextrema()[0] < 100


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"gtin": "09501101530004"}, "invalid_gtin"),  # check digit
        ({"gtin": "95011015300"}, "invalid_gtin"),
        ({"lot_number": ""}, "invalid_lot_number"),
        ({"lot_number": "A" * 21}, "invalid_lot_number"),
        ({"lot_number": "LOT 1"}, "invalid_lot_number"),  # a space is not GS1 set 82
        ({"lot_number": "A[1]"}, "invalid_lot_number"),
        ({"serial": "SN 1"}, "invalid_serial"),
        ({"serial": "SÜ1"}, "invalid_serial"),
        ({"serial": "1\x1d21X"}, "invalid_serial"),  # a smuggled separator and AI
        ({"serial": "S" * 21}, "invalid_serial"),
        ({"expires_on": datetime.date(2100, 1, 1)}, "invalid_expiry"),
    ],
)
def test_a_label_is_never_drawn_from_data_a_scanner_would_refuse(changes, code):
    with pytest.raises(InvalidInput) as refused:
        labels.lot_label_png(lot_label(**changes))
    assert refused.value.code == code
    with pytest.raises(InvalidInput):
        labels.lot_label_pdf(lot_label(**changes))


def test_a_gtin_13_is_encoded_as_a_gtin_14():
    barcode = read_png(labels.lot_label_png(lot_label(gtin="9501101530003")))
    assert ais(barcode)["01"] == GTIN


def test_lot_label_pdf_is_a_valid_one_page_pdf_whose_vector_symbol_decodes():
    content = labels.lot_label_pdf(lot_label(lot_number="10D9T", serial="SN(1)X"))

    assert_valid_pdf(content)
    media_box = re.search(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", content).groups()
    assert [round(float(value) / 72 * 25.4, 1) for value in media_box] == [70.0, 35.0]
    (barcode,) = read(rasterise_pdf(content))
    assert barcode.symbology_identifier == "]d2"
    assert ais(barcode) == {"01": GTIN, "17": "270331", "10": "10D9T", "21": "SN(1)X"}
    # The human-readable lines, with GS1's data titles.
    for text in (b"(GTIN 09501101530003)", b"(LOT 10D9T)", b"(EXP 2027-03-31)", rb"(SN SN\(1\)X)"):
        assert text in content


# --- the SSCC label -----------------------------------------------------------------------------


def sscc_label(**changes) -> labels.SsccLabel:
    values = {
        "sscc": SSCC,
        "ship_from": "Acme Pharma, Plant 1, 80331 München, DE",
        "ship_to": "North Wholesale, Hamburg hub, 20095 Hamburg, DE",
        "reference": "SH-2026-000001",
        "contents": [("Meriflu 0.5 mL", "FQ4821A", 24)],
    }
    return labels.SsccLabel(**{**values, **changes})


def test_sscc_label_png_is_gs1_128_with_ai_00():
    content = labels.sscc_label_png(sscc_label())

    barcode = read_png(content)

    assert barcode.format == zxingcpp.BarcodeFormat.Code128
    assert barcode.symbology_identifier == "]C1", "FNC1 first: GS1-128"
    assert barcode.text == f"00{SSCC}"
    assert ais(barcode) == {"00": SSCC}
    assert biip.parse(barcode.symbology_identifier + barcode.text).sscc.value == SSCC
    image = Image.open(io.BytesIO(content))
    assert image.size == (1240, 1748)  # A6 at 300 dpi


def test_sscc_label_pdf_is_valid_and_its_bars_decode():
    content = labels.sscc_label_pdf(sscc_label())

    assert_valid_pdf(content)
    (barcode,) = read(rasterise_pdf(content, pixels_per_point=4))
    assert barcode.symbology_identifier == "]C1"
    assert barcode.text == f"00{SSCC}"
    assert rb"(\(00\)106141411234567897)" in content  # the human-readable line under the bars
    assert b"(1 0614141 123456789 7)" in content  # the text section, parts apart
    assert b"(SH-2026-000001)" in content


@pytest.mark.parametrize(
    "sscc", ["106141411234567898", "10614141123456789", "1061414112345678AB", ""]
)
def test_an_invalid_sscc_is_refused(sscc):
    with pytest.raises(InvalidInput) as refused:
        labels.sscc_label_png(sscc_label(sscc=sscc))
    assert refused.value.code == "invalid_sscc"


def test_a_label_without_addresses_still_carries_the_sscc():
    barcode = read_png(labels.sscc_label_png(labels.SsccLabel(sscc=SSCC)))
    assert barcode.text == f"00{SSCC}"
