"""The tamper-evident audit chain, its head, and electronic signatures."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    CREATED = "created", "Created"
    CHANGED = "changed", "Changed"
    DELETED = "deleted", "Deleted"
    MOVED = "moved", "Stock moved"
    SIGNED = "signed", "Signed"
    LOGIN = "login", "Signed in"
    LOGOUT = "logout", "Signed out"
    LOGIN_FAILED = "login_failed", "Sign-in failed"
    LOCKED_OUT = "locked_out", "Locked out"
    DENIED = "denied", "Request denied"
    VERIFIED = "verified", "Chain verified"


class AuditEntry(models.Model):
    """One link of the hash chain: a history row, a stock move, a signature, or an access event.

    ``content_hash`` is the SHA-256 of the sealed row's canonical content (or of ``payload`` for
    events, which have no row of their own); ``entry_hash`` covers every field of this entry and
    ``previous_hash``, so changing, removing, inserting or reordering anything breaks the chain.
    """

    sequence = models.BigIntegerField(unique=True)
    source = models.CharField(max_length=100, help_text="label of the sealed table, or 'event'")
    record_id = models.BigIntegerField(null=True, help_text="primary key of the sealed row")
    object_model = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    # No database constraint: users are never deleted (deactivated instead), the entry keeps the
    # username beside the id, and a foreign-key check at every commit would slow every write.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        related_name="+",
        db_constraint=False,
    )
    username = models.CharField(max_length=150, blank=True)
    partner_id = models.BigIntegerField(null=True, db_index=True, help_text="the actor's partner")
    occurred_at = models.DateTimeField(db_index=True)
    reason = models.TextField(blank=True)
    payload = models.JSONField(null=True, blank=True, help_text="content of an event")
    content_hash = models.CharField(max_length=64)
    # Which columns content_hash covers: the digest of a ColumnSet ("" for events).
    column_set = models.CharField(max_length=64, blank=True)
    previous_hash = models.CharField(max_length=64)
    # Not unique by constraint: the unique sequence already makes every entry's hash distinct.
    entry_hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["sequence"]
        verbose_name_plural = "audit entries"
        # Each index is written by every sealed write, so only those the viewer's filters use:
        # one record's lineage (model and id), who, whose partner, when, and the sealed row.
        indexes = [
            models.Index(fields=["source", "record_id"]),
            models.Index(fields=["object_model", "object_id"], name="audit_entry_object"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.object_model}:{self.object_id}"


class ChainHead(models.Model):
    """The single row that serialises appends: the last sequence number and its hash."""

    sequence = models.BigIntegerField(default=0)
    head_hash = models.CharField(max_length=64)
    # The head hash before the last advance: what the last entry links to. Set with the advance
    # itself, so a single statement can advance the head and write the entry that links to it.
    previous_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"head #{self.sequence} {self.head_hash[:12]}…"


class ColumnSet(models.Model):
    """The columns of a sealed (or signed) table at some point of its life.

    A seal and a signature hash a row's content over the columns its table has at that moment,
    and record which (the ``digest``). When a later release adds a column to the table, older
    seals and signatures are still checked over the columns they covered. Every table's column
    set is recorded here after each ``migrate`` (audit/append_only.py), and ``digest`` is the
    hash of ``(source, columns)``, so a changed row here no longer matches what refers to it
    (which is why it needs no chain entry of its own). Append-only (audit/append_only.py).
    """

    digest = models.CharField(max_length=64, unique=True)
    source = models.CharField(max_length=100, help_text="label of the table's model")
    columns = models.JSONField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.source} columns {self.digest[:12]}…"


class ChainVerification(models.Model):
    """One run of the chain's verification and what it found: the audit trail's regular review
    (EU GMP Annex 11 §9), kept as evidence. Runs nightly (celery beat) and when an auditor asks;
    the audit-trail page shows the latest instead of re-reading the whole chain on each visit.
    Append-only and sealed."""

    APPEND_ONLY = True

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    ok = models.BooleanField()
    checked = models.BigIntegerField(help_text="entries checked")
    head_sequence = models.BigIntegerField()
    head_hash = models.CharField(max_length=64)
    first_sequence = models.BigIntegerField(null=True, blank=True)
    first_problem = models.CharField(max_length=32, blank=True)
    first_detail = models.TextField(blank=True)
    findings = models.JSONField(default=list, help_text="the first findings, at most 20")

    class Meta:
        ordering = ["-finished_at", "-id"]
        get_latest_by = "finished_at"

    def __str__(self) -> str:
        state = "intact" if self.ok else f"broken at #{self.first_sequence}"
        return f"chain {state} ({self.checked} entries) at {self.finished_at:%Y-%m-%d %H:%M}"


class SignatureMeaning(models.TextChoices):
    RELEASED = "released", "Released"
    REJECTED = "rejected", "Rejected"
    REVIEWED = "reviewed", "Reviewed"
    APPROVED = "approved", "Approved"
    RECALL_OPENED = "recall_opened", "Recall opened"
    RECALL_CLOSED = "recall_closed", "Recall closed"
    EXCURSION_DISPOSITION = "excursion_disposition", "Excursion disposition"
    RETURN_DISPOSITION = "return_disposition", "Return disposition"


class Signature(models.Model):
    """An electronic signature (21 CFR 11.50, 11.70): who, when, what it means, and on what.

    It names the record (model and id) and the version it signed, and holds the hash of that
    record's content: the signature cannot be carried over to another record, and any later
    change to the record shows as "changed after signature". Append-only and sealed.
    """

    APPEND_ONLY = True

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    printed_name = models.CharField(max_length=300)
    meaning = models.CharField(max_length=32, choices=SignatureMeaning.choices)
    reason = models.TextField()
    signed_at = models.DateTimeField()
    object_model = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    record_version = models.BigIntegerField(
        null=True, help_text="history_id of the signed version of the record"
    )
    content_hash = models.CharField(max_length=64)
    column_set = models.CharField(
        max_length=64, blank=True, help_text="digest of the ColumnSet content_hash covers"
    )

    class Meta:
        ordering = ["signed_at", "id"]
        indexes = [models.Index(fields=["object_model", "object_id"])]
        constraints = [
            models.CheckConstraint(condition=~models.Q(reason=""), name="signature_has_reason"),
        ]

    def __str__(self) -> str:
        when = f"{self.signed_at:%Y-%m-%d %H:%M} UTC"
        return f"{self.printed_name}, {self.get_meaning_display()}, {when}"
