"""The sign-in and home pages in a real browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batches import services
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

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Screenshots land here, to be looked at after a run (CI may point it at its artefacts).
SCREENSHOT_DIR = Path(os.environ.get("BROWSER_SCREENSHOT_DIR", "/tmp"))  # noqa: S108

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread, and Django then refuses database
    # access here as if it were async code. The test code itself stays synchronous, so allow it
    # for as long as the browser runs.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()


@pytest.fixture
def pharmacist(transactional_db):
    """A pharmacy with one lot on hand, and a pharmacist who signs in."""
    pharmacy = PartnerFactory(name="Hudson Street Pharmacy", kind=PartnerKind.PHARMACY)
    site = SiteFactory(partner=pharmacy)
    shelf = LocationFactory(site=site, code="FRIDGE", name="Pharmacy refrigerator")
    batch = BatchFactory(
        product=ProductFactory(name="Meriflu Quadrivalent influenza vaccine", strength="0.5 mL"),
        lot_number="FQ4821A",
    )
    receiver = UserFactory(partner=pharmacy, role=Role.WAREHOUSE_OPERATOR)
    services.stock_receive(
        batch=batch,
        location=shelf,
        quantity=240,
        actor=receiver,
        reason="opening balance from delivery note DN-100234",
    )
    return UserFactory(
        username="pharmacist",
        first_name="Samuel",
        last_name="Okafor",
        partner=pharmacy,
        role=Role.PARTNER_USER,
    )


def sign_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def horizontal_overflow(page) -> int:
    """Pixels by which the page is wider than the viewport (0 when nothing scrolls sideways)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


@pytest.mark.parametrize(
    ("viewport", "screenshot"), [(DESKTOP, "home.png"), (PHONE, "home-phone.png")]
)
def test_sign_in_shows_partner_role_and_stock(
    browser, live_server, pharmacist, viewport, screenshot
):
    """After signing in, the home page names the partner and role and lists the lot on hand,
    without scrolling sideways, on a desktop and on a phone."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "pharmacist", TEST_PASSWORD)

        assert page.url.rstrip("/") == live_server.url
        heading = page.get_by_role("heading", level=1)
        assert heading.inner_text() == "Hudson Street Pharmacy"
        assert page.get_by_test_id("role").inner_text() == "Partner user"
        row = page.get_by_test_id("stock").locator("tbody tr")
        assert row.count() == 1
        cells = [text.strip() for text in row.locator("td").all_inner_texts()]
        assert "Meriflu Quadrivalent influenza vaccine 0.5 mL" in cells
        assert "FQ4821A" in cells
        assert "240" in cells
        page.screenshot(path=str(SCREENSHOT_DIR / screenshot), full_page=True)
        assert horizontal_overflow(page) <= 0
    finally:
        context.close()


def test_wrong_password_shows_the_error(browser, live_server, pharmacist):
    """A wrong password keeps the user on the sign-in page with an error."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "pharmacist", "not-the-password")

        assert page.url.startswith(f"{live_server.url}/login/")
        alert = page.get_by_role("alert")
        assert "did not match" in alert.inner_text()
        assert page.get_by_role("button", name="Sign in").is_visible()
        assert page.get_by_label("Username").input_value() == "pharmacist", "kept for a retry"
        assert page.get_by_label("Password").input_value() == ""
        page.screenshot(path=str(SCREENSHOT_DIR / "login-error.png"))
    finally:
        context.close()
