"""Reading what a barcode scanner sends: GS1 element strings, HRI, Digital Link, SSCC, GTIN.

Every reading goes through ``biip``; this module only decides *which* of biip's parsers a code
is for, and refuses to guess when nothing in the code says it is GS1.

What is read, and how:

- **Symbology identifier** (``]d2`` GS1 DataMatrix, ``]C1`` GS1-128, ``]Q3`` GS1 QR, ``]e0``
  GS1 DataBar, ``]J1`` GS1 DotCode): the rest is a GS1 element string, FNC1 transmitted as the
  group separator GS (0x1D). ``]E0``/``]E4``/``]I1`` (EAN/UPC, ITF-14): the rest is a GTIN.
  Any other identifier (``]d1`` plain DataMatrix, ``]Q1`` plain QR, ``]C0`` Code 128, …) says
  the data is *not* a GS1 element string; only a GS1 Digital Link URI is read from it.
- **Parentheses** ``(01)…(17)…(10)…``: the human-readable interpretation, read with
  ``GS1Message.parse_hri``.
- **http(s) URI**: a GS1 Digital Link, read with ``GS1DigitalLinkURI.parse``. The host is
  reported, never used to identify anything; whether it is a trusted resolver is a separate
  fact (:func:`is_trusted_host`), and the scan workflow refuses a foreign one.
- **No identifier, but a GS separator or a leading FNC1**: a GS1 element string.
- **Bare digits**: 8, 12, 13 or 14 digits are a GTIN; 18 digits are an SSCC.

**The bare-string rule.** A code with no symbology identifier, no FNC1/GS and no parentheses
carries no sign of being GS1: ``10D9T`` may be AI (10) with lot ``D9T`` or simply a label that
reads "10D9T"; ``4001234567896`` would read as AI (400) but is an EAN-13. Every scan action
expects a trade item (01) or a logistic unit (00), so such a string is taken as a GS1 element
string only when it begins with a primary key — (00), (01) or (02) — whose check digit is right
(a wrong check digit is reported as such). Anything else is answered ``not_gs1``; the reading
biip would have made is reported as ``unconfirmed`` so a person can see it, but nothing is
matched against it.

Problems have their own codes: ``empty_code``, ``code_too_long``, ``not_gs1``,
``malformed_gs1`` (GS1 by its form, but an element string is broken), ``check_digit_invalid``.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from biip import ParseError
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementStrings
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.sscc import Sscc
from biip.symbology import GS1Symbology, ISOSymbology, SymbologyIdentifier
from django.conf import settings

logger = logging.getLogger(__name__)

# A GS1 DataMatrix holds at most 2,335 characters; a longer "scan" is not a barcode.
MAX_CODE_LENGTH = 2400
GS = "\x1d"
# FNC1 arrives as GS; some keyboard-wedge set-ups send its visible picture (U+241D) instead,
# because a browser input drops the control character.
SEPARATORS = (GS, "\u241d")
# Resolvers trusted by default; a deployment adds its brand owners' (GS1_DIGITAL_LINK_HOSTS).
DEFAULT_TRUSTED_HOSTS = ("id.gs1.org",)

GS1_MESSAGE_SYMBOLOGIES = frozenset(GS1Symbology.with_gs1_messages())
GTIN_SYMBOLOGIES = frozenset(GS1Symbology.with_gtin())
DIGITAL_LINK_ISO_SYMBOLOGIES = frozenset({ISOSymbology.DATA_MATRIX, ISOSymbology.QR_CODE})
PRIMARY_KEYS = ("00", "01", "02")

EMPTY_CODE = "empty_code"
CODE_TOO_LONG = "code_too_long"
NOT_GS1 = "not_gs1"
MALFORMED_GS1 = "malformed_gs1"
CHECK_DIGIT_INVALID = "check_digit_invalid"


class Format:
    ELEMENT_STRING = "element_string"
    HRI = "hri"
    DIGITAL_LINK = "digital_link"
    GTIN = "gtin"
    SSCC = "sscc"


@dataclass(frozen=True)
class Problem:
    """Why a code could not be read (``code`` machine-readable, ``detail`` for people)."""

    code: str
    detail: str


@dataclass(frozen=True)
class Element:
    """One application identifier found in a code, with its value as encoded."""

    ai: str
    title: str
    value: str
    date: datetime.date | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ai": self.ai, "title": self.title, "value": self.value}
        if self.date is not None:
            data["date"] = self.date.isoformat()
        return data


@dataclass
class Reading:
    """What was read from one scan: every AI found, or the problem that stopped the reading."""

    format: str | None = None
    symbology: str | None = None
    fnc1: bool = False
    host: str | None = None
    elements: list[Element] = field(default_factory=list)
    problem: Problem | None = None
    unconfirmed: str | None = None  # a bare reading not taken as GS1 (the HRI biip would give)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def value(self, ai: str) -> str | None:
        for element in self.elements:
            if element.ai == ai:
                return element.value
        return None

    def date(self, ai: str) -> datetime.date | None:
        for element in self.elements:
            if element.ai == ai:
                return element.date
        return None

    @property
    def gtin(self) -> str | None:
        """The GTIN-14 of the trade item: (01), or (02) for the content of a logistic unit."""
        return self.value("01") or self.value("02")

    @property
    def lot(self) -> str | None:
        return self.value("10")

    @property
    def expiry(self) -> datetime.date | None:
        return self.date("17")

    @property
    def serial(self) -> str | None:
        return self.value("21")

    @property
    def sscc(self) -> str | None:
        return self.value("00")

    @property
    def count(self) -> int | None:
        """Units stated by the code: (37) count of trade items or (30) variable count."""
        value = self.value("37") or self.value("30")
        return int(value) if value and value.isdigit() else None

    @property
    def host_trusted(self) -> bool | None:
        return None if self.host is None else is_trusted_host(self.host)

    def as_dict(self) -> dict[str, Any]:
        """The reading as JSON: every AI, and the usual ones by name for a scanner screen."""
        expiry = self.expiry
        data: dict[str, Any] = {
            "format": self.format,
            "symbology": self.symbology,
            "fnc1": self.fnc1,
            "elements": [element.as_dict() for element in self.elements],
            "gtin": self.gtin,
            "lot": self.lot,
            "expiry": expiry.isoformat() if expiry else None,
            "serial": self.serial,
            "sscc": self.sscc,
            "count": self.count,
        }
        if self.host is not None:
            data["host"] = self.host
            data["host_trusted"] = self.host_trusted
        if self.unconfirmed is not None:
            data["unconfirmed"] = self.unconfirmed
        if self.notes:
            data["notes"] = list(self.notes)
        if self.problem is not None:
            data["problem"] = {"code": self.problem.code, "detail": self.problem.detail}
        return data


def is_trusted_host(host: str) -> bool:
    """Whether a Digital Link host is a resolver this deployment trusts."""
    trusted = getattr(settings, "GS1_DIGITAL_LINK_HOSTS", None) or DEFAULT_TRUSTED_HOSTS
    return host.lower() in {name.lower() for name in trusted}


def _escape(char: str) -> str:
    if char == GS:
        return "<GS>"
    if " " <= char <= "~":
        return "\\\\" if char == "\\" else char
    if ord(char) < 0x100:
        return f"\\x{ord(char):02x}"
    if ord(char) < 0x10000:
        return f"\\u{ord(char):04x}"
    return f"\\U{ord(char):08x}"


# Every ASCII character's escape, for str.translate (the printable ones but "\\" stay).
_ASCII_ESCAPES = {
    code: _escape(chr(code)) for code in range(0x80) if _escape(chr(code)) != chr(code)
}


def escape_code(raw: str, limit: int = 512) -> str:
    """A code made safe to store and show: control characters as ``\\xNN`` escapes (GS as
    ``<GS>``), non-ASCII as ``\\uNNNN``, cut to ``limit`` characters with a marker."""
    if raw.isascii():  # what scanners send: escaped at once, and whole if it fits
        escaped = raw.translate(_ASCII_ESCAPES)
        if len(escaped) <= limit - 1:
            return escaped
    out: list[str] = []
    size = 0
    for char in raw:
        piece = _escape(char)
        if size + len(piece) > limit - 1:
            out.append("…")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def parse(raw: str) -> Reading:
    """Read one scan. Never raises for any input: a problem is returned in the reading."""
    if not isinstance(raw, str):
        return Reading(problem=Problem(NOT_GS1, "a scan is text"))
    if len(raw) > MAX_CODE_LENGTH:
        return Reading(
            problem=Problem(
                CODE_TOO_LONG,
                f"{len(raw):,} characters: no barcode holds more than {MAX_CODE_LENGTH:,}",
            )
        )
    text = raw
    for separator in SEPARATORS[1:]:
        text = text.replace(separator, GS)
    # Scanners end a scan with CR/LF or a tab; GS is not stripped here: a leading one is FNC1.
    text = text.strip(" \t\r\n")
    if not text.strip(GS):
        return Reading(problem=Problem(EMPTY_CODE, "the scan is empty"))
    outside = next((char for char in text if char != GS and not " " <= char <= "~"), None)
    if outside is not None:
        return Reading(
            problem=Problem(
                NOT_GS1,
                f"the code holds {escape_code(outside)!s}, outside the GS1 character set",
            )
        )
    try:
        return _read(text)
    except (ParseError, ValueError, IndexError, KeyError) as error:
        return Reading(problem=Problem(MALFORMED_GS1, _detail(error)))
    except Exception as error:  # biip on input nobody foresaw: a refusal, never a crash
        logger.warning("unexpected error reading a scan: %r", error)
        return Reading(problem=Problem(MALFORMED_GS1, "the code could not be read"))


def _read(text: str) -> Reading:
    reading = Reading()
    if text.startswith("]"):
        if len(text) < 3:
            return _problem(reading, NOT_GS1, "an incomplete symbology identifier")
        try:
            identifier = SymbologyIdentifier.extract(text)
        except (ParseError, ValueError, IndexError) as error:
            return _problem(reading, NOT_GS1, f"unknown symbology identifier: {_detail(error)}")
        reading.symbology = identifier.value
        text = text[len(identifier.value) :]
        return _read_after_identifier(reading, identifier, text)
    if text.startswith(GS):
        reading.fnc1 = True
        return _read_element_string(reading, text.lstrip(GS))
    if _is_uri(text):
        return _read_digital_link(reading, text)
    if text.startswith("("):
        return _read_hri(reading, text)
    if GS in text:
        reading.fnc1 = True
        return _read_element_string(reading, text)
    return _read_bare(reading, text)


def _read_after_identifier(reading: Reading, identifier: SymbologyIdentifier, text: str):
    if not text.strip(GS):
        return _problem(reading, EMPTY_CODE, f"{identifier.value} with no data")
    symbology = identifier.gs1_symbology
    if _is_uri(text) and identifier.iso_symbology in DIGITAL_LINK_ISO_SYMBOLOGIES:
        return _read_digital_link(reading, text)
    if symbology in GS1_MESSAGE_SYMBOLOGIES:
        reading.fnc1 = True  # the symbology identifier says FNC1 led the symbol
        return _read_element_string(reading, text.lstrip(GS))
    if symbology in GTIN_SYMBOLOGIES:
        return _read_gtin(reading, text)
    return _problem(
        reading,
        NOT_GS1,
        f"symbology {identifier.value} ({identifier.iso_symbology.name.replace('_', ' ')}) "
        "carries no GS1 data",
    )


def _read_bare(reading: Reading, text: str) -> Reading:
    if text.isdigit() and len(text) in (8, 12, 13, 14):
        return _read_gtin(reading, text)
    if text.isdigit() and len(text) == 18:
        return _read_sscc(reading, text)
    try:
        message = GS1Message.parse(text)
    except ParseError:
        return _problem(reading, NOT_GS1, "the code is not a GS1 barcode")
    elements = message.element_strings
    if not elements or elements[0].ai.ai not in PRIMARY_KEYS:
        reading.unconfirmed = message.as_hri()
        return _problem(
            reading,
            NOT_GS1,
            f"without a symbology identifier or FNC1 nothing says {text!r} is GS1: it would "
            f"read as {reading.unconfirmed}, which names no trade item or logistic unit; "
            "not taken",
        )
    reading.format = Format.ELEMENT_STRING
    return _take_elements(reading, elements)


def _read_element_string(reading: Reading, text: str) -> Reading:
    reading.format = Format.ELEMENT_STRING
    if GS in text:
        reading.fnc1 = True
    try:
        message = GS1Message.parse(text)
    except ParseError as error:
        return _problem(reading, MALFORMED_GS1, _detail(error))
    return _take_elements(reading, message.element_strings)


def _read_hri(reading: Reading, text: str) -> Reading:
    reading.format = Format.HRI
    try:
        message = GS1Message.parse_hri(text)
    except ParseError as error:
        return _problem(reading, MALFORMED_GS1, _detail(error))
    return _take_elements(reading, message.element_strings)


def _read_digital_link(reading: Reading, text: str) -> Reading:
    reading.format = Format.DIGITAL_LINK
    try:
        parts = urlsplit(text)
        reading.host = (parts.hostname or "").lower()
    except ValueError as error:
        return _problem(reading, NOT_GS1, f"not a valid URI: {_detail(error)}")
    try:
        uri = GS1DigitalLinkURI.parse(text)
    except ParseError as error:
        detail = _detail(error)
        code = NOT_GS1 if "primary identifier" in detail else MALFORMED_GS1
        return _problem(reading, code, f"not a GS1 Digital Link: {detail}")
    return _take_elements(reading, uri.element_strings)


def _read_gtin(reading: Reading, text: str) -> Reading:
    reading.format = Format.GTIN
    try:
        gtin = Gtin.parse(text)
    except ParseError as error:
        detail = _detail(error)
        code = CHECK_DIGIT_INVALID if "check digit" in detail else MALFORMED_GS1
        return _problem(reading, code, detail)
    reading.elements.append(Element("01", "GTIN", gtin.as_gtin_14()))
    return reading


def _read_sscc(reading: Reading, text: str) -> Reading:
    reading.format = Format.SSCC
    try:
        Sscc.parse(text)
    except ParseError as error:
        detail = _detail(error)
        code = CHECK_DIGIT_INVALID if "check digit" in detail else MALFORMED_GS1
        return _problem(reading, code, detail)
    reading.elements.append(Element("00", "SSCC", text))
    return reading


def _take_elements(reading: Reading, elements: GS1ElementStrings) -> Reading:
    """Keep every AI found; the first problem among them (a check digit, a repeated AI with
    another value) is the reading's problem."""
    seen: dict[str, str] = {}
    problem: Problem | None = None
    for element in elements:
        ai = element.ai.ai
        if ai in seen:
            if seen[ai] != element.value and problem is None:
                problem = Problem(
                    MALFORMED_GS1,
                    f"AI ({ai}) appears twice with different values "
                    f"({escape_code(seen[ai])!r}, {escape_code(element.value)!r})",
                )
            continue
        seen[ai] = element.value
        reading.elements.append(
            Element(ai=ai, title=element.ai.data_title, value=element.value, date=element.date)
        )
        error = element.gtin_error or element.sscc_error or element.gln_error
        if error and problem is None:
            code = CHECK_DIGIT_INVALID if "check digit" in error else MALFORMED_GS1
            problem = Problem(code, f"AI ({ai}): {escape_code(error, limit=300)}")
    reading.problem = problem
    if not reading.elements:
        return _problem(reading, NOT_GS1, "the code holds no GS1 element string")
    last = elements[-1]
    if (
        not reading.fnc1
        and reading.format == Format.ELEMENT_STRING
        and last.ai.separator_required
        and len(reading.elements) > 1
    ):
        reading.notes.append(
            f"no FNC1 separator: AI ({last.ai.ai}) ran to the end of the code; if it should "
            "stop earlier, the scanner drops FNC1"
        )
    return reading


def _is_uri(text: str) -> bool:
    return text[:8].lower() == "https://" or text[:7].lower() == "http://"


def _problem(reading: Reading, code: str, detail: str) -> Reading:
    reading.problem = Problem(code, detail)
    return reading


def _detail(error: Exception) -> str:
    """biip's message, made safe to show (it quotes the input)."""
    return escape_code(str(error), limit=300)
