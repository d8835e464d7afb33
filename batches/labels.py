"""Printable GS1 labels: a lot's GS1 DataMatrix (PNG and PDF) and a shipping case's SSCC label.

The symbols are encoded by zxing-cpp (its zint writer) in GS1 mode, so a DataMatrix starts with
FNC1 (read back with the symbology identifier ``]d2``) and a variable-length field that is not
last is ended by the GS separator; the SSCC label's GS1-128 starts with FNC1 too (``]C1``).
zint checks the syntax of AIs but not check digits or dates, so every value is validated here
first, and a label is never drawn from data that a scanner would refuse.

The PDF draws each module as a vector rectangle (sharp at any printer resolution); the PNG is
drawn at 300 dpi with whole pixels per module.
"""

from __future__ import annotations

import datetime
import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import zxingcpp
from biip import ParseError
from biip.sscc import Sscc
from django.core.exceptions import ValidationError
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas as pdf_canvas

from pharmadms.exceptions import InvalidInput
from pharmadms.identifiers import normalise_gtin

# GS1 AI (10) and (21): 1 to 20 characters of GS1 character set 82 (the lot validator's set).
CSET82_FIELD = re.compile(r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}$")

DPI = 300
# A DataMatrix module of 0.508 mm (6 px at 300 dpi): read at once by warehouse scanners and
# phone cameras. The 3 mm margin around the symbol is far more than its quiet zone (1 module).
DATAMATRIX_PIXELS_PER_MODULE = 6
DATAMATRIX_MODULE_MM = 0.5
# The SSCC's GS1-128: X of 0.508 mm (6 px) and bars 32 mm high, above GS1's minimum for a
# logistic label (X 0.495 mm, bars 31.75 mm); centred, it keeps more than its 10X quiet zones.
SSCC_PIXELS_PER_MODULE = 6
SSCC_MODULE_MM = 0.5
SSCC_BAR_HEIGHT_MM = 32.0

LOT_LABEL_SIZE_MM = (70.0, 35.0)
SSCC_LABEL_SIZE_MM = (105.0, 148.0)  # A6 portrait, GS1's usual logistic label


@dataclass(frozen=True)
class LotLabel:
    """What a pack label for one lot shows: the GS1 data and the product's name."""

    gtin: str
    expires_on: datetime.date
    lot_number: str
    serial: str = ""
    product_name: str = ""
    strength: str = ""

    @classmethod
    def for_batch(cls, batch, *, serial: str = "") -> LotLabel:
        product = batch.product
        return cls(
            gtin=product.gtin,
            expires_on=batch.expires_on,
            lot_number=batch.lot_number,
            serial=serial,
            product_name=product.name,
            strength=product.strength,
        )

    def checked(self) -> LotLabel:
        """The same label with its GTIN as 14 digits, or InvalidInput naming what is wrong."""
        try:
            gtin = normalise_gtin(self.gtin)
        except ValidationError as error:
            raise InvalidInput(error.messages[0], code="invalid_gtin") from error
        if not CSET82_FIELD.match(self.lot_number or ""):
            raise InvalidInput(
                "a lot number on a GS1 label is 1 to 20 characters of GS1 character set 82",
                code="invalid_lot_number",
            )
        if self.serial and not CSET82_FIELD.match(self.serial):
            raise InvalidInput(
                "a serial number is 1 to 20 GS1 characters: letters, digits and GS1 symbols, "
                "no spaces",
                code="invalid_serial",
            )
        if not isinstance(self.expires_on, datetime.date) or not (
            2000 <= self.expires_on.year <= 2099  # YYMMDD: GS1's sliding century, made explicit
        ):
            raise InvalidInput("an expiry date on a label lies in 2000–2099", code="invalid_expiry")
        return LotLabel(
            gtin=gtin,
            expires_on=self.expires_on,
            lot_number=self.lot_number,
            serial=self.serial,
            product_name=self.product_name,
            strength=self.strength,
        )

    @property
    def element_strings(self) -> list[tuple[str, str]]:
        """(AI, value) in label order: fixed-length fields first, then the variable ones."""
        fields = [
            ("01", self.gtin),
            ("17", self.expires_on.strftime("%y%m%d")),
            ("10", self.lot_number),
        ]
        if self.serial:
            fields.append(("21", self.serial))
        return fields

    @property
    def hri(self) -> str:
        """The human-readable interpretation, e.g. ``(01)09501101530003(17)261231(10)A1``."""
        return "".join(f"({ai}){value}" for ai, value in self.element_strings)

    @property
    def element_string(self) -> str:
        """What a scanner transmits after ``]d2``: AIs and values, GS after a variable field
        that is followed by another."""
        parts, separator_needed = [], False
        for ai, value in self.element_strings:
            if separator_needed:
                parts.append("\x1d")
            parts.append(ai + value)
            separator_needed = ai in {"10", "21"}
        return "".join(parts)


