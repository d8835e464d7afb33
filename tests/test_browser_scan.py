"""The scan station page /scan/ in a real browser (Debian's chromium, driven by Playwright):
a code typed as a keyboard-wedge scanner types it, then Enter, answers its verdict at once."""

from __future__ import annotations

import datetime

import pytest

from batches import labels
from batches.models import ScanRecord, ScanVerdict
from partners.models import PartnerKind, Role
from tests.factories import (
    TEST_PASSWORD,
    BatchFactory,
    LocationFactory,
    PartnerFactory,
    ProductFactory,
    SiteFactory,
    UserFactory,
)
from tests.test_browser import (
    DESKTOP,
    PHONE,
    SCREENSHOT_DIR,
    horizontal_overflow,
    sign_in,
)
from tests.test_browser import browser as browser  # the shared fixture, used by name

pytestmark = pytest.mark.browser

GTIN = "09501101530003"
GOOD = f"]d201{GTIN}17270331" + "1010D9T"  # what a scanner sends for the lot 10D9T
EXPIRED = f"]d201{GTIN}17260630" + "10OLD1"


class Station:
    """A pharmacy with a shelf, its staff, and two lots of one vaccine (one expired)."""


@pytest.fixture
def station(transactional_db):
    s = Station()
    pharmacy = PartnerFactory(name="Hudson Street Pharmacy", kind=PartnerKind.PHARMACY)
    site = SiteFactory(partner=pharmacy, name="Hudson Street")
    s.shelf = LocationFactory(site=site, code="FRIDGE", name="Pharmacy refrigerator")
    s.product = ProductFactory(
        gtin=GTIN, name="Meriflu Quadrivalent influenza vaccine", strength="0.5 mL"
    )
    s.lot = BatchFactory(
        product=s.product, lot_number="10D9T", expires_on=datetime.date(2027, 3, 31)
    )
    s.expired = BatchFactory(
        product=s.product,
        lot_number="OLD1",
        manufactured_on=datetime.date(2024, 6, 1),
        expires_on=datetime.date(2026, 6, 30),
    )
    s.pharmacist = UserFactory(
        username="pharmacist", first_name="Samuel", partner=pharmacy, role=Role.PARTNER_USER
    )
    s.operator = UserFactory(username="operator", partner=pharmacy, role=Role.WAREHOUSE_OPERATOR)
    return s


