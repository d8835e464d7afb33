"""Read queries of the audit-trail viewer: who sees which entries, a record's lineage, exports.

Visibility, in one place for the API, the pages and the exports:

- only auditors read the audit trail (QA officers, administrators, regulators, superusers);
- a regulator or a superuser reads every entry;
- a QA officer or an administrator reads the entries written by users of their own partner
  (``AuditEntry.partner_id``) and the entries about records their partner owns (its own partner
  row, users, licences, sites, locations, the products it makes and their lots, allocations and
  stock moves at its locations: :data:`OWNER_PATHS`), whoever wrote them;
- a record's lineage is visible to such a QA officer or administrator when their partner owns
  the record or wrote any chain entry about it; otherwise it is "not found".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from pharmadms.exceptions import InvalidInput, NotFound

from .chain import EVENT, GENESIS, content_hash, content_hash_over, row_content
from .history import history_diff
from .models import AuditEntry, ChainHead, Signature
from .services import SIGNATURE_CHANGED, SIGNATURE_VALID

# Lookups from a record to the partner that owns it, by model label. The audit app sits below
# the apps it audits, so it names their models only as labels, resolved through the app
# registry; an app whose records should be visible to their owner's auditors registers its
# paths with register_owner_paths() (from its AppConfig.ready()) or is listed here.
OWNER_PATHS: dict[str, tuple[str, ...]] = {
    "partners.partner": ("pk",),
    "partners.user": ("partner_id",),
    "partners.licence": ("partner_id",),
    "partners.site": ("partner_id",),
    "partners.location": ("site__partner_id",),
    "batches.product": ("manufacturer_id",),
    "batches.batch": ("product__manufacturer_id",),
    "batches.stockallocation": ("location__site__partner_id",),
    "batches.stockmove": ("from_location__site__partner_id", "to_location__site__partner_id"),
}

# The label record_event() gives access events (sign-in, sign-out, failures, denials).
EVENT_MODEL = settings.AUTH_USER_MODEL.lower()  # access events are about the user


def register_owner_paths(label: str, *paths: str) -> None:
    """Declare how a record of ``label`` leads to its owning partner (for the auditors' scope)."""
    OWNER_PATHS[label] = tuple(paths)


# --- models the chain knows ------------------------------------------------------------------


def historied_models() -> dict[str, type[models.Model]]:
    """Every model that keeps its versions with django-simple-history, by label."""
    return {
        model._meta.label_lower: model
        for model in apps.get_models()
        if getattr(model._meta, "simple_history_manager_attribute", None)
    }


def audited_model_labels() -> list[tuple[str, str]]:
    """Choices for the ``model`` filter: every label an entry can be about."""
    labels = set(historied_models())
    labels |= {m._meta.label_lower for m in apps.get_models() if getattr(m, "APPEND_ONLY", False)}
    labels.add(EVENT_MODEL)
    return [(label, label) for label in sorted(labels)]


def resolve_historied_model(label: str) -> type[models.Model]:
    """The historied model of ``label`` (``app_label.model_name``), or 400 ``unknown_model``."""
    model = historied_models().get((label or "").strip().lower())
    if model is None:
        raise InvalidInput(
            f"{label!r} is not a model with a history (use app_label.model_name, "
            "e.g. batches.batch)",
            code="unknown_model",
        )
    return model


# --- scoping ---------------------------------------------------------------------------------


def _owned_ids(model: type[models.Model], paths: Sequence[str], partner_id: int) -> QuerySet:
    """The primary keys, as text (like ``AuditEntry.object_id``), of ``partner_id``'s records."""
    owned = Q()
    for path in paths:
        owned |= Q(**{path: partner_id})
    return (
        model._base_manager.filter(owned)
        .annotate(object_key=Cast("pk", output_field=CharField()))
        .values("object_key")
    )


def _owned_entries(partner_id: int) -> Q:
    condition = Q()
    for label, paths in OWNER_PATHS.items():
        try:
            model = apps.get_model(label)
        except LookupError:  # an app that is not installed in this deployment
            continue
        condition |= Q(object_model=label, object_id__in=_owned_ids(model, paths, partner_id))
    return condition


def visible_entries(user) -> QuerySet[AuditEntry]:
    """The chain entries ``user`` may read (the caller has checked the user is an auditor).

    See the module's docstring for the rule. Each owned model adds one ``IN (subquery)`` on the
    indexed ``(object_model, object_id)``; recording the owning partner on the entry when it is
    sealed would make this a single indexed lookup, should the chain grow large.
    """
    entries = AuditEntry.objects.all()
    if user.sees_everything:
        return entries
    if user.partner_id is None:
        return entries.none()
    return entries.filter(Q(partner_id=user.partner_id) | _owned_entries(user.partner_id))


def record_visible_to(user, model: type[models.Model], pk: Any) -> bool:
    """Whether ``user`` (an auditor) may read the lineage of one record (module docstring)."""
    if user.sees_everything:
        return True
    if user.partner_id is None:
        return False
    label = model._meta.label_lower
    paths = OWNER_PATHS.get(label)
    if paths and _owned_ids(model, paths, user.partner_id).filter(pk=pk).exists():
        return True
    return AuditEntry.objects.filter(
        object_model=label, object_id=str(pk), partner_id=user.partner_id
    ).exists()


# --- signatures ------------------------------------------------------------------------------


def current_rows(keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], models.Model]:
    """Each record as it is now, by ``(model label, object id)``.

    One query per model; a record that no longer exists (or a label that is not a model) is
    missing, and a signature on it can only be "changed after signature".
    """
    wanted: dict[str, set[str]] = defaultdict(set)
    for label, object_id in keys:
        wanted[label].add(object_id)
    rows = {}
    for label, object_ids in wanted.items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue
        ids = []
        for object_id in object_ids:
            try:
                ids.append(model._meta.pk.to_python(object_id))
            except ValidationError:
                continue
        for pk, row in model._base_manager.in_bulk(ids).items():
            rows[(label, str(pk))] = row
    return rows


