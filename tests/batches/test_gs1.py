"""Reading scanner strings: a table of what real scanners send, against the fields expected.

GTIN 04012345678901 (check digit 1) and SSCC 340123450000000017 (check digit 7) are right;
their neighbours with another last digit are wrong.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batches import gs1

GTIN = "04012345678901"
GTIN13 = GTIN[1:]
BAD_GTIN = "04012345678902"
SSCC = "340123450000000017"
BAD_SSCC = "340123450000000018"
GS = "\x1d"
DEC31 = datetime.date(2027, 12, 31)

# (scanner string, format, symbology, fnc1, {ai: value}, expiry)
READABLE = [
    pytest.param(
        f"]d201{GTIN}1727123110ABC123{GS}21SER001",
        "element_string",
        "]d2",
        True,
        {"01": GTIN, "17": "271231", "10": "ABC123", "21": "SER001"},
        DEC31,
        id="datamatrix-symbology-id-and-GS",
    ),
    pytest.param(
        f"01{GTIN}1727123110ABC123{GS}21SER001",
        "element_string",
        None,
        True,
        {"01": GTIN, "17": "271231", "10": "ABC123", "21": "SER001"},
        DEC31,
        id="datamatrix-GS-without-symbology-id",
    ),
    pytest.param(
        f"{GS}01{GTIN}21SER001{GS}17271200{GS}10ABC123\r\n",
        "element_string",
        None,
        True,
        {"01": GTIN, "21": "SER001", "17": "271200", "10": "ABC123"},
        DEC31,  # day 00: the month's last day (GS1 General Specifications 7.12)
        id="leading-FNC1-serial-first-day-00-CRLF",
    ),
    pytest.param(
        f"01{GTIN}1727123110ABC123",
        "element_string",
        None,
        False,
        {"01": GTIN, "17": "271231", "10": "ABC123"},
        DEC31,
        id="bare-no-FNC1-lot-last",
    ),
    pytest.param(
        f"]C101{GTIN}17271231101234",
        "element_string",
        "]C1",
        True,
        {"01": GTIN, "17": "271231", "10": "1234"},
        DEC31,
        id="gs1-128",
    ),
    pytest.param(
        f"]Q301{GTIN}10LOT-7{GS}17271231",
        "element_string",
        "]Q3",
        True,
        {"01": GTIN, "10": "LOT-7", "17": "271231"},
        DEC31,
        id="gs1-qr",
    ),
    pytest.param(
        f"]e001{GTIN}17271231",
        "element_string",
        "]e0",
        True,
        {"01": GTIN, "17": "271231"},
        DEC31,
        id="gs1-databar",
    ),
    pytest.param(
        f"]d201{GTIN}17271231\u241d10ABC",
        "element_string",
        "]d2",
        True,
        {"01": GTIN, "17": "271231", "10": "ABC"},
        DEC31,
        id="visible-GS-picture-from-a-wedge",
    ),
    pytest.param(
        f"(01){GTIN}(17)271231(10)ABC123(21)SER001",
        "hri",
        None,
        False,
        {"01": GTIN, "17": "271231", "10": "ABC123", "21": "SER001"},
        DEC31,
        id="hri-parentheses",
    ),
    pytest.param(
        f"(01) {GTIN} (17) 271231 (10) ABC123",
        "hri",
        None,
        False,
        {"01": GTIN, "17": "271231", "10": "ABC123"},
        DEC31,
        id="hri-typed-with-spaces",
    ),
    pytest.param(
        f"https://id.gs1.org/01/{GTIN}/10/ABC123/21/SER001?17=271231",
        "digital_link",
        None,
        False,
        {"01": GTIN, "10": "ABC123", "21": "SER001", "17": "271231"},
        DEC31,
        id="digital-link",
    ),
    pytest.param(
        f"]Q1https://id.gs1.org/01/{GTIN13}/10/A%2FB",
        "digital_link",
        "]Q1",
        False,
        {"01": GTIN, "10": "A/B"},
        None,
        id="digital-link-in-plain-qr-gtin13-percent-encoded",
    ),
    pytest.param(f"00{SSCC}", "element_string", None, False, {"00": SSCC}, None, id="sscc-element"),
    pytest.param(
        f"]C100{SSCC}02{GTIN}3712{GS}10ABC",
        "element_string",
        "]C1",
        True,
        {"00": SSCC, "02": GTIN, "37": "12", "10": "ABC"},
        None,
        id="sscc-label-with-content",
    ),
    pytest.param(SSCC, "sscc", None, False, {"00": SSCC}, None, id="sscc-18-digits"),
    pytest.param(GTIN13, "gtin", None, False, {"01": GTIN}, None, id="gtin-13"),
    pytest.param(GTIN, "gtin", None, False, {"01": GTIN}, None, id="gtin-14"),
    pytest.param(f"]E0{GTIN13}", "gtin", "]E0", False, {"01": GTIN}, None, id="ean-13-id"),
]


@pytest.mark.parametrize(("code", "fmt", "symbology", "fnc1", "ais", "expiry"), READABLE)
def test_real_scanner_strings_are_read_with_every_ai(code, fmt, symbology, fnc1, ais, expiry):
    reading = gs1.parse(code)
    assert reading.problem is None, reading.problem
    assert reading.format == fmt
    assert reading.symbology == symbology
    assert reading.fnc1 is fnc1
    assert {element.ai: element.value for element in reading.elements} == ais
    assert reading.expiry == expiry
    data = reading.as_dict()
    assert data["gtin"] == ais.get("01", ais.get("02"))
    assert data["lot"] == ais.get("10")


# (scanner string, problem code)
REFUSED = [
    pytest.param("", "empty_code", id="empty"),
    pytest.param("\r\n", "empty_code", id="only-a-line-end"),
    pytest.param("]d2", "empty_code", id="identifier-without-data"),
    pytest.param("x" * (gs1.MAX_CODE_LENGTH + 1), "code_too_long", id="too-long"),
    pytest.param("hello world", "not_gs1", id="text"),
    pytest.param("10D9T", "not_gs1", id="bare-lot-looking-like-an-AI"),
    pytest.param("4012345678902", "check_digit_invalid", id="gtin-13-bad-check-digit"),
    pytest.param(f"01{BAD_GTIN}17271231", "check_digit_invalid", id="element-bad-gtin"),
    pytest.param(f"]d201{BAD_GTIN}10A", "check_digit_invalid", id="datamatrix-bad-gtin"),
    pytest.param(f"00{BAD_SSCC}", "check_digit_invalid", id="sscc-bad-check-digit"),
    pytest.param(BAD_SSCC, "check_digit_invalid", id="bare-sscc-bad-check-digit"),
    pytest.param(f"]d201{GTIN}17271331", "malformed_gs1", id="month-13"),
    pytest.param(f"]d201{GTIN}10A{GS}10B", "malformed_gs1", id="ai-twice-different"),
    pytest.param("]d2hello", "malformed_gs1", id="datamatrix-not-an-element-string"),
    pytest.param("]d1hello", "not_gs1", id="plain-datamatrix"),
    pytest.param(f"]C001{GTIN}", "not_gs1", id="plain-code-128-is-no-gs1"),
    pytest.param("]", "not_gs1", id="lone-bracket"),
    pytest.param("]Yx0", "not_gs1", id="system-expansion-malformed"),
    pytest.param("]!0abc", "not_gs1", id="unknown-symbology"),
    pytest.param("https://example.com/hello", "not_gs1", id="url-not-a-digital-link"),
    pytest.param("https://[::1", "not_gs1", id="broken-url"),
    pytest.param(f"01{GTIN}\x0010A", "not_gs1", id="nul-inside"),
    pytest.param("\x00\x01\x02", "not_gs1", id="binary"),
    pytest.param(f"01{GTIN}10LÖT", "not_gs1", id="non-ascii"),
    pytest.param("(99)", "malformed_gs1", id="hri-without-data"),
]


@pytest.mark.parametrize(("code", "problem"), REFUSED)
def test_what_is_not_read_has_its_own_code(code, problem):
    reading = gs1.parse(code)
    assert reading.problem is not None
    assert reading.problem.code == problem
    assert reading.problem.detail


def test_a_bare_string_named_like_an_ai_is_not_taken_but_shown():
    """``10D9T`` would read as AI (10) lot D9T: without a symbology identifier or FNC1 it is
    reported as not GS1, with the reading it would have had, and nothing is matched."""
    reading = gs1.parse("10D9T")
    assert reading.elements == []
    assert reading.lot is None
    assert reading.unconfirmed == "(10)D9T"
    assert "(10)D9T" in reading.problem.detail


def test_the_same_string_with_a_symbology_identifier_is_a_lot():
    reading = gs1.parse("]d210D9T")
    assert reading.problem is None
    assert reading.lot == "D9T"
    assert reading.gtin is None  # read, but it names no trade item: the scan refuses it


def test_a_bare_ean13_is_a_gtin_not_ai_400():
    """13 digits beginning 400 would read as AI (400), a purchase order number."""
    reading = gs1.parse(GTIN13)
    assert reading.format == "gtin"
    assert reading.gtin == GTIN
    assert [element.ai for element in reading.elements] == ["01"]


def test_a_wrong_check_digit_keeps_every_ai_found():
    reading = gs1.parse(f"]d201{BAD_GTIN}17271231{GS}10ABC")
    assert reading.problem.code == "check_digit_invalid"
    assert [element.ai for element in reading.elements] == ["01", "17", "10"]


def test_a_foreign_digital_link_host_is_reported_never_trusted():
    reading = gs1.parse(f"https://id.gs1.org.evil.example/01/{GTIN}/10/ABC")
    assert reading.problem is None
    assert reading.host == "id.gs1.org.evil.example"
    assert reading.host_trusted is False
    assert reading.as_dict()["host_trusted"] is False
    userinfo = gs1.parse(f"https://id.gs1.org@evil.example/01/{GTIN}/10/ABC")
    assert userinfo.host == "evil.example"
    assert userinfo.host_trusted is False


def test_trusted_hosts_come_from_the_settings(settings):
    settings.GS1_DIGITAL_LINK_HOSTS = ["dl.acme-pharma.example"]
    assert gs1.parse(f"https://DL.acme-pharma.example/01/{GTIN}").host_trusted is True
    assert gs1.parse(f"https://id.gs1.org/01/{GTIN}").host_trusted is False


def test_without_fnc1_a_trailing_variable_field_is_noted():
    reading = gs1.parse(f"01{GTIN}1727123110ABC12321SER001")
    assert reading.lot == "ABC12321SER001"  # as GS1 reads it: the lot ran to the end
    assert reading.serial is None
    assert reading.notes


def test_escaping_makes_any_code_safe_to_store():
    escaped = gs1.escape_code(f"01{GTIN}\x1d\x00\\\u00e9\U0001f600", limit=600)
    assert escaped == f"01{GTIN}<GS>\\x00\\\\\\xe9\\U0001f600"
    assert escaped.isascii()
    assert len(gs1.escape_code("\x00" * 1000, limit=60)) <= 60


def _escaped_one_by_one(raw: str, limit: int) -> str:
    """The escape by its definition: each character in turn, cut before the limit."""
    out, size = [], 0
    for char in raw:
        piece = gs1._escape(char)
        if size + len(piece) > limit - 1:
            return "".join(out) + "…"
        out.append(piece)
        size += len(piece)
    return "".join(out)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet=st.characters(max_codepoint=0x7F)),
        st.text(alphabet="0123456789AB\\\x1d\x00\x7f", max_size=80),
    ),
    st.integers(min_value=1, max_value=120),
)
def test_the_quick_escape_of_ascii_codes_is_the_escape_by_definition(raw, limit):
    assert gs1.escape_code(raw, limit=limit) == _escaped_one_by_one(raw, limit)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet=st.characters(max_codepoint=0x7F)),
        st.builds(lambda s: "]d2" + s, st.text(alphabet="0123456789ABC\x1d()/", max_size=60)),
        st.builds(lambda s: "01" + s, st.text(alphabet="0123456789\x1d", max_size=60)),
        st.builds(lambda s: "https://x/" + s, st.text(max_size=60)),
        st.builds(lambda s: "(" + s, st.text(alphabet="0123456789()ABC", max_size=60)),
        st.builds(lambda s: "]" + s, st.text(max_size=8)),
    )
)
def test_any_text_gets_a_reading_or_a_problem_never_an_exception(text):
    reading = gs1.parse(text)
    assert reading.ok or reading.problem.code in {
        "empty_code",
        "code_too_long",
        "not_gs1",
        "malformed_gs1",
        "check_digit_invalid",
    }
    reading.as_dict()
