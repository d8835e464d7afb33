"""GS1 identifier validation (GLN, GTIN) through biip, shared by every app's models."""

from __future__ import annotations

from biip import ParseError
from biip.gln import Gln
from biip.gtin import Gtin
from django.core.exceptions import ValidationError


def validate_gln(value: str) -> None:
    """A GLN is 13 digits whose last is the GS1 mod-10 check digit."""
    if not (isinstance(value, str) and value.isdigit() and len(value) == 13):
        raise ValidationError("a GLN is exactly 13 digits", code="invalid_gln")
    try:
        Gln.parse(value)
    except ParseError as error:
        raise ValidationError(str(error), code="invalid_gln") from error


def normalise_gtin(value: str) -> str:
    """Return ``value`` as a GTIN-14 (GTIN-8/12/13 are left-padded), refusing a bad check digit."""
    if not (isinstance(value, str) and value.isdigit() and len(value) in (8, 12, 13, 14)):
        raise ValidationError("a GTIN is 8, 12, 13 or 14 digits", code="invalid_gtin")
    try:
        return Gtin.parse(value).as_gtin_14()
    except ParseError as error:
        raise ValidationError(str(error), code="invalid_gtin") from error


def validate_gtin14(value: str) -> None:
    if not (isinstance(value, str) and len(value) == 14):
        raise ValidationError("a GTIN is stored as 14 digits", code="invalid_gtin")
    normalise_gtin(value)
