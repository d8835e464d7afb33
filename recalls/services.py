"""Every state change of recalls: open (signed), notify, acknowledge, remind, close (signed),
terminate (signed), status reports, and the mock-recall drill.

Opening a recall blocks its lots in the same transaction: each lot becomes ``recalled``
(``batches.services.batch_change_status``) and, from the commit on, the hold check this app
registers (``recalls/apps.py`` → ``batches.hooks``) refuses every allocation, pick, dispatch,
receipt into saleable stock, restock and sale of the lot, naming the recall. The consignee list
is the forward trace of each lot at that moment. Notifications leave only after the commit.

Lock order (docs/architecture.md): the lots and the number counter are locked before the first
sealed write; no stock balance is touched.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from audit import chain
from audit.history import (
    bulk_create_with_reason,
    bulk_update_with_reason,
    save_with_reason,
    update_with_reason,
)
from audit.models import AuditAction, ChainHead, Signature, SignatureMeaning
from audit.services import signature_apply, signature_verify_password
from batches import services as batch_services
from batches.models import BATCH_TRANSITIONS, Batch, BatchStatus
from orders.signals import business_event
from partners.models import Partner, PartnerKind, Role, User
from partners.services import system_account
from pharmadms import clock
from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation
from pharmadms.lifecycle import require_transition
from pharmadms.numbering import next_number
from pharmadms.permissions import require_role
from pharmadms.quantities import whole_number

from . import selectors
from .models import (
    RECALL_RUNNING,
    RECALL_TRANSITIONS,
    EffectivenessLevel,
    NoticeKind,
    Recall,
    RecallClass,
    RecallConsignee,
    RecallDepth,
    RecallLot,
    RecallNotice,
    RecallNumberCounter,
    RecallStatus,
    StatusReport,
)

logger = logging.getLogger(__name__)

# 21 CFR 7.42(b)(3): the share of consignees each effectiveness level contacts. Level B is
# "some percentage ... greater than 10 percent and less than 100 percent": the firm chooses it.
LEVEL_PERCENT = {
    EffectivenessLevel.A: 100,
    EffectivenessLevel.C: 10,
    EffectivenessLevel.D: 2,
    EffectivenessLevel.E: 0,
}
# Below the first tier, a wholesale-level recall reaches only the partners that distribute.
DISTRIBUTING_KINDS = frozenset(
    {PartnerKind.WHOLESALER, PartnerKind.LOGISTICS, PartnerKind.MANUFACTURER}
)
ACKNOWLEDGE_ROLES = (
    Role.PARTNER_USER,
    Role.QA_OFFICER,
    Role.WAREHOUSE_OPERATOR,
    Role.ORDER_DESK,
    Role.ADMIN,
)
REPORT_ROLES = (Role.QA_OFFICER, Role.ADMIN)
MAX_TEXT = 10_000
RECALL_OPENED_EVENT = "recall.opened"
RECALL_REMINDER_EVENT = "recall.reminder"


def reminder_interval() -> timedelta:
    return timedelta(hours=getattr(settings, "RECALL_REMINDER_HOURS", 24))


def status_report_interval() -> timedelta:
    # 21 CFR 7.53(b): status reports at intervals of two to four weeks, as FDA specifies.
    return timedelta(days=getattr(settings, "RECALL_STATUS_REPORT_DAYS", 14))


def response_url(recall: Recall) -> str:
    """Where a consignee answers (the response form of 21 CFR 7.49(c)(1)(iv))."""
    base = getattr(settings, "PUBLIC_BASE_URL", "").rstrip("/")
    return f"{base}/recalls/{recall.pk}/"


# --- opening ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecallTerms:
    """What the recalling firm decides when it opens a recall (validated by :func:`_terms`)."""

    classification: str
    depth: str
    reason: str
    health_hazard: str
    strategy: str
    instructions: str
    effectiveness_level: str
    effectiveness_percent: int


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} is required", code=f"{name}_required")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{name} is at most {MAX_TEXT} characters", code="too_long")
    return value.strip()


def _terms(
    *,
    classification: Any,
    depth: Any,
    reason: Any,
    health_hazard: Any,
    strategy: Any,
    instructions: Any,
    effectiveness_level: Any,
    effectiveness_percent: Any = None,
) -> RecallTerms:
    if classification not in RecallClass.values:
        raise InvalidInput("classification is I, II or III", code="invalid_classification")
    if depth not in RecallDepth.values:
        raise InvalidInput(f"depth is one of {', '.join(RecallDepth.values)}", code="invalid_depth")
    if effectiveness_level not in EffectivenessLevel.values:
        raise InvalidInput(
            "the effectiveness-check level is A, B, C, D or E", code="invalid_effectiveness_level"
        )
    if effectiveness_level == EffectivenessLevel.B:
        if (
            isinstance(effectiveness_percent, bool)
            or not isinstance(effectiveness_percent, int)
            or not 10 < effectiveness_percent < 100
        ):
            raise InvalidInput(
                "level B checks a share of consignees above 10% and below 100%: give it",
                code="invalid_effectiveness_percent",
            )
        percent = effectiveness_percent
    else:
        if effectiveness_percent not in (None, LEVEL_PERCENT[effectiveness_level]):
            raise InvalidInput(
                f"level {effectiveness_level} checks {LEVEL_PERCENT[effectiveness_level]}% "
                "of consignees; only level B takes a share",
                code="invalid_effectiveness_percent",
            )
        percent = LEVEL_PERCENT[effectiveness_level]
    return RecallTerms(
        classification=classification,
        depth=depth,
        reason=_text(reason, "reason"),
        health_hazard=_text(health_hazard, "health_hazard"),
        strategy=_text(strategy, "strategy"),
        instructions=_text(instructions, "instructions"),
        effectiveness_level=effectiveness_level,
        effectiveness_percent=percent,
    )


def _recall_lots(lots: Sequence[Batch]) -> list[Batch]:
    lots = list(lots)
    if not lots:
        raise InvalidInput("a recall names at least one lot", code="lots_required")
    if len({lot.pk for lot in lots}) != len(lots):
        raise InvalidInput("a lot appears twice", code="duplicate_lot")
    lots = list(Batch.objects.select_related("product").filter(pk__in=[lot.pk for lot in lots]))
    if len({lot.product_id for lot in lots}) != 1:
        raise InvalidInput(
            "a recall covers lots of one product; open one recall per product",
            code="lots_of_several_products",
        )
    return sorted(lots, key=lambda lot: lot.pk)


def _check_firm_qa(signer: User, firm_id: int, what: str) -> None:
    """Only a QA officer of the manufacturer decides on its recall (no superuser shortcut)."""
    if signer is None or not signer.is_active:
        raise NotPermitted(f"an active QA officer {what}")
    if signer.role != Role.QA_OFFICER:
        raise NotPermitted(
            f"a QA officer of the manufacturer {what}; you are {signer.role}",
            code="role_not_permitted",
        )
    if signer.partner_id != firm_id:
        raise NotPermitted(
            f"the manufacturer's QA {what}, not your organisation", code="not_your_organisation"
        )


def _check_not_recalled(lots: Iterable[Batch]) -> None:
    running = (
        RecallLot.objects.filter(
            batch_id__in=[lot.pk for lot in lots],
            recall__is_drill=False,
            recall__status__in=RECALL_RUNNING,
        )
        .select_related("recall", "batch")
        .first()
    )
    if running is not None:
        raise RuleViolation(
            f"lot {running.batch.lot_number} is already under recall {running.recall.number}",
            code="lot_already_under_recall",
            extra={"recall": running.recall.number},
        )


def _next_number(prefix: str) -> str:
    """The next recall number of the year (RC-2026-0001, or DR-… for a drill)."""
    return next_number(RecallNumberCounter, prefix, clock.localdate(), digits=4)


def _sample_rank(number: str, partner_id: int) -> str:
    """A stable, unpredictable order of consignees for the effectiveness-check sample."""
    return hashlib.sha256(f"{number}:{partner_id}".encode()).hexdigest()


def _consignee_rows(
    recall: Recall, lots: Sequence[Batch], traces: dict[int, selectors.Trace]
) -> list[RecallConsignee]:
    """The forward trace of each lot, as unsaved consignee rows (a partner once per lot)."""
    rows: list[RecallConsignee] = []
    for lot in lots:
        trace = traces[lot.pk]
        supplier_of: dict[int, int] = {}
        for edge in trace.edges:  # sorted by tier: the first supplier is on a shortest path
            supplier_of.setdefault(edge.consignee_id, edge.supplier_id)
        for node in trace.consignees:
            if (
                node.tier > 1
                and recall.depth == RecallDepth.WHOLESALE
                and node.kind not in DISTRIBUTING_KINDS
            ):
                continue  # a wholesale-level recall stops at the distributors
            rows.append(
                RecallConsignee(
                    recall=recall,
                    partner_id=node.partner_id,
                    batch=lot,
                    tier=node.tier,
                    supplier_id=supplier_of[node.partner_id],
                    contact_email=node.contact_email,
                    contact_phone=node.contact_phone,
                    quantity_shipped=node.shipped_in,
                    quantity_received=node.received,
                )
            )
    share = recall.effectiveness_percent
    partners = sorted(
        {row.partner_id for row in rows}, key=lambda partner: _sample_rank(recall.number, partner)
    )
    sampled = set(partners[: math.ceil(len(partners) * share / 100)])
    for row in rows:
        row.sampled_for_check = row.partner_id in sampled
    return rows


class RecallDecision(NamedTuple):
    """A recall after a signed decision, and the signature that made it."""

    recall: Recall
    signature: Signature | None


def _create_recall(
    *, lots: list[Batch], terms: RecallTerms, actor: User, reason: str, is_drill: bool
) -> tuple[Recall, list[RecallConsignee]]:
    """Write the recall, its lots and its consignees (inside the caller's transaction)."""
    firm = lots[0].product.manufacturer
    traces = {lot.pk: selectors.trace_forward(batch=lot, origin=firm) for lot in lots}
    # Built, then saved: the recall's own ``reason`` field would clash with the change reason.
    recall = Recall(
        number=_next_number("DR" if is_drill else "RC"),
        firm=firm,
        product=lots[0].product,
        classification=terms.classification,
        depth=terms.depth,
        reason=terms.reason,
        health_hazard=terms.health_hazard,
        strategy=terms.strategy,
        instructions=terms.instructions,
        effectiveness_level=terms.effectiveness_level,
        effectiveness_percent=terms.effectiveness_percent,
        is_drill=is_drill,
        opened_by=actor,
        opened_at=clock.now(),
    )
    save_with_reason(recall, actor=actor, reason=reason)
    bulk_create_with_reason(
        [
            RecallLot(
                recall=recall,
                batch=lot,
                status_before=lot.status,
                quantity_distributed=sum(
                    edge.shipped for edge in traces[lot.pk].edges if edge.supplier_id == firm.pk
                ),
            )
            for lot in lots
        ],
        actor=actor,
        reason=reason,
    )
    consignees = bulk_create_with_reason(
        _consignee_rows(recall, lots, traces), actor=actor, reason=reason
    )
    return recall, consignees


def _block(lots: list[Batch], recall: Recall, signer: User) -> None:
    """Every lot that can become ``recalled`` does, now; the hold check covers the rest.

    A lot whose status has no transition to ``recalled`` in ``BATCH_TRANSITIONS`` (rejected,
    say) keeps its status, which already bars it from sale, and the hold check refuses it by
    the recall all the same.
    """
    for lot in lots:
        if BatchStatus.RECALLED in BATCH_TRANSITIONS.get(lot.status, frozenset()):
            batch_services.batch_change_status(
                batch=lot,
                to_status=BatchStatus.RECALLED,
                actor=signer,
                reason=f"recall {recall.number}: {recall.reason}",
            )


def recall_open(
    *,
    lots: Sequence[Batch],
    signer: User,
    password: str,
    reason: str,
    classification: str,
    depth: str,
    recall_reason: str,
    health_hazard: str,
    strategy: str,
    instructions: str,
    effectiveness_level: str,
    effectiveness_percent: int | None = None,
    request: HttpRequest | None = None,
) -> RecallDecision:
    """Open a recall of ``lots`` under the electronic signature of a QA officer of their
    manufacturer (meaning ``recall_opened``).

    In one transaction: the recall and its lots are written, each lot becomes ``recalled``,
    the forward trace of each lot becomes the consignee list, and the signature binds the
    recall as opened. After the commit the consignees are notified (e-mail, webhook, in-app).
    A wrong password writes nothing and counts towards the lockout.
    """
    reason = _text(reason, "reason")
    terms = _terms(
        classification=classification,
        depth=depth,
        reason=recall_reason,
        health_hazard=health_hazard,
        strategy=strategy,
        instructions=instructions,
        effectiveness_level=effectiveness_level,
        effectiveness_percent=effectiveness_percent,
    )
    lots = _recall_lots(lots)
    firm_id = lots[0].product.manufacturer_id
    _check_firm_qa(signer, firm_id, "opens a recall")
    _check_not_recalled(lots)
    # The password is checked before the transaction: a refusal rolls back, and must not undo
    # django-axes' count of a failed attempt.
    verified = signature_verify_password(signer=signer, password=password, request=request)
    with transaction.atomic():
        # Lock order: the lots, then the number counter, before the first sealed write.
        locked = list(
            Batch.objects.select_for_update().filter(pk__in=[lot.pk for lot in lots]).order_by("pk")
        )
        for lot in locked:
            lot.product = lots[0].product
        _check_not_recalled(locked)  # again under the locks: a concurrent recall may have won
        recall, _ = _create_recall(
            lots=locked, terms=terms, actor=signer, reason=reason, is_drill=False
        )
        _block(locked, recall, signer)
        signature = signature_apply(
            verified=verified, meaning=SignatureMeaning.RECALL_OPENED, reason=reason, record=recall
        )
        transaction.on_commit(lambda: _notify_later(recall.pk))
    return RecallDecision(recall=recall, signature=signature)


def _notify_later(recall_id: int) -> None:
    """Hand the notification to Celery; never raise into the committed recall."""
    from .tasks import notify_consignees

    try:
        notify_consignees.delay(recall_id)
    except Exception:
        # The reminder task notifies any consignee left unnotified.
        logger.exception("recall %s: notification not queued", recall_id)


# --- notification (21 CFR 7.49) -----------------------------------------------------------


def _lots_text(rows: Sequence[RecallConsignee]) -> str:
    return "\n".join(
        f"  - lot {row.batch.lot_number}, expiry {row.batch.expires_on:%Y-%m-%d}: "
        f"{row.quantity_shipped} units shipped to you"
        for row in rows
    )


def recall_notice_text(
    recall: Recall, partner: Partner, rows: Sequence[RecallConsignee], *, kind: str
) -> tuple[str, str]:
    """Subject and body of the recall communication to one consignee (21 CFR 7.49(c)):
    the product and lots, the reason and hazard, what to do, and how to answer."""
    product = recall.product
    prefix = "REMINDER — " if kind == NoticeKind.REMINDER else ""
    subject = f"{prefix}URGENT: DRUG RECALL {recall.number} — {product.name} {product.strength}"
    sub_recall = (
        "If you distributed this product further, notify your own customers at once and "
        f"extend this recall to the {recall.get_depth_display().lower()}."
        if recall.depth != RecallDepth.WHOLESALE or partner.kind in DISTRIBUTING_KINDS
        else ""
    )
    body = "\n".join(
        line
        for line in (
            f"URGENT: DRUG RECALL — class {recall.classification}, "
            f"{recall.get_depth_display().lower()}",
            "",
            f"To: {partner.name} (GLN {partner.gln})",
            f"From: {recall.firm.name} (GLN {recall.firm.gln}), recall {recall.number}",
            "",
            "Product:",
            f"  {product.name} {product.strength}, {product.dosage_form}, "
            f"pack of {product.pack_size}, GTIN {product.gtin}",
            "Lots:",
            _lots_text(rows),
            "",
            f"Reason for the recall: {recall.reason}",
            f"Health hazard: {recall.health_hazard}",
            "",
            f"What you must do: {recall.instructions}",
            "Stop distributing and dispensing these lots now and keep them apart, in quarantine.",
            sub_recall,
            "",
            "Answer within 24 hours, even if you no longer hold any units: report the units "
            "you hold, have returned and have destroyed on the response form:",
            f"  {response_url(recall)}",
            f"  (or POST /api/v1/recalls/{recall.pk}/acknowledge/)",
            "",
            f"Contact: {recall.firm.contact_email}, {recall.firm.contact_phone}",
        )
        if line is not None
    )
    return subject, body


def _by_partner(rows: Iterable[RecallConsignee]) -> dict[int, list[RecallConsignee]]:
    grouped: dict[int, list[RecallConsignee]] = defaultdict(list)
    for row in rows:
        grouped[row.partner_id].append(row)
    return grouped


def _communicate(
    recall: Recall, rows: Sequence[RecallConsignee], *, kind: str, event: str
) -> list[RecallNotice]:
    """Write the in-app notice per partner and, after the commit, send its e-mail and webhook."""
    notices = []
    now = timezone.now()
    for partner_rows in _by_partner(rows).values():
        partner = partner_rows[0].partner
        subject, body = recall_notice_text(recall, partner, partner_rows, kind=kind)
        notice = RecallNotice.objects.create(
            recall=recall,
            partner=partner,
            kind=kind,
            subject=subject,
            body=body,
            sent_to=partner_rows[0].contact_email or partner.contact_email,
            created_at=now,
        )
        notices.append(notice)
        payload = {
            "number": recall.number,
            "id": recall.pk,
            "classification": recall.classification,
            "depth": recall.depth,
            "gtin": recall.product.gtin,
            "product": recall.product.name,
            "lots": [row.batch.lot_number for row in partner_rows],
            "reason": recall.reason,
            "health_hazard": recall.health_hazard,
            "instructions": recall.instructions,
            "response_url": response_url(recall),
            "consignee_gln": partner.gln,
        }
        transaction.on_commit(lambda n=notice, p=payload: _send(n, event, p))
    return notices


def _send(notice: RecallNotice, event: str, payload: dict[str, Any]) -> None:
    """E-mail and webhook of one notice, after the commit; a failure is logged, never raised
    (the reminder task tries again for everyone who has not answered)."""
    if notice.sent_to:
        try:
            EmailMessage(notice.subject, notice.body, None, [notice.sent_to]).send()
        except Exception:
            logger.exception("recall notice %s: e-mail to %s failed", notice.pk, notice.sent_to)
    try:
        business_event.send(
            sender=Recall, event=event, payload=payload, partner_ids=[notice.partner_id]
        )
    except Exception:
        logger.exception("recall notice %s: webhook event %s failed", notice.pk, event)


@transaction.atomic
def recall_notify(*, recall: Recall) -> list[RecallNotice]:
    """Notify every consignee of a running recall not notified yet; the recall is then in
    progress. Drills notify nobody."""
    recall = Recall.objects.select_for_update().select_related("product", "firm").get(pk=recall.pk)
    if recall.is_drill or recall.status not in RECALL_RUNNING:
        return []
    rows = list(
        recall.consignees.filter(notified_at__isnull=True)
        .select_related("partner", "batch")
        .order_by("partner_id", "batch_id")
    )
    if not rows:
        return []
    notices = _communicate(recall, rows, kind=NoticeKind.NOTIFICATION, event=RECALL_OPENED_EVENT)
    now = timezone.now()
    for row in rows:
        row.notified_at = now
    reason = f"recall {recall.number}: consignees notified"
    bulk_update_with_reason(rows, ["notified_at"], actor=recall.opened_by, reason=reason)
    changes: dict[str, Any] = {"notified_at": recall.notified_at or now}
    if recall.status == RecallStatus.OPEN:
        changes["status"] = RecallStatus.IN_PROGRESS
    update_with_reason(
        recall, actor=recall.opened_by, reason=reason, changes=changes, editable=set(changes)
    )
    return notices


@transaction.atomic
def recall_reminders_send(*, now=None) -> int:
    """Remind each consignee of a running recall that has not answered within the reminder
    interval since its notification or its last reminder; notify any not notified yet.
    Returns the number of partners reminded."""
    now = now or timezone.now()
    cutoff = now - reminder_interval()
    reminded = 0
    running = Recall.objects.filter(is_drill=False, status__in=RECALL_RUNNING).order_by("pk")
    for recall in running.select_related("product", "firm"):
        recall_notify(recall=recall)
        rows = [
            row
            for row in recall.consignees.filter(
                acknowledged_at__isnull=True, notified_at__isnull=False
            )
            .select_related("partner", "batch")
            .order_by("partner_id", "batch_id")
            if (row.last_reminded_at or row.notified_at) <= cutoff
        ]
        if not rows:
            continue
        recall = (
            Recall.objects.select_for_update().select_related("product", "firm").get(pk=recall.pk)
        )
        reminded += len(
            _communicate(recall, rows, kind=NoticeKind.REMINDER, event=RECALL_REMINDER_EVENT)
        )
        for row in rows:
            row.reminders_sent += 1
            row.last_reminded_at = now
        bulk_update_with_reason(
            rows,
            ["reminders_sent", "last_reminded_at"],
            actor=system_account(),  # the reminders go out on the platform's schedule
            reason=f"recall {recall.number}: reminder, no answer since {cutoff:%Y-%m-%d %H:%M} UTC",
        )
    return reminded


# --- acknowledgement -------------------------------------------------------------------------


@transaction.atomic
def recall_acknowledge(
    *,
    recall: Recall,
    actor: User,
    quantity_on_hand: int,
    quantity_returned: int,
    quantity_destroyed: int = 0,
    batch: Batch | None = None,
    reason: str = "recall acknowledged",
) -> RecallConsignee:
    """A consignee answers: it has the notice, and accounts for the lot's units it received
    (on hand now, returned, destroyed). Answering again replaces its figures.

    Refused for a partner that is not a consignee (``not_a_consignee``), a recall no longer
    running, figures that exceed what was shipped to it; nothing is written then.
    """
    require_role(actor, *ACKNOWLEDGE_ROLES)
    on_hand = whole_number(quantity_on_hand, "quantity_on_hand")
    returned = whole_number(quantity_returned, "quantity_returned")
    destroyed = whole_number(quantity_destroyed, "quantity_destroyed")
    recall = Recall.objects.select_for_update().get(pk=recall.pk)
    rows = list(
        RecallConsignee.objects.select_for_update()
        .filter(recall=recall, partner_id=actor.partner_id)
        .select_related("batch")
        .order_by("batch_id")
    )
    if not rows:
        raise NotPermitted(
            f"your organisation is not a consignee of recall {recall.number}",
            code="not_a_consignee",
        )
    if recall.status not in RECALL_RUNNING:
        raise RuleViolation(
            f"recall {recall.number} is {recall.status}: it takes no more answers",
            code="recall_not_running",
        )
    if batch is None:
        if len(rows) > 1:
            raise InvalidInput(
                "you received several recalled lots: answer for each lot", code="lot_required"
            )
        (row,) = rows
    else:
        row = next((row for row in rows if row.batch_id == batch.pk), None)
        if row is None:
            raise InvalidInput(
                f"lot {batch.lot_number} was not shipped to you under this recall",
                code="lot_not_consigned",
            )
    if returned > row.quantity_shipped:
        raise RuleViolation(
            f"{returned} units returned exceed the {row.quantity_shipped} units of lot "
            f"{row.batch.lot_number} shipped to you",
            code="returned_exceeds_shipped",
        )
    if on_hand + returned + destroyed > row.quantity_shipped:
        raise RuleViolation(
            f"{on_hand + returned + destroyed} units accounted for exceed the "
            f"{row.quantity_shipped} units of lot {row.batch.lot_number} shipped to you",
            code="accounted_exceeds_shipped",
        )
    now = timezone.now()
    row = update_with_reason(
        row,
        actor=actor,
        reason=_text(reason, "reason"),
        changes={
            "acknowledged_at": now,
            "acknowledged_by": actor,
            "quantity_on_hand_reported": on_hand,
            "quantity_returned_reported": returned,
            "quantity_destroyed_reported": destroyed,
            "notified_at": row.notified_at or now,  # an answer proves the notice arrived
        },
        editable={
            "acknowledged_at",
            "acknowledged_by",
            "quantity_on_hand_reported",
            "quantity_returned_reported",
            "quantity_destroyed_reported",
            "notified_at",
        },
    )
    if recall.status == RecallStatus.OPEN:
        update_with_reason(
            recall,
            actor=actor,
            reason=f"recall {recall.number}: first answer of a consignee",
            changes={"status": RecallStatus.IN_PROGRESS},
            editable={"status"},
        )
    return row


# --- closing and termination (signed) ----------------------------------------------------


def _transition(recall: Recall, target: str) -> None:
    require_transition(f"recall {recall.number}", recall.status, target, RECALL_TRANSITIONS)


def _unaccounted(recall: Recall) -> int:
    silent = recall.consignees.filter(acknowledged_at__isnull=True)
    return silent.values("partner_id").distinct().count()


def _check_close(recall: Recall, signer: User, justification: str) -> None:
    _check_firm_qa(signer, recall.firm_id, "closes a recall")
    if recall.is_drill:
        raise RuleViolation("a drill closes itself when it ends", code="drill")
    _transition(recall, RecallStatus.COMPLETED)
    missing = _unaccounted(recall)
    if missing and not justification:
        raise RuleViolation(
            f"{missing} consignees have not accounted for the recalled units: close with a "
            "justification, signed, or wait for their answers",
            code="consignees_unaccounted",
            extra={"unaccounted": missing},
        )


def recall_close(
    *,
    recall: Recall,
    signer: User,
    password: str,
    reason: str,
    justification: str = "",
    request: HttpRequest | None = None,
) -> RecallDecision:
    """Complete a recall under a QA officer's signature (meaning ``recall_closed``).

    Every consignee must have answered; otherwise only with a justification, which is kept on
    the recall and covered by the signature.
    """
    reason = _text(reason, "reason")
    justification = (justification or "").strip()
    if len(justification) > MAX_TEXT:
        raise InvalidInput(f"justification is at most {MAX_TEXT} characters", code="too_long")
    _check_close(Recall.objects.get(pk=recall.pk), signer, justification)
    verified = signature_verify_password(signer=signer, password=password, request=request)
    with transaction.atomic():
        locked = Recall.objects.select_for_update().get(pk=recall.pk)
        _check_close(locked, signer, justification)
        changes = {"status": RecallStatus.COMPLETED, "completed_at": clock.now()}
        if justification:
            changes["closing_justification"] = justification
        locked = update_with_reason(
            locked, actor=signer, reason=reason, changes=changes, editable=set(changes)
        )
        signature = signature_apply(
            verified=verified, meaning=SignatureMeaning.RECALL_CLOSED, reason=reason, record=locked
        )
    return RecallDecision(recall=locked, signature=signature)


def recall_terminate(
    *, recall: Recall, signer: User, password: str, reason: str, request: HttpRequest | None = None
) -> RecallDecision:
    """Record the termination of a completed recall (21 CFR 7.55), signed ``recall_closed``:
    the reason names the regulator's written notice."""
    reason = _text(reason, "reason")
    current = Recall.objects.get(pk=recall.pk)
    _check_firm_qa(signer, current.firm_id, "terminates a recall")
    _transition(current, RecallStatus.TERMINATED)
    verified = signature_verify_password(signer=signer, password=password, request=request)
    with transaction.atomic():
        locked = Recall.objects.select_for_update().get(pk=recall.pk)
        _transition(locked, RecallStatus.TERMINATED)
        changes = {"status": RecallStatus.TERMINATED, "terminated_at": clock.now()}
        locked = update_with_reason(
            locked, actor=signer, reason=reason, changes=changes, editable=set(changes)
        )
        signature = signature_apply(
            verified=verified, meaning=SignatureMeaning.RECALL_CLOSED, reason=reason, record=locked
        )
    return RecallDecision(recall=locked, signature=signature)


# --- status reports (21 CFR 7.53) --------------------------------------------------------


def chain_head() -> tuple[int, str]:
    head = ChainHead.objects.filter(pk=1).first()
    return (head.sequence, head.head_hash) if head else (0, chain.GENESIS)


@transaction.atomic
def status_report_generate(
    *, recall: Recall, actor: User | None, scheduled: bool = False
) -> StatusReport:
    """Freeze the recall's figures now as a status report, with the audit chain head it was
    made against; the report row is sealed into the chain. ``actor`` None: the schedule, which
    the report names as made by the platform's own account."""
    from .reports import recall_report_data

    if actor is not None:
        require_role(actor, *REPORT_ROLES)
        if not actor.is_superuser and actor.partner_id != recall.firm_id:
            raise NotPermitted("status reports are made by the recalling firm")
    if actor is None:
        actor = system_account()
    sequence, head_hash = chain_head()
    content = recall_report_data(recall, kind="status", head=(sequence, head_hash))
    report = StatusReport.objects.create(
        recall=recall,
        generated_at=timezone.now(),
        generated_by=actor,
        scheduled=scheduled,
        content=content,
        chain_sequence=sequence,
        chain_hash=head_hash,
    )
    chain.seal_row(
        report,
        action=AuditAction.CREATED,
        user=actor,
        occurred_at=report.generated_at,
        reason=f"status report of recall {recall.number}" + (" (scheduled)" if scheduled else ""),
        object_model=Recall._meta.label_lower,
        object_id=recall.pk,
    )
    return report


def status_reports_due(*, now=None) -> int:
    """For the schedule: a status report of every running recall whose last one is older than
    the interval (or that has none). Returns how many were made."""
    now = now or timezone.now()
    cutoff = now - status_report_interval()
    running = (
        Recall.objects.filter(is_drill=False, status__in=RECALL_RUNNING)
        .annotate(last_report_at=Max("status_reports__generated_at"))
        .order_by("pk")
    )
    made = 0
    for recall in running:  # each with its last report's time: one statement for them all
        if recall.last_report_at is None or recall.last_report_at <= cutoff:
            status_report_generate(recall=recall, actor=None, scheduled=True)
            made += 1
    return made


# --- the mock-recall drill (EU GDP 6.5) ----------------------------------------------------


@transaction.atomic
def recall_drill_run(
    *,
    lots: Sequence[Batch],
    actor: User,
    reason: str,
    classification: str = RecallClass.CLASS_II,
    depth: str = RecallDepth.RETAIL,
    recall_reason: str = "mock recall: test of the recall procedure",
    health_hazard: str = "none: a drill",
    strategy: str = "mock recall drill: trace, consignee list, notices, effectiveness, report",
    instructions: str = "none: a drill; no action is asked of consignees",
    effectiveness_level: str = EffectivenessLevel.A,
    effectiveness_percent: int | None = None,
) -> Recall:
    """Run the whole recall on ``lots`` without blocking them or notifying anyone, timed:
    the trace, the consignee list with contacts, the notices as they would be sent (composed,
    not sent), the effectiveness figures and a status report, all marked as a drill."""
    started = time.perf_counter()
    reason = _text(reason, "reason")
    terms = _terms(
        classification=classification,
        depth=depth,
        reason=recall_reason,
        health_hazard=health_hazard,
        strategy=strategy,
        instructions=instructions,
        effectiveness_level=effectiveness_level,
        effectiveness_percent=effectiveness_percent,
    )
    lots = _recall_lots(lots)
    _check_firm_qa(actor, lots[0].product.manufacturer_id, "runs a recall drill")
    recall, consignees = _create_recall(
        lots=lots, terms=terms, actor=actor, reason=f"drill: {reason}", is_drill=True
    )
    grouped = _by_partner(consignees)
    partners = Partner.objects.in_bulk(grouped)
    for partner_id, partner_rows in grouped.items():
        # Composed as the real notice would be, to prove every consignee can be reached.
        recall_notice_text(recall, partners[partner_id], partner_rows, kind="drill")
    status_report_generate(recall=recall, actor=actor)
    elapsed_ms = math.ceil((time.perf_counter() - started) * 1000)
    return update_with_reason(
        recall,
        actor=actor,
        reason=f"drill finished in {elapsed_ms} ms",
        changes={
            "status": RecallStatus.COMPLETED,
            "completed_at": clock.now(),
            "drill_duration_ms": elapsed_ms,
        },
        editable={"status", "completed_at", "drill_duration_ms"},
    )


# --- in-app notices --------------------------------------------------------------------------
