"""Pages of the audit-trail viewer: the filtered trail at /audit/, a record's lineage.

Signed-in auditors only (anyone else: sign-in redirect or 403); what each one sees is the
rule of :mod:`audit.selectors`, the same as the API's.
"""

from __future__ import annotations

import functools

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from pharmadms.exceptions import InvalidInput, NotFound

from . import selectors, services
from .api import is_auditor
from .filters import AuditEntryFilter
from .models import AuditAction, ChainVerification

PAGE_SIZE = 50


def auditor_required(view):
    """Sign-in first (redirect), then an auditor's role (403)."""

    @login_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_auditor(request.user):
            raise PermissionDenied("the audit trail is for QA officers, administrators, inspectors")
        return view(request, *args, **kwargs)

    return wrapped


@require_GET
@auditor_required
def audit_trail(request):
    """The filter form, the matching entries newest first, export links, the chain's state."""
    entries = selectors.visible_entries(request.user).order_by("-sequence")
    filterset = AuditEntryFilter(request.GET or None, queryset=entries, request=request)
    if not filterset.is_bound:
        results = entries
    elif filterset.is_valid():
        results = filterset.qs
    else:  # the form shows the errors; an invalid filter matches nothing rather than everything
        results = entries.none()
    page = Paginator(results, PAGE_SIZE).get_page(request.GET.get("page"))
    lineage_models = set(selectors.historied_models())
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    return render(
        request,
        "audit/trail.html",
        {
            "filter": filterset,
            "model_choices": selectors.audited_model_labels(),
            "action_choices": AuditAction.choices,
            "page": page,
            "lineage_models": lineage_models,
            "query": query.urlencode(),
            # The latest stored verification: re-reading the whole chain on every visit would
            # not scale with it. "Verify now" (below) and the nightly task add a new one.
            "verification": ChainVerification.objects.select_related("requested_by").first(),
        },
    )


@require_POST
@auditor_required
def verify_now(request):
    """Verify the whole chain now, keep the result, and show it on the trail page."""
    services.chain_verification_run(
        actor=request.user, reason="verification of the chain asked from the audit-trail page"
    )
    return redirect("audit-trail")


@require_GET
@auditor_required
def record_lineage(request, model: str, object_id: str):
    """Every version of one record, newest first, with diffs, seals and signatures."""
    try:
        lineage = selectors.record_lineage(
            user=request.user, model_label=model, object_id=object_id
        )
    except (InvalidInput, NotFound) as error:
        raise Http404(error.detail) from error
    return render(request, "audit/lineage.html", {"lineage": lineage})