def open_station(browser, live_server, username, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    sign_in(page, live_server.url, username, TEST_PASSWORD)
    page.goto(f"{live_server.url}/scan/")
    return context, page


def scan(page, code: str) -> None:
    """Type as a keyboard-wedge scanner does: the characters, then Enter."""
    page.keyboard.type(code)
    page.keyboard.press("Enter")


def verdict_of(page, expected: str) -> dict:
    verdict = page.get_by_test_id("verdict")
    page.wait_for_function(
        "expected => document.getElementById('verdict').dataset.verdict === expected",
        arg=expected,
    )
    return {
        "word": page.get_by_test_id("verdict-word").inner_text(),
        "what": page.get_by_test_id("verdict-what").inner_text(),
        "reasons": page.get_by_test_id("verdict-reasons").inner_text(),
        "background": verdict.evaluate("element => getComputedStyle(element).backgroundColor"),
    }


def code_field_has_focus(page) -> bool:
    return page.evaluate("document.activeElement.id === 'scan-code'")


def test_a_scan_answers_accepted_then_refused_and_both_are_listed(browser, live_server, station):
    """Verify a good pack (green), then an expired one (red, with the reason); the field is
    empty and focused after each, and both scans are recorded and listed."""
    context, page = open_station(browser, live_server, "operator", DESKTOP)
    try:
        assert code_field_has_focus(page), "the code field has the focus on arrival"
        page.get_by_label("Action").select_option("verify")
        assert code_field_has_focus(page), "choosing an action gives the focus back"

        scan(page, GOOD)
        accepted = verdict_of(page, "accepted")

        assert accepted["word"].upper() == "ACCEPTED"
        assert "Meriflu Quadrivalent influenza vaccine 0.5 mL" in accepted["what"]
        assert "LOT 10D9T" in accepted["what"]
        assert "no serial number" in accepted["reasons"]  # the warning, shown with the verdict
        assert accepted["background"] == "rgb(11, 110, 79)"
        assert page.get_by_test_id("scan-code").input_value() == ""
        assert code_field_has_focus(page)

        scan(page, EXPIRED)
        refused = verdict_of(page, "refused")

        assert refused["word"].upper() == "REFUSED"
        assert "lot OLD1 expired on 2026-06-30" in refused["reasons"]
        assert "(lot_expired)" in refused["reasons"]
        assert refused["background"] == "rgb(180, 35, 24)"
        assert code_field_has_focus(page)
        entries = page.get_by_test_id("scan-log").locator("li.scan-entry")
        assert entries.count() == 2
        assert "Refused" in entries.nth(0).inner_text()
        assert "Accepted" in entries.nth(1).inner_text()
        page.screenshot(path=str(SCREENSHOT_DIR / "scan-station.png"), full_page=True)
    finally:
        context.close()

    records = list(ScanRecord.objects.order_by("id").values_list("verdict", "batch__lot_number"))
    assert records == [(ScanVerdict.ACCEPTED, "10D9T"), (ScanVerdict.REFUSED, "OLD1")]


def test_the_field_takes_the_focus_back_after_a_click_elsewhere(browser, live_server, station):
    context, page = open_station(browser, live_server, "operator", DESKTOP)
    try:
        page.get_by_role("heading", name="Last scans").click()
        page.wait_for_function("document.activeElement.id === 'scan-code'")
        page.get_by_label("Reference").fill("SH-2026-000001")
        assert not code_field_has_focus(page), "a person typing a reference keeps its focus"
        page.keyboard.press("Enter")
        assert code_field_has_focus(page)
    finally:
        context.close()


def test_on_a_phone_a_typed_gs_separator_reads_the_serial(browser, live_server, station):
    """On a phone-sized screen: a pharmacist types the code by hand, Ctrl+] for FNC1, so the
    variable-length lot ends and the serial follows. The unknown serial is refused as a suspect
    pack; the page never scrolls sideways."""
    context, page = open_station(browser, live_server, "pharmacist", PHONE)
    try:
        options = page.get_by_label("Action").locator("option").all_inner_texts()
        assert options == ["Receive", "Verify"], "a pharmacist receives and verifies"
        page.get_by_label("Action").select_option("verify")
        page.keyboard.type(f"01{GTIN}17270331" + "1010D9T")
        page.keyboard.press("Control+BracketRight")
        page.keyboard.type("21SN1001")
        page.keyboard.press("Enter")

        refused = verdict_of(page, "refused")

        assert "serial SN1001 of lot 10D9T was never commissioned" in refused["reasons"]
        in_view = page.get_by_test_id("verdict").evaluate(
            "e => { const box = e.getBoundingClientRect();"
            " return box.top >= 0 && box.bottom <= window.innerHeight + 1; }"
        )
        assert in_view, "the answer is brought into view on a small screen"
        assert code_field_has_focus(page)
        page.screenshot(path=str(SCREENSHOT_DIR / "scan-station-phone.png"), full_page=True)
        assert horizontal_overflow(page) <= 0
    finally:
        context.close()
    record = ScanRecord.objects.get()
    assert (record.parsed["lot"], record.parsed["serial"]) == ("10D9T", "SN1001")


def test_a_photo_of_a_pack_is_read_and_checked(browser, live_server, station, tmp_path):
    """The photo button sends a picture of the pack; its DataMatrix is decoded and scanned."""
    picture = tmp_path / "pack.png"
    picture.write_bytes(labels.lot_label_png(labels.LotLabel.for_batch(station.lot)))
    context, page = open_station(browser, live_server, "pharmacist", PHONE)
    try:
        page.get_by_label("Action").select_option("verify")
        page.get_by_test_id("scan-photo").set_input_files(str(picture))

        accepted = verdict_of(page, "accepted")

        assert accepted["what"].startswith("Photo: Verify")
        assert "LOT 10D9T" in accepted["what"]
    finally:
        context.close()
    assert ScanRecord.objects.get().raw_code.startswith("]d201" + GTIN)


def test_a_regulator_is_told_that_the_role_does_not_scan(browser, live_server, station):
    agency = PartnerFactory(name="Agency", kind=PartnerKind.REGULATOR)
    UserFactory(username="inspector", partner=agency, role=Role.REGULATOR)
    context, page = open_station(browser, live_server, "inspector", PHONE)
    try:
        assert "does not scan" in page.get_by_test_id("no-scanning").inner_text()
        assert page.get_by_test_id("scan-code").count() == 0
    finally:
        context.close()


def test_a_scan_refused_before_reading_says_not_checked(browser, live_server, station):
    """A pick names its shipment: without a reference nothing is read or recorded, and the
    page says so in red instead of showing a verdict."""
    context, page = open_station(browser, live_server, "operator", DESKTOP)
    try:
        page.get_by_label("Action").select_option("pick")
        scan(page, GOOD)

        failed = verdict_of(page, "failed")

        assert failed["word"].upper() == "NOT CHECKED"
        assert "(reference_required)" in failed["reasons"]
        assert failed["background"] == "rgb(180, 35, 24)"
        assert code_field_has_focus(page)
    finally:
        context.close()
    assert not ScanRecord.objects.exists()
