"""Reading a barcode from a phone photo: what a scanner would send, or a refusal with a code.

The photos are made here: a label drawn by batches.labels, placed rotated on a cluttered
background the size of a 12-megapixel phone photo, blurred and saved as JPEG.
"""

from __future__ import annotations

import datetime
import functools
import io
import random

import pytest
import zxingcpp
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw, ImageFilter

from batches import gs1, labels, photo
from pharmadms.exceptions import InvalidInput
from tests.conftest import client_for

API = "/api/v1/scans/decode/"
GTIN = "09501101530003"
LABEL = labels.LotLabel(
    gtin=GTIN,
    expires_on=datetime.date(2027, 3, 31),
    lot_number="10D9T",
    serial="SN1001",
    product_name="Meriflu",
    strength="0.5 mL",
)


def phone_photo(*extras: Image.Image, size=(4032, 3024), seed: int = 7) -> bytes:
    """A JPEG 'photo' of the lot label (and of ``extras``) on a busy surface, at an angle."""
    rng = random.Random(seed)
    background = Image.new("RGB", size, (150, 128, 105))
    draw = ImageDraw.Draw(background)
    for _ in range(250):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle((x, y, x + rng.randrange(250), y + rng.randrange(250)), fill=colour)
    label = Image.open(io.BytesIO(labels.lot_label_png(LABEL))).convert("RGB")
    label = label.resize((label.width * 2, label.height * 2)).rotate(
        17, expand=True, fillcolor=(150, 128, 105)
    )
    background.paste(label, (size[0] // 3, size[1] // 3))
    for offset, extra in enumerate(extras):
        background.paste(extra.convert("RGB"), (200 + offset * 50, 200))
    background = background.filter(ImageFilter.GaussianBlur(1.5))
    buffer = io.BytesIO()
    background.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


@functools.cache
def label_photo() -> bytes:
    """The phone photo of the label alone (made once: it takes a second to draw)."""
    return phone_photo()


def ean13_image() -> Image.Image:
    symbol = zxingcpp.create_barcode("9501101530003", zxingcpp.BarcodeFormat.EAN13)
    image = symbol.to_image(scale=4)
    return Image.frombytes("L", (image.shape[1], image.shape[0]), bytes(memoryview(image)))


def test_a_photographed_gs1_datamatrix_reads_as_a_scanner_sends_it():
    decoded = photo.decode_photo(io.BytesIO(label_photo()))

    assert decoded.format == "DataMatrix"
    assert decoded.symbology_identifier == "]d2"
    assert decoded.is_gs1
    assert decoded.code == f"]d201{GTIN}172703311010D9T\x1d21SN1001"


def test_the_scan_parser_reads_the_photographed_code_like_a_scanned_one():
    """The lot named like an AI is read as the lot because the ]d2 and the GS say GS1."""
    reading = gs1.parse(photo.decode_photo(io.BytesIO(label_photo())).code)

    assert reading.ok, reading.problem
    assert (reading.gtin, reading.lot, reading.expiry, reading.serial) == (
        GTIN,
        "10D9T",
        datetime.date(2027, 3, 31),
        "SN1001",
    )


def test_the_datamatrix_wins_over_the_packs_ean13():
    decoded = photo.decode_photo(io.BytesIO(phone_photo(ean13_image())))

    assert decoded.found == 2
    assert decoded.symbology_identifier == "]d2"


def test_an_ean13_alone_is_returned_with_its_identifier():
    buffer = io.BytesIO()
    ean13_image().save(buffer, format="PNG")
    decoded = photo.decode_photo(io.BytesIO(buffer.getvalue()))
    assert decoded.code == "]E09501101530003"
    assert not decoded.is_gs1


def test_a_photo_without_a_code_is_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (800, 600), (200, 200, 200)).save(buffer, format="JPEG")
    with pytest.raises(InvalidInput) as refused:
        photo.decode_photo(io.BytesIO(buffer.getvalue()))
    assert refused.value.code == "no_code_found"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a photo at all",
        b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"\xff\xd8\xff\xe0" + b"\x00" * 64,  # a JPEG header and nothing after it
    ],
)
def test_what_is_not_a_photo_is_refused(content):
    with pytest.raises(InvalidInput) as refused:
        photo.decode_photo(io.BytesIO(content))
    assert refused.value.code == "not_an_image"


def test_a_truncated_jpeg_is_refused():
    content = phone_photo(size=(1200, 900))
    with pytest.raises(InvalidInput) as refused:
        photo.decode_photo(io.BytesIO(content[: len(content) // 3]))
    assert refused.value.code == "not_an_image"


def test_too_many_bytes_are_refused_before_reading():
    with pytest.raises(InvalidInput) as refused:
        photo.decode_photo(io.BytesIO(b""), size=photo.MAX_PHOTO_BYTES + 1)
    assert refused.value.code == "photo_too_large"


def test_too_many_pixels_are_refused_before_decompressing():
    """A small file can unpack to a huge image (a decompression bomb): refused by its header."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 6_000), 1).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 200_000

    with pytest.raises(InvalidInput) as refused:
        photo.decode_photo(io.BytesIO(buffer.getvalue()))
    assert refused.value.code == "photo_too_large"


# --- POST /api/v1/scans/decode/ ---------------------------------------------------------------


def upload(content: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def test_the_endpoint_answers_the_code(network):
    response = client_for(network.warehouse).post(
        API, {"image": upload(label_photo())}, format="multipart"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "code": f"]d201{GTIN}172703311010D9T\x1d21SN1001",
        "format": "DataMatrix",
        "symbology_identifier": "]d2",
        "is_gs1": True,
        "found": 1,
    }


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "photo_required"),
        ({"photo": "x"}, "photo_required"),
        ({"image": "plain text, not a file"}, "photo_required"),
    ],
)
def test_a_request_without_a_photo_is_refused(network, data, code):
    response = client_for(network.warehouse).post(API, data, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_a_text_file_is_refused_as_not_an_image(network):
    response = client_for(network.warehouse).post(
        API, {"image": upload(b"hello", "x.jpg")}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "not_an_image"


def test_json_is_not_a_photo(network):
    response = client_for(network.warehouse).post(API, {"image": "x"}, format="json")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_an_oversized_body_is_refused_from_its_length(network):
    response = client_for(network.warehouse).post(
        API,
        {"image": upload(b"x")},
        format="multipart",
        CONTENT_LENGTH=str(photo.MAX_PHOTO_BYTES * 2),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "photo_too_large"


def test_anonymous_is_challenged(api_client):
    response = api_client.post(API, {"image": upload(b"x")}, format="multipart")
    assert response.status_code == 401


def test_a_regulator_does_not_scan(network):
    response = client_for(network.regulator).post(
        API, {"image": upload(phone_photo(size=(800, 600)))}, format="multipart"
    )
    assert response.status_code == 403