@dataclass(frozen=True)
class SsccLabel:
    """A logistic label for one case or pallet: its SSCC, where it goes, what it holds."""

    sscc: str
    ship_from: str = ""
    ship_to: str = ""
    reference: str = ""
    # (description, lot, quantity) of each line packed in the case, printed as text.
    contents: Sequence[tuple[str, str, int]] = field(default_factory=tuple)

    def checked(self) -> SsccLabel:
        sscc = self.sscc if isinstance(self.sscc, str) else ""
        if not (sscc.isascii() and sscc.isdigit() and len(sscc) == 18):
            raise InvalidInput("an SSCC is exactly 18 digits", code="invalid_sscc")
        try:
            Sscc.parse(sscc)
        except ParseError as error:
            raise InvalidInput(str(error), code="invalid_sscc") from error
        return self

    @property
    def hri(self) -> str:
        return f"(00){self.sscc}"

    @property
    def spaced(self) -> str:
        """The SSCC as printed in the text section: extension digit, company prefix, serial
        reference and check digit apart (biip knows the prefix lengths)."""
        return Sscc.parse(self.sscc).as_hri()


# --- the symbols --------------------------------------------------------------------------------


def _bracketed(fields: Sequence[tuple[str, str]]) -> str:
    # Brackets, not parentheses: "(" and ")" are allowed inside a lot number, "[" and "]" are not.
    return "".join(f"[{ai}]{value}" for ai, value in fields)


def datamatrix_symbol(label: LotLabel) -> zxingcpp.Barcode:
    """The lot's GS1 DataMatrix: square ECC 200, FNC1 first, validated content."""
    label = label.checked()
    symbol = zxingcpp.create_barcode(
        _bracketed(label.element_strings),
        zxingcpp.BarcodeFormat.DataMatrix,
        gs1=True,
        # Rectangular (DMRE) sizes are not read by every scanner in the field; square ones are.
        forceSquare=True,
    )
    _check_encoded(symbol, label.element_string, "]d2")
    return symbol


def sscc_symbol(label: SsccLabel) -> zxingcpp.Barcode:
    """The case's GS1-128 barcode of AI (00)."""
    label = label.checked()
    symbol = zxingcpp.create_barcode(
        _bracketed([("00", label.sscc)]), zxingcpp.BarcodeFormat.Code128, gs1=True
    )
    _check_encoded(symbol, "00" + label.sscc, "]C1")
    return symbol


def _check_encoded(symbol: zxingcpp.Barcode, expected: str, symbology_identifier: str) -> None:
    """The writer's own reading of what it encoded must be exactly what we meant to encode."""
    if symbol.bytes != expected.encode("ascii") or (
        symbol.symbology_identifier != symbology_identifier
    ):
        raise RuntimeError(
            f"the barcode writer encoded {symbol.bytes!r} as {symbol.symbology_identifier}, "
            f"not {expected!r} as {symbology_identifier}"
        )


def module_matrix(symbol: zxingcpp.Barcode) -> list[list[bool]]:
    """The symbol's modules, row by row, True where dark (no quiet zone)."""
    image = symbol.to_image(scale=1, add_quiet_zones=False)
    height, width = image.shape[:2]
    pixels = bytes(memoryview(image))
    return [[pixels[y * width + x] < 128 for x in range(width)] for y in range(height)]


def _symbol_image(symbol: zxingcpp.Barcode, scale: int) -> Image.Image:
    image = symbol.to_image(scale=scale, add_quiet_zones=False)
    height, width = image.shape[:2]
    return Image.frombytes("L", (width, height), bytes(memoryview(image)))


def _bar_pattern(symbol: zxingcpp.Barcode) -> list[bool]:
    """A linear symbol's modules left to right, True where a bar is."""
    return module_matrix(symbol)[0]


# --- PNG ------------------------------------------------------------------------------------------


def _px(millimetres: float) -> int:
    return round(millimetres / 25.4 * DPI)


@functools.lru_cache(maxsize=64)
def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # DejaVu Sans covers the accents and symbols of product names; where it is not installed,
    # Pillow's bundled font still draws every character a GS1 field may hold.
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size_px)
    except OSError:
        return ImageFont.load_default(size=size_px)