def _status(signature: Signature, rows: dict[tuple[str, str], models.Model]) -> str:
    """audit.services.signature_status, from rows read in bulk: "valid" while the signed
    record still has the content that was signed (over the columns signed), else "changed
    after signature"."""
    row = rows.get((signature.object_model, signature.object_id))
    current = None if row is None else content_hash_over(row, signature.column_set)
    return SIGNATURE_VALID if current == signature.content_hash else SIGNATURE_CHANGED


def signature_list_for_record(*, record: models.Model) -> list[Signature]:
    """The record's signatures, oldest first, each with its ``status`` against the record now."""
    key = (record._meta.label_lower, str(record.pk))
    signatures = list(
        Signature.objects.filter(object_model=key[0], object_id=key[1]).select_related("user")
    )
    rows = current_rows([key]) if signatures else {}
    for signature in signatures:
        signature.status = _status(signature, rows)
    return signatures


@dataclass
class SignatureView:
    """A signature's manifestation (21 CFR 11.50) with its status and the entry that sealed it."""

    signature: Signature
    status: str
    sealed_sequence: int | None

    def __getattr__(self, name: str) -> Any:
        # printed_name, signed_at, meaning, reason, ... of the row; never dunders (copy, pickle)
        if name.startswith("_") or name == "signature":
            raise AttributeError(name)
        return getattr(self.signature, name)


def _signature_views(signatures: list[Signature]) -> list[SignatureView]:
    rows = current_rows((s.object_model, s.object_id) for s in signatures)
    seals = dict(
        AuditEntry.objects.filter(
            source=Signature._meta.label_lower, record_id__in=[s.pk for s in signatures]
        ).values_list("record_id", "sequence")
    )
    return [SignatureView(s, _status(s, rows), seals.get(s.pk)) for s in signatures]


def signatures_on(keys: Iterable[tuple[str, str]]) -> list[SignatureView]:
    """Every signature on the given records (``(model label, object id)``), oldest first."""
    by_model: dict[str, set[str]] = defaultdict(set)
    for label, object_id in keys:
        by_model[label].add(object_id)
    if not by_model:
        return []
    condition = Q()
    for label, object_ids in by_model.items():
        condition |= Q(object_model=label, object_id__in=sorted(object_ids))
    signatures = list(Signature.objects.filter(condition).select_related("user"))
    return _signature_views(signatures)


# --- lineage ---------------------------------------------------------------------------------


