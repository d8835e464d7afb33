"""Pages of the batches app: a lot with its audit trail, its signatures and the QA decision."""

from __future__ import annotations

import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from audit.history import history_diff
from audit.models import AuditEntry, Signature
from audit.selectors import signature_list_for_record
from partners.models import Role
from pharmadms.exceptions import ApplicationError, InvalidInput

from . import services
from .api import visible_batches
from .models import Batch, BatchStatus

DECISIONS = {"release": services.batch_release, "reject": services.batch_reject}
HISTORY_TYPES = {"+": "created", "~": "changed", "-": "deleted"}


def can_decide(user, batch: Batch) -> bool:
    """Whether the signing form is offered: the manufacturer's QA officer, lot in quarantine."""
    return (
        user.role == Role.QA_OFFICER
        and user.partner_id is not None
        and user.partner_id == batch.product.manufacturer_id
        and batch.status == BatchStatus.QUARANTINE
    )


def _audit_trail(batch: Batch) -> tuple[list[dict], dict[int, int]]:
    """Every version of the lot (who, when, why, what changed), each with its chain sequence;
    and the chain sequence of each of the lot's signatures."""
    history_source = batch.history.model._meta.label_lower
    signature_source = Signature._meta.label_lower
    sealed = AuditEntry.objects.filter(
        object_model=Batch._meta.label_lower, object_id=str(batch.pk)
    ).values_list("source", "record_id", "sequence")
    version_seals, signature_seals = {}, {}
    for source, record_id, sequence in sealed:
        if source == history_source:
            version_seals[record_id] = sequence
        elif source == signature_source:
            signature_seals[record_id] = sequence
    versions, previous = [], None
    for version in batch.history.select_related("history_user").order_by("history_id"):
        versions.append(
            {
                "history_id": version.history_id,
                "when": version.history_date,
                "who": version.history_user,
                "action": HISTORY_TYPES.get(version.history_type, version.history_type),
                "reason": version.history_change_reason,
                "changes": history_diff(version, previous),
                "sequence": version_seals.get(version.history_id),
            }
        )
        previous = version
    return versions, signature_seals


@login_required
@require_http_methods(["GET", "POST"])
def lot_detail(request, pk: int):
    """A lot: product, lot number, dates and status; its complete audit trail and signatures;
    and, for its manufacturer's QA officer while it is in quarantine, the signed decision."""
    batch = get_object_or_404(
        visible_batches(request.user).select_related("product__manufacturer"), pk=pk
    )
    refusal, status = None, 200
    if request.method == "POST":
        decide = DECISIONS.get(request.POST.get("decision", ""))
        try:
            if decide is None:
                raise InvalidInput("choose Release or Reject", code="invalid_decision")
            decision = decide(
                batch=batch,
                signer=request.user,
                password=request.POST.get("password", ""),
                reason=request.POST.get("reason", ""),
                request=request,
            )
        except ApplicationError as error:
            refusal, status = error, error.status_code
            batch.refresh_from_db()
        else:
            signature = decision.signature
            signed_at = signature.signed_at.astimezone(datetime.UTC)
            messages.success(
                request,
                f"Lot {batch.lot_number} {decision.batch.status}: signed by "
                f"{signature.printed_name} on {signed_at:%Y-%m-%d %H:%M:%S} UTC.",
            )
            return redirect("batches:lot-detail", pk=batch.pk)
    versions, signature_seals = _audit_trail(batch)
    signatures = signature_list_for_record(record=batch)
    for signature in signatures:
        signature.sequence = signature_seals.get(signature.pk)
    context = {
        "batch": batch,
        "versions": versions,
        "signatures": signatures,
        "can_decide": can_decide(request.user, batch),
        "refusal": refusal,
        "reason": request.POST.get("reason", "") if refusal else "",
    }
    return render(request, "batches/lot_detail.html", context, status=status)