def _fit(draw: ImageDraw.ImageDraw, text: str, size_px: int, max_width: int):
    """The largest font up to ``size_px`` in which ``text`` fits ``max_width`` (min 60 %)."""
    for size in range(size_px, max(int(size_px * 0.6), 8) - 1, -2):
        font = _font(size)
        if draw.textlength(text, font=font) <= max_width:
            return font, text
    font = _font(max(int(size_px * 0.6), 8))
    while text and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return font, text + "..."


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(DPI, DPI), optimize=True)
    return buffer.getvalue()


def lot_label_png(label: LotLabel) -> bytes:
    """A 70 × 35 mm pack label at 300 dpi: the DataMatrix left, its data in text right."""
    label = label.checked()
    symbol = _symbol_image(datamatrix_symbol(label), DATAMATRIX_PIXELS_PER_MODULE)
    width, height = (_px(size) for size in LOT_LABEL_SIZE_MM)
    image = Image.new("L", (width, height), 255)
    margin = _px(3)
    # Vertically centred; the margin is far wider than the quiet zone the symbol needs.
    top = max((height - symbol.height) // 2, margin)
    image.paste(symbol, (margin, top))
    draw = ImageDraw.Draw(image)
    left = margin + symbol.width + _px(3)
    room = width - left - margin
    y = margin
    for text, size in _lot_text_lines(label):
        font, fitted = _fit(draw, text, _px(size), room)
        draw.text((left, y), fitted, font=font, fill=0)
        y += round(_px(size) * 1.25)
    return _png_bytes(image)


def _lot_text_lines(label: LotLabel) -> list[tuple[str, float]]:
    """Lines of the text block with their type size in mm: name, then GS1 data titles."""
    lines = []
    if label.product_name:
        lines.append((f"{label.product_name} {label.strength}".strip(), 3.0))
    lines += [
        (f"GTIN {label.gtin}", 2.6),
        (f"LOT {label.lot_number}", 2.6),
        (f"EXP {label.expires_on:%Y-%m-%d}", 2.6),
    ]
    if label.serial:
        lines.append((f"SN {label.serial}", 2.6))
    return lines


def sscc_label_png(label: SsccLabel) -> bytes:
    """An A6 logistic label at 300 dpi: from, to, reference and contents above; the SSCC in
    text and as GS1-128 with its human-readable line at the bottom."""
    label = label.checked()
    width, height = (_px(size) for size in SSCC_LABEL_SIZE_MM)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    margin = _px(5)
    room = width - 2 * margin
    y = margin
    for title, text in _sscc_text_blocks(label):
        draw.text((margin, y), title, font=_font(_px(2.5)), fill=0)
        y += _px(3.2)
        font, fitted = _fit(draw, text, _px(4), room)
        draw.text((margin, y), fitted, font=font, fill=0)
        y += _px(6)
    for description, lot, quantity in label.contents[:6]:
        font, fitted = _fit(draw, f"{quantity} x {description} - LOT {lot}", _px(3), room)
        draw.text((margin, y), fitted, font=font, fill=0)
        y += _px(4)
    # The barcode section: GS1 puts the SSCC's barcode at the bottom of the label.
    bars = _bar_pattern(sscc_symbol(label))
    bar_height = _px(SSCC_BAR_HEIGHT_MM)
    hri_size = _px(4)
    bar_top = height - margin - hri_size - _px(2) - bar_height
    bars_width = len(bars) * SSCC_PIXELS_PER_MODULE
    left = (width - bars_width) // 2
    draw.line((margin, bar_top - _px(4), width - margin, bar_top - _px(4)), fill=0, width=3)
    for index, dark in enumerate(bars):
        if dark:
            x = left + index * SSCC_PIXELS_PER_MODULE
            draw.rectangle((x, bar_top, x + SSCC_PIXELS_PER_MODULE - 1, bar_top + bar_height), 0)
    font = _font(hri_size)
    text_width = draw.textlength(label.hri, font=font)
    draw.text(
        ((width - text_width) / 2, bar_top + bar_height + _px(2)), label.hri, font=font, fill=0
    )
    return _png_bytes(image)


def _sscc_text_blocks(label: SsccLabel) -> list[tuple[str, str]]:
    blocks = []
    if label.ship_from:
        blocks.append(("FROM", label.ship_from))
    if label.ship_to:
        blocks.append(("TO", label.ship_to))
    if label.reference:
        blocks.append(("SHIPMENT", label.reference))
    blocks.append(("SSCC", label.spaced))
    return blocks


# --- PDF ------------------------------------------------------------------------------------------


def _pdf_canvas(buffer: io.BytesIO, size_mm: tuple[float, float], title: str):
    canvas = pdf_canvas.Canvas(
        buffer, pagesize=(size_mm[0] * mm, size_mm[1] * mm), pageCompression=0, invariant=1
    )
    canvas.setTitle(title)
    canvas.setAuthor("PharmaDMS")
    return canvas


def _draw_matrix(
    canvas,
    matrix: list[list[bool]],
    x: float,
    top: float,
    module: float,
    row_height: float | None = None,
) -> None:
    """Draw dark modules as rectangles from the top-left corner (x, top), merging each row's
    runs of dark modules into one rectangle. ``row_height`` stretches rows (a linear symbol is
    one row of bars)."""
    row_height = row_height or module
    canvas.setFillColorRGB(0, 0, 0)
    for row_index, row in enumerate(matrix):
        y = top - (row_index + 1) * row_height
        column = 0
        while column < len(row):
            if not row[column]:
                column += 1
                continue
            start = column
            while column < len(row) and row[column]:
                column += 1
            canvas.rect(x + start * module, y, (column - start) * module, row_height, 0, 1)


def _text_fit(canvas, text: str, font: str, size: float, max_width: float) -> tuple[float, str]:
    while size > 5 and canvas.stringWidth(text, font, size) > max_width:
        size -= 0.5
    while text and canvas.stringWidth(text, font, size) > max_width:
        text = text[:-4] + "..."
    return size, text


def lot_label_pdf(label: LotLabel) -> bytes:
    """The pack label as a one-page PDF of 70 × 35 mm, the symbol drawn in vectors."""
    label = label.checked()
    matrix = module_matrix(datamatrix_symbol(label))
    buffer = io.BytesIO()
    width, height = (size * mm for size in LOT_LABEL_SIZE_MM)
    canvas = _pdf_canvas(buffer, LOT_LABEL_SIZE_MM, f"Lot label {label.lot_number}")
    module = DATAMATRIX_MODULE_MM * mm
    symbol_size = len(matrix) * module
    margin = 3 * mm
    top = (height + symbol_size) / 2
    _draw_matrix(canvas, matrix, margin, top, module)
    left = margin + len(matrix[0]) * module + 3 * mm
    room = width - left - margin
    y = height - margin
    for text, size_mm in _lot_text_lines(label):
        size = size_mm * mm * 0.95
        font = "Helvetica-Bold" if text.startswith(label.product_name or "\0") else "Helvetica"
        fitted_size, fitted = _text_fit(canvas, text, font, size, room)
        y -= size * 1.25
        canvas.setFont(font, fitted_size)
        canvas.drawString(left, y, fitted)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def sscc_label_pdf(label: SsccLabel) -> bytes:
    """The logistic label as a one-page A6 PDF, the GS1-128 drawn in vectors."""
    label = label.checked()
    bars = _bar_pattern(sscc_symbol(label))
    buffer = io.BytesIO()
    width, height = (size * mm for size in SSCC_LABEL_SIZE_MM)
    canvas = _pdf_canvas(buffer, SSCC_LABEL_SIZE_MM, f"SSCC {label.sscc}")
    margin = 5 * mm
    room = width - 2 * margin
    y = height - margin
    for title, text in _sscc_text_blocks(label):
        y -= 3 * mm
        canvas.setFont("Helvetica", 7)
        canvas.drawString(margin, y, title)
        size, fitted = _text_fit(canvas, text, "Helvetica-Bold", 12, room)
        y -= 5 * mm
        canvas.setFont("Helvetica-Bold", size)
        canvas.drawString(margin, y, fitted)
        y -= 2 * mm
    for description, lot, quantity in label.contents[:6]:
        size, fitted = _text_fit(
            canvas, f"{quantity} x {description} - LOT {lot}", "Helvetica", 9, room
        )
        y -= 4.5 * mm
        canvas.setFont("Helvetica", size)
        canvas.drawString(margin, y, fitted)
    module = SSCC_MODULE_MM * mm
    bar_height = SSCC_BAR_HEIGHT_MM * mm
    bar_bottom = margin + 8 * mm
    left = (width - len(bars) * module) / 2
    canvas.setLineWidth(1)
    canvas.line(
        margin, bar_bottom + bar_height + 4 * mm, width - margin, bar_bottom + bar_height + 4 * mm
    )
    _draw_matrix(canvas, [bars], left, bar_bottom + bar_height, module, bar_height)
    canvas.setFont("Helvetica", 11)
    canvas.drawCentredString(width / 2, margin + 2 * mm, label.hri)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()
