"""Template tags of the scanning pages: the refused-scans panel of the QA dashboard and of a
lot page, and the links to a lot's printable labels."""

from __future__ import annotations

import datetime

from django import template
from django.utils import timezone

from batches.models import Batch
from batches.selectors import refused_scan_summary, refused_scans
from partners.models import Role

register = template.Library()

# The QA dashboard looks back this far, and lists at most this many refusals.
DASHBOARD_DAYS = 7
PANEL_ROWS = 20
# Who reviews refused scans on the dashboard: QA officers and administrators.
REVIEWER_ROLES = {Role.QA_OFFICER, Role.ADMIN}


def _scope(user):
    """The partner whose scans the user reviews (None: every partner, for regulators)."""
    return None if user.sees_everything else user.partner


@register.inclusion_tag("batches/_refused_scans.html", takes_context=True)
def refused_scans_dashboard(context):
    """The QA dashboard's section: refusals of the last days by reason, then the latest ones.
    Shown to QA officers and administrators (and regulators); nothing for other roles."""
    user = context["request"].user
    visible = user.is_authenticated and (user.sees_everything or user.role in REVIEWER_ROLES)
    if not visible or (user.partner_id is None and not user.sees_everything):
        return {"show": False}
    since = timezone.now() - datetime.timedelta(days=DASHBOARD_DAYS)
    scans = refused_scans(partner=_scope(user), since=since)
    return {
        "show": True,
        "title": f"Refused scans, last {DASHBOARD_DAYS} days",
        "summary": refused_scan_summary(scans),
        "scans": list(scans[:PANEL_ROWS]),
        "total": scans.count(),
        "empty": "No scan was refused.",
        "testid": "refused-scans",
    }


@register.inclusion_tag("batches/_refused_scans.html", takes_context=True)
def refused_scans_of_lot(context, batch: Batch):
    """Every refused scan of one lot at the user's partner (all partners for regulators)."""
    user = context["request"].user
    if not user.is_authenticated or (user.partner_id is None and not user.sees_everything):
        return {"show": False}
    scans = refused_scans(partner=_scope(user)).filter(batch=batch)
    return {
        "show": True,
        "title": "Refused scans of this lot",
        "summary": [],
        "scans": list(scans[:PANEL_ROWS]),
        "total": scans.count(),
        "empty": "No scan of this lot was refused.",
        "testid": "lot-refused-scans",
    }


@register.inclusion_tag("batches/_label_links.html")
def lot_label_links(batch: Batch):
    """Links to the lot's printable GS1 DataMatrix label (PNG and PDF)."""
    return {"batch": batch}
