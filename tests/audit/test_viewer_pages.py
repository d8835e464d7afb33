"""The audit-trail pages: /audit/ (filter, results, exports, chain state) and a record's lineage."""

from __future__ import annotations

import datetime
import re

import pytest
from django.db import connection
from django.test import Client

from audit.models import AuditEntry, ChainVerification
from batches import services
from partners.models import Role
from tests.audit.test_viewer_api import Trail, build_trail
from tests.conftest import append_only_guard_lifted, build_network
from tests.factories import TEST_PASSWORD, UserFactory
from tests.test_browser import (  # noqa: F401 - browser is a fixture, used by name
    DESKTOP,
    PHONE,
    SCREENSHOT_DIR,
    browser,
    horizontal_overflow,
    sign_in,
)

TRAIL = "/audit/"
VERIFY_NOW = "/audit/verify/"


@pytest.fixture
def trail(network) -> Trail:
    return build_trail(network)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def lineage_url(trail: Trail) -> str:
    return f"/audit/lineage/batches.batch/{trail.lot.pk}/"


def rows(html: str) -> list[str]:
    """The result rows of the entries table."""
    body = html.split('data-testid="entries"', 1)[-1].split("<tbody>", 1)[-1].split("</tbody>")[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


# --- who may see the pages -------------------------------------------------------------------


@pytest.mark.parametrize("path", [TRAIL, "/audit/lineage/batches.batch/1/"])
def test_pages_need_sign_in(client, trail, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("role", ["warehouse", "other_user"])
def test_pages_refuse_users_without_an_auditor_role(trail, network, role):
    client = signed_in(getattr(network, role))

    assert client.get(TRAIL).status_code == 403
    assert client.get(lineage_url(trail)).status_code == 403


@pytest.mark.parametrize("role", ["qa", "admin", "regulator"])
def test_the_header_links_auditors_to_the_trail(trail, network, role):
    html = signed_in(getattr(network, role)).get("/").content.decode()

    assert 'data-testid="nav-audit"' in html
    assert 'href="/audit/"' in html


def test_the_header_has_no_trail_link_for_others(trail, network):
    html = signed_in(network.warehouse).get("/").content.decode()

    assert 'data-testid="nav-audit"' not in html


def test_superuser_without_a_partner_reads_the_trail(trail):
    root = UserFactory(username="root", partner=None, is_superuser=True, is_staff=True)

    response = signed_in(root).get(TRAIL)

    assert response.status_code == 200
    assert response.context["page"].paginator.count == AuditEntry.objects.count()


# --- /audit/ ---------------------------------------------------------------------------------


def test_trail_page_lists_visible_entries_newest_first_with_chain_state(trail, network):
    client = signed_in(network.qa)
    assert "not verified yet" in client.get(TRAIL).content.decode()
    assert client.post(VERIFY_NOW).status_code == 302

    response = client.get(TRAIL)

    assert response.status_code == 200
    html = response.content.decode()
    assert "chain intact" in html
    assert "by qa" in html
    assert "production order PO-118" in html
    assert "site renamed after the merger" not in html, "the wholesaler's entry is not ours"
    sequences = [entry.sequence for entry in response.context["page"].object_list]
    assert sequences == sorted(sequences, reverse=True)
    assert f'href="{lineage_url(trail)}"' in html
    assert 'href="/api/v1/audit/entries/export/?format=csv"' in html
    assert 'href="/api/v1/audit/entries/export/?format=pdf"' in html


def test_trail_page_filters_and_keeps_the_filter_for_export_and_paging(trail, network):
    query = f"model=batches.batch&object_id={trail.lot.pk}&action=changed"

    response = signed_in(network.qa).get(f"{TRAIL}?{query}")

    html = response.content.decode()
    (row,) = rows(html)
    assert "expiry misread from the batch record" in row
    assert f"/api/v1/audit/entries/export/?format=csv&amp;{query.replace('&', '&amp;')}" in html
    assert '<option value="batches.batch" selected>' in html
    assert '<option value="changed" selected>' in html


def test_trail_page_time_filter_takes_the_browsers_local_input(trail, network):
    signed = AuditEntry.objects.get(action="signed")
    # what <input type="datetime-local" step="1"> sends: local time, no zone, no fraction
    later = (signed.occurred_at + datetime.timedelta(seconds=1)).replace(microsecond=0)

    response = signed_in(network.regulator).get(
        f"{TRAIL}?occurred_before={later:%Y-%m-%dT%H:%M:%S}"
    )

    shown = response.context["page"].object_list
    assert signed.sequence in {entry.sequence for entry in shown}
    assert all(entry.occurred_at < later for entry in shown)


def test_trail_page_shows_a_bad_filter_and_no_rows(trail, network):
    response = signed_in(network.qa).get(f"{TRAIL}?occurred_after=last+tuesday")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'role="alert"' in html
    assert "No entry matches this filter." in html


def test_trail_page_pages_through_the_results(trail, network):
    client = signed_in(network.regulator)
    total = AuditEntry.objects.count()

    first = client.get(TRAIL).context["page"]
    second = client.get(f"{TRAIL}?page=2").context["page"]

    assert first.paginator.count == total
    assert len(first.object_list) == min(50, total)
    if total > 50:
        assert second.number == 2
        assert second.object_list[0].sequence == first.object_list[-1].sequence - 1


def test_trail_page_shows_the_last_verification_and_verify_now_finds_a_break(trail, network):
    """The page shows the latest stored verification (it does not re-read the whole chain on
    each visit); "Verify now" verifies again, keeps the result and shows the break."""
    client = signed_in(network.qa)
    client.post(VERIFY_NOW)
    version = trail.lot.history.order_by("history_id").first()
    entry = AuditEntry.objects.get(source=version._meta.label_lower, record_id=version.pk)
    with append_only_guard_lifted(connection), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {version._meta.db_table} SET lot_number = %s WHERE history_id = %s",  # noqa: S608
            ["FORGED", version.pk],
        )

    assert "chain intact" in client.get(TRAIL).content.decode()  # as last verified
    assert client.post(VERIFY_NOW).status_code == 302
    html = client.get(TRAIL).content.decode()

    assert "chain broken" in html
    assert f"<strong>#{entry.sequence}</strong>" in html
    assert "content_changed" in html
    runs = list(ChainVerification.objects.order_by("finished_at"))
    assert [run.ok for run in runs] == [True, False]
    assert runs[1].requested_by == network.qa
    sealed = AuditEntry.objects.get(source="audit.chainverification", record_id=runs[1].pk)
    assert sealed.action == "verified"


def test_verify_now_is_for_auditors_and_only_by_post(trail, network):
    assert signed_in(network.qa).get(VERIFY_NOW).status_code == 405
    assert signed_in(network.warehouse).post(VERIFY_NOW).status_code == 403
    assert not ChainVerification.objects.exists()


def test_the_nightly_task_keeps_a_verification_by_the_platform(trail):
    from audit.tasks import verify_chain

    outcome = verify_chain.delay().get()
    run = ChainVerification.objects.get()
    assert outcome == {"ok": True, "checked": run.checked, "first_broken": None}
    assert run.requested_by.username == "system"
    assert run.checked == run.head_sequence


# --- lineage page ----------------------------------------------------------------------------


def test_lineage_page_shows_versions_diffs_and_signatures(trail, network):
    services.batch_update_dates(
        batch=trail.lot,
        actor=network.qa,
        reason="manufacturing date per deviation DV-9",
        manufactured_on=datetime.date(2026, 10, 2),
    )

    response = signed_in(network.qa).get(lineage_url(trail))

    assert response.status_code == 200
    html = response.content.decode()
    assert "INS-0042" in html
    versions = html.split('data-testid="version"')[1:]
    assert len(versions) == 3
    newest, corrected, created = versions
    assert "manufacturing date per deviation DV-9" in newest
    assert "manufactured_on" in newest
    assert "2026-10-01" in newest
    assert "→" in newest
    assert "2026-10-02" in newest
    assert "expires_on" in corrected
    assert "2027-09-30" in corrected
    assert "2027-09-15" in corrected
    assert "production order PO-118" in created
    assert "→" not in created, "the first version lists its values, it has no previous one"
    seal = AuditEntry.objects.get(source="batches.historicalbatch", action="created")
    assert f"#{seal.sequence}" in created
    # the signature: its manifestation and its status now that the lot has changed since
    signatures = html.split('data-testid="signatures"', 1)[1].split("</table>", 1)[0]
    assert network.qa.get_full_name() in signatures
    assert "Reviewed" in signatures
    assert "batch record reviewed against the master formula" in signatures
    assert "changed after signature" in signatures
    assert "Signed by" in corrected, "the signed version carries its signature"


def test_lineage_page_of_an_unseen_or_unknown_record_is_not_found(trail, network):
    assert signed_in(network.wholesaler_qa).get(lineage_url(trail)).status_code == 404
    assert signed_in(network.qa).get("/audit/lineage/batches.nothing/1/").status_code == 404
    assert signed_in(network.qa).get("/audit/lineage/batches.batch/x/").status_code == 404
    assert signed_in(network.qa).get("/audit/lineage/batches.batch/999999/").status_code == 404


def test_lineage_page_of_a_user_record_for_its_partners_admin(trail, network):
    clerk = UserFactory(username="clerk", partner=network.manufacturer, role=Role.ORDER_DESK)

    response = signed_in(network.admin).get(f"/audit/lineage/partners.user/{clerk.pk}/")

    assert response.status_code == 200
    assert "clerk" in response.content.decode()


# --- in a real browser -----------------------------------------------------------------------


@pytest.fixture
def live_trail(transactional_db) -> tuple:
    network = build_network()
    return network, build_trail(network)


@pytest.mark.browser
@pytest.mark.parametrize(("viewport", "name"), [(DESKTOP, "audit"), (PHONE, "audit-phone")])
def test_auditor_filters_the_trail_and_opens_a_lineage(
    browser,  # noqa: F811 - the fixture imported above
    live_server,
    live_trail,
    viewport,
    name,
):
    """A QA officer filters the trail to one lot, opens its lineage and sees the signature,
    on a desktop and on a phone, without the page scrolling sideways."""
    network, trail = live_trail
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "qa", TEST_PASSWORD)
        page.get_by_test_id("nav-audit").click()
        page.wait_for_load_state()
        page.get_by_test_id("verify-now").click()
        page.wait_for_load_state()
        assert "chain intact" in page.get_by_test_id("chain").inner_text()

        page.get_by_label("Model").select_option("batches.batch")
        page.get_by_label("Object id").fill(str(trail.lot.pk))
        page.get_by_role("button", name="Filter").click()
        page.wait_for_load_state()

        assert page.get_by_test_id("entries").locator("tbody tr").count() == 3
        assert horizontal_overflow(page) <= 0
        page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)

        page.get_by_role("link", name=f"batches.batch {trail.lot.pk}").first.click()
        page.wait_for_load_state()
        assert page.get_by_test_id("version").count() == 2
        signatures = page.get_by_test_id("signatures").inner_text()
        assert network.qa.get_full_name() in signatures
        assert "valid" in signatures
        assert horizontal_overflow(page) <= 0
        page.screenshot(path=str(SCREENSHOT_DIR / f"{name}-lineage.png"), full_page=True)
    finally:
        context.close()
