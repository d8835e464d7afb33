"""Read a barcode from a photo taken with a phone camera, for the scan station.

The answer is what a scanner would have sent: the AIM symbology identifier (``]d2`` for a GS1
DataMatrix, ``]C1`` for GS1-128, ``]Q3``/``]Q1`` for QR codes, ``]E0`` for EAN-13) followed by
the decoded text, GS separators included. The scan parser then reads a photographed code
exactly as it reads a scanned one; nothing is interpreted here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import BinaryIO

import zxingcpp
from PIL import Image, UnidentifiedImageError

from pharmadms.exceptions import InvalidInput

# A phone photo is 2–8 MB as JPEG; 48-megapixel cameras reach about 15.
MAX_PHOTO_BYTES = 15 * 1024 * 1024
# Decoding holds the image once in 8-bit grey: 50 megapixels is 50 MB of memory at most.
MAX_PHOTO_PIXELS = 50_000_000
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

# What is printed on medicine packs and cases: GS1 DataMatrix, GS1 QR codes and Digital Link,
# GS1-128 (SSCC), EAN/UPC. Limiting the search keeps a busy photo from yielding noise.
FORMATS = (
    zxingcpp.BarcodeFormat.DataMatrix,
    zxingcpp.BarcodeFormat.QRCode,
    zxingcpp.BarcodeFormat.Code128,
    zxingcpp.BarcodeFormat.EAN13,
    zxingcpp.BarcodeFormat.EAN8,
    zxingcpp.BarcodeFormat.UPCA,
    zxingcpp.BarcodeFormat.UPCE,
)
# When a photo holds several codes (the DataMatrix and the pack's EAN-13, say), the richest
# wins: GS1 content first, then a DataMatrix, a QR code, a GS1-128, a linear retail code.
FORMAT_PREFERENCE = {
    zxingcpp.BarcodeFormat.DataMatrix: 0,
    zxingcpp.BarcodeFormat.QRCode: 1,
    zxingcpp.BarcodeFormat.Code128: 2,
}


@dataclass(frozen=True)
class DecodedCode:
    """One barcode read from a photo: the scanner-style string and what it was."""

    code: str
    format: str
    symbology_identifier: str
    is_gs1: bool
    found: int  # how many codes the photo held; the others are not returned


def open_photo(upload: BinaryIO, *, size: int | None = None) -> Image.Image:
    """The uploaded file as an 8-bit grey image, or InvalidInput: ``photo_too_large`` (bytes
    or pixels), ``not_an_image`` (anything Pillow cannot read as a photo)."""
    if size is not None and size > MAX_PHOTO_BYTES:
        raise photo_too_large()
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns first and raises only at twice its limit; ours is
            # lower and refuses outright, below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(upload, formats=PHOTO_FORMATS)
            width, height = image.size
            if width * height > MAX_PHOTO_PIXELS:
                raise photo_too_large()
            image.load()
    except InvalidInput:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as error:
        raise InvalidInput(
            "the upload is not a readable photo (JPEG, PNG, WebP, GIF, BMP or TIFF)",
            code="not_an_image",
        ) from error
    if width < 1 or height < 1:
        raise InvalidInput("the photo is empty", code="not_an_image")
    return image.convert("L")


def photo_too_large() -> InvalidInput:
    return InvalidInput(
        f"the photo is larger than {MAX_PHOTO_BYTES // (1024 * 1024)} MB or "
        f"{MAX_PHOTO_PIXELS // 1_000_000} megapixels: take it again at a lower resolution",
        code="photo_too_large",
    )


def decode_image(image: Image.Image) -> DecodedCode:
    """The best code in ``image`` (see FORMAT_PREFERENCE), or InvalidInput ``no_code_found``."""
    barcodes = [
        barcode
        for barcode in zxingcpp.read_barcodes(
            image, formats=FORMATS, text_mode=zxingcpp.TextMode.Plain
        )
        if barcode.valid and barcode.text
    ]
    if not barcodes:
        raise InvalidInput(
            "no barcode could be read in the photo: fill the frame with the code, hold the "
            "phone steady and avoid glare",
            code="no_code_found",
        )
    best = min(
        barcodes,
        key=lambda barcode: (
            barcode.content_type != zxingcpp.ContentType.GS1,
            FORMAT_PREFERENCE.get(barcode.format, 3),
        ),
    )
    return DecodedCode(
        code=f"{best.symbology_identifier}{best.text}",
        format=_format_name(best.format),
        symbology_identifier=best.symbology_identifier,
        is_gs1=best.content_type == zxingcpp.ContentType.GS1,
        found=len(barcodes),
    )


def decode_photo(upload: BinaryIO, *, size: int | None = None) -> DecodedCode:
    """Open and decode an uploaded photo (see open_photo and decode_image for the refusals)."""
    return decode_image(open_photo(upload, size=size))


def _format_name(barcode_format: zxingcpp.BarcodeFormat) -> str:
    # "DataMatrix", "Code128", "EAN13"…: the enum's own name, stable across versions.
    return str(barcode_format.name) if hasattr(barcode_format, "name") else str(barcode_format)