@dataclass
class Version:
    """One version of a record from its history table, with what changed and its chain seal."""

    history_id: int
    history_date: Any
    history_type: str
    user: Any
    reason: str
    changes: list[dict[str, Any]]
    sealed_sequence: int | None
    signatures: list[SignatureView] = field(default_factory=list)

    @property
    def username(self) -> str | None:
        return getattr(self.user, "username", None)

    @property
    def history_type_display(self) -> str:
        return {"+": "created", "~": "changed", "-": "deleted"}.get(self.history_type, "?")


@dataclass
class Lineage:
    """Every version of one record, newest first, and the signatures on it."""

    model: type[models.Model]
    object_id: str
    instance: models.Model | None
    versions: list[Version]
    signatures: list[SignatureView]
    current_content_hash: str | None

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def verbose_name(self) -> str:
        return str(self.model._meta.verbose_name)

    @property
    def title(self) -> str:
        return str(self.instance) if self.instance is not None else f"{self.label} {self.object_id}"


def record_lineage(*, user, model_label: str, object_id: Any) -> Lineage:
    """The lineage of one record: versions with diffs and seals, and its signatures.

    Refuses a label that is not a historied model (400 ``unknown_model``), an id that is not
    one (400 ``invalid_id``), and a record the user may not see or that never existed (404).
    A fixed number of queries, whatever the number of versions and signatures.
    """
    model = resolve_historied_model(model_label)
    label = model._meta.label_lower
    try:
        pk = model._meta.pk.to_python(object_id)
    except ValidationError as error:
        raise InvalidInput(f"{object_id!r} is not an id of {label}", code="invalid_id") from error
    history = getattr(model, model._meta.simple_history_manager_attribute)
    versions = list(
        history.filter(**{model._meta.pk.attname: pk})
        .select_related("history_user")
        .order_by("history_id")
    )
    if not versions or not record_visible_to(user, model, pk):
        raise NotFound(f"no {label} {object_id} in your audit trail", code="not_found")

    history_label = history.model._meta.label_lower
    seals = dict(
        AuditEntry.objects.filter(
            source=history_label, record_id__in=[v.history_id for v in versions]
        ).values_list("record_id", "sequence")
    )
    instance = model._base_manager.filter(pk=pk).first()
    signatures = signatures_on([(label, str(pk))])
    by_version: dict[int, list[SignatureView]] = defaultdict(list)
    for signature in signatures:
        if signature.record_version is not None:
            by_version[signature.record_version].append(signature)

    lineage_versions, previous = [], None
    for row in versions:
        lineage_versions.append(
            Version(
                history_id=row.history_id,
                history_date=row.history_date,
                history_type=row.history_type,
                user=row.history_user,
                reason=row.history_change_reason or "",
                changes=history_diff(row, previous),
                sealed_sequence=seals.get(row.history_id),
                signatures=by_version.get(row.history_id, []),
            )
        )
        previous = row
    lineage_versions.reverse()
    return Lineage(
        model=model,
        object_id=str(pk),
        instance=instance,
        versions=lineage_versions,
        signatures=signatures,
        current_content_hash=content_hash(row_content(instance)) if instance else None,
    )


# --- exports ---------------------------------------------------------------------------------

# A PDF of more rows than this is no longer read by a person; the CSV is cut at the same place.
EXPORT_LIMIT = 10_000


@dataclass
class ExportData:
    """The entries of one export, what was cut, the chain head they were read at, signatures."""

    entries: list[AuditEntry]
    total: int
    limit: int
    head_sequence: int
    head_hash: str
    signatures: list[SignatureView]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.entries)


def export_entries(entries: QuerySet[AuditEntry], *, limit: int = EXPORT_LIMIT) -> ExportData:
    """The first ``limit`` entries of a filtered, visible queryset, read up to the chain head.

    The head is read first and the entries are bounded by its sequence, so the head printed in
    the export is the last link the export could contain, even while others are being written.
    """
    head = ChainHead.objects.filter(pk=1).first()
    head_sequence, head_hash = (head.sequence, head.head_hash) if head else (0, GENESIS)
    bounded = entries.filter(sequence__lte=head_sequence)
    rows = list(bounded.order_by("sequence")[:limit])
    total = len(rows) if len(rows) < limit else bounded.count()
    keys = {(e.object_model, e.object_id) for e in rows if e.source != EVENT}
    return ExportData(
        entries=rows,
        total=total,
        limit=limit,
        head_sequence=head_sequence,
        head_hash=head_hash,
        signatures=signatures_on(keys),
    )
