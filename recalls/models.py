"""Recall cases (21 CFR 7.40–7.59, EU GDP 6.x): the lots, the consignees, their answers and
the reports sent to the regulator."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from audit.history import HistoricalRecords, RegulatedModel
from partners.models import Partner
from pharmadms.numbering import YearCounter


class RecallClass(models.TextChoices):
    """21 CFR 7.3(m): the relative degree of health hazard."""

    CLASS_I = "I", "Class I (serious adverse health consequences or death)"
    CLASS_II = "II", "Class II (temporary or reversible adverse health consequences)"
    CLASS_III = "III", "Class III (not likely to cause adverse health consequences)"


class RecallDepth(models.TextChoices):
    """21 CFR 7.42(b)(1): the level in the distribution chain the recall extends to."""

    WHOLESALE = "wholesale", "Wholesale level"
    RETAIL = "retail", "Retail level"
    CONSUMER = "consumer", "Consumer or user level"


class EffectivenessLevel(models.TextChoices):
    """21 CFR 7.42(b)(3): the share of consignees contacted to verify the recall."""

    A = "A", "Level A: 100% of consignees"
    B = "B", "Level B: a set share between 10% and 100%"
    C = "C", "Level C: 10% of consignees"
    D = "D", "Level D: 2% of consignees"
    E = "E", "Level E: no effectiveness checks"


class RecallStatus(models.TextChoices):
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    TERMINATED = "terminated", "Terminated"


# The recall lifecycle in one table (21 CFR 7.3(g), 7.55): notifying the consignees puts an
# open recall in progress; closing it (signed) completes it; termination follows completion.
RECALL_TRANSITIONS: dict[str, frozenset[str]] = {
    RecallStatus.OPEN: frozenset({RecallStatus.IN_PROGRESS, RecallStatus.COMPLETED}),
    RecallStatus.IN_PROGRESS: frozenset({RecallStatus.COMPLETED}),
    RecallStatus.COMPLETED: frozenset({RecallStatus.TERMINATED}),
    RecallStatus.TERMINATED: frozenset(),
}
# A recall in one of these states still runs: its consignees are reminded, status reports go out.
RECALL_RUNNING = frozenset({RecallStatus.OPEN, RecallStatus.IN_PROGRESS})


class RecallNumberCounter(YearCounter):
    """The last recall (or drill) number issued in a year (see pharmadms.numbering)."""


class Recall(RegulatedModel):
    """A recall of one or more lots of one product by its manufacturer (the recalling firm).

    A drill (mock recall, EU GDP 6.5) runs the same steps on real data without blocking the lots
    or notifying anyone; its number starts with ``DR-`` and every report of it says DRILL.
    """

    number = models.CharField(max_length=20, unique=True, help_text="e.g. RC-2026-0001")
    firm = models.ForeignKey(
        Partner, on_delete=models.PROTECT, related_name="recalls", help_text="the recalling firm"
    )
    product = models.ForeignKey("batches.Product", on_delete=models.PROTECT, related_name="recalls")
    classification = models.CharField(max_length=3, choices=RecallClass.choices)
    depth = models.CharField(max_length=10, choices=RecallDepth.choices)
    reason = models.TextField(help_text="why the product is recalled (the defect)")
    health_hazard = models.TextField(help_text="the health hazard assessment (21 CFR 7.41)")
    strategy = models.TextField(help_text="the recall strategy (21 CFR 7.42)")
    instructions = models.TextField(
        help_text="what consignees must do with the product (21 CFR 7.49(c)(1)(iv))"
    )
    effectiveness_level = models.CharField(max_length=1, choices=EffectivenessLevel.choices)
    effectiveness_percent = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="share of consignees checked (set by the level; chosen for level B)",
    )
    status = models.CharField(
        max_length=12, choices=RecallStatus.choices, default=RecallStatus.OPEN
    )
    is_drill = models.BooleanField(default=False)
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    opened_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True)
    closing_justification = models.TextField(
        blank=True, help_text="why the recall was closed with consignees unaccounted for"
    )
    drill_duration_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="how long the drill took, end to end"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(number__regex=r"^(RC|DR)-[0-9]{4}-[0-9]{4,}$"),
                name="recall_number_format",
            ),
            models.CheckConstraint(
                condition=Q(effectiveness_percent__gte=0) & Q(effectiveness_percent__lte=100),
                name="recall_effectiveness_percent_range",
            ),
        ]
        indexes = [models.Index(fields=["status", "opened_at"])]

    def __str__(self) -> str:
        return f"{self.number} ({self.product.name}, class {self.classification})"


class RecallLot(RegulatedModel):
    """A lot under a recall, with the units distributed when the recall was opened."""

    recall = models.ForeignKey(Recall, on_delete=models.PROTECT, related_name="lots")
    batch = models.ForeignKey("batches.Batch", on_delete=models.PROTECT, related_name="recall_lots")
    status_before = models.CharField(
        max_length=12, help_text="the lot's QA status when the recall was opened"
    )
    quantity_distributed = models.PositiveIntegerField(
        default=0, help_text="units the manufacturer shipped of this lot (tier 1)"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["recall", "batch__lot_number"]
        constraints = [
            models.UniqueConstraint(fields=["recall", "batch"], name="recall_lot_once"),
        ]

    def __str__(self) -> str:
        return f"lot #{self.batch_id} under {self.recall.number}"


class RecallConsignee(RegulatedModel):
    """A partner that received units of a recalled lot: who, how reached, what it answered.

    One row per partner and lot (a partner supplied with two recalled lots answers for each).
    The figures it reports (on hand, returned, destroyed) are its own account; the trace's
    ledger figures stay available next to them in every report.
    """

    recall = models.ForeignKey(Recall, on_delete=models.PROTECT, related_name="consignees")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="recall_notices")
    batch = models.ForeignKey("batches.Batch", on_delete=models.PROTECT, related_name="+")
    tier = models.PositiveSmallIntegerField(help_text="1: a direct account of the firm")
    supplier = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the partner that supplied it (on its shortest path from the firm)",
    )
    contact_email = models.EmailField(blank=True)
    contact_phone = models.CharField(max_length=32, blank=True)
    quantity_shipped = models.PositiveIntegerField()
    quantity_received = models.PositiveIntegerField(default=0)
    sampled_for_check = models.BooleanField(
        default=False, help_text="chosen for an effectiveness check at the recall's level"
    )
    notified_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    last_reminded_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    quantity_on_hand_reported = models.PositiveIntegerField(null=True, blank=True)
    quantity_returned_reported = models.PositiveIntegerField(null=True, blank=True)
    quantity_destroyed_reported = models.PositiveIntegerField(null=True, blank=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["recall", "tier", "partner__name", "batch_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recall", "partner", "batch"], name="recall_consignee_once_per_lot"
            ),
            models.CheckConstraint(
                condition=Q(quantity_returned_reported__isnull=True)
                | Q(quantity_returned_reported__lte=F("quantity_shipped")),
                name="recall_consignee_returned_within_shipped",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner.name} (tier {self.tier}) in {self.recall.number}"

    @property
    def units_accounted(self) -> int:
        """Units the consignee has accounted for: returned, destroyed and still on hand."""
        return (
            (self.quantity_returned_reported or 0)
            + (self.quantity_destroyed_reported or 0)
            + (self.quantity_on_hand_reported or 0)
        )


class NoticeKind(models.TextChoices):
    NOTIFICATION = "notification", "Recall notification"
    REMINDER = "reminder", "Reminder"


class RecallNotice(models.Model):
    """A recall communication sent to a partner (21 CFR 7.49): the in-app copy of the e-mail.

    A log of what was said to whom and when; only ``read_at`` is ever set afterwards.
    """

    recall = models.ForeignKey(Recall, on_delete=models.PROTECT, related_name="notices")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=NoticeKind.choices)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    sent_to = models.EmailField(blank=True)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["partner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} of {self.recall.number} to {self.partner.name}"


class StatusReport(models.Model):
    """A recall status report (21 CFR 7.53) as generated: its figures frozen at that moment,
    with the audit chain head it was made against. Append-only."""

    APPEND_ONLY = True

    recall = models.ForeignKey(Recall, on_delete=models.PROTECT, related_name="status_reports")
    generated_at = models.DateTimeField()
    generated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    scheduled = models.BooleanField(default=False)
    content = models.JSONField()
    chain_sequence = models.BigIntegerField()
    chain_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-generated_at", "-id"]

    def __str__(self) -> str:
        return f"status report of {self.recall.number} at {self.generated_at:%Y-%m-%d %H:%M}"
