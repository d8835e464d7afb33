"""The rules every regulated model obeys: history on every write, a reason for every change.

django-simple-history records a version for each ``save()``; it records nothing for
``QuerySet.update()``, ``bulk_create`` or ``bulk_update``. So on a regulated model those calls are
refused unless they run inside :func:`bulk_with_history` (used only by the helpers below, which
write the history rows themselves). ``delete()`` is refused outright: nothing regulated is deleted.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.utils import timezone
from simple_history import models as simple_history
from simple_history.signals import post_create_historical_record, pre_create_historical_record

from pharmadms.exceptions import InvalidInput, RuleViolation, public_code

_bulk_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("bulk_allowed", default=False)


class ReasonRequired(InvalidInput):
    default_code = "reason_required"


class HistoryBypassRefused(RuleViolation):
    """A write that would leave no history (bulk update/create, delete) on a regulated model."""

    default_code = "history_bypass_refused"


@contextlib.contextmanager
def bulk_with_history() -> Iterator[None]:
    """Let the history-aware helpers below call the bulk APIs they wrap."""
    token = _bulk_allowed.set(True)
    try:
        yield
    finally:
        _bulk_allowed.reset(token)


def _refuse(model: type[models.Model], what: str) -> None:
    if not _bulk_allowed.get():
        raise HistoryBypassRefused(
            f"{what} on {model._meta.label} would leave no history; "
            "use save() with a reason or audit.history helpers"
        )


class RegulatedQuerySet(models.QuerySet):
    """A queryset that refuses every write that simple-history cannot see."""

    def update(self, **kwargs: Any) -> int:
        _refuse(self.model, "QuerySet.update()")
        return super().update(**kwargs)

    def bulk_create(self, objs: Iterable, *args: Any, **kwargs: Any) -> list:
        _refuse(self.model, "bulk_create()")
        return super().bulk_create(objs, *args, **kwargs)

    def bulk_update(self, objs: Iterable, *args: Any, **kwargs: Any) -> int:
        _refuse(self.model, "bulk_update()")
        return super().bulk_update(objs, *args, **kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise HistoryBypassRefused(f"{self.model._meta.label} rows are never deleted")

    delete.queryset_only = True  # type: ignore[attr-defined]

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        raise HistoryBypassRefused(
            f"update_or_create() on {self.model._meta.label} carries no reason; use a service"
        )


RegulatedManager = models.Manager.from_queryset(RegulatedQuerySet)


class RegulatedModel(models.Model):
    """Base of every regulated model: each save carries a reason and an actor, nothing is deleted.

    Set the reason and actor with :func:`save_with_reason`; ``save()`` without a reason is
    refused, so a code path that forgets it fails in tests instead of writing silently.
    """

    objects = RegulatedManager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        reason = getattr(self, "_change_reason", None)
        if not reason or not str(reason).strip():
            raise ReasonRequired(
                f"a change to {self._meta.verbose_name} needs a reason", code="reason_required"
            )
        try:
            # The row, its history row and the history row's seal commit together or not at all.
            with transaction.atomic():
                super().save(*args, **kwargs)
        finally:
            # One reason per save: the next change must state its own.
            self.__dict__.pop("_change_reason", None)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise HistoryBypassRefused(f"{self._meta.verbose_name} records are never deleted")


class HistoricalRecords(simple_history.HistoricalRecords):
    """django-simple-history's ``HistoricalRecords`` whose rows are written with their seal.

    Every regulated model declares ``history = HistoricalRecords()`` from here. The version is
    built exactly as django-simple-history builds it, with the same signals; only the write
    differs: instead of ``history_instance.save()`` and a second step that seals it, one call
    (:func:`audit.chain.insert_history_row`) writes the row and its chain entry in as few round
    trips as the database allows. That halves what history and seal add to a write
    (bench/audit_overhead.py).
    """

    def create_historical_record(self, instance, history_type, using=None):
        from .chain import insert_history_row

        if using not in (None, DEFAULT_DB_ALIAS):  # the chain lives in the default database
            super().create_historical_record(instance, history_type, using=using)
            return
        history_date = getattr(instance, "_history_date", None) or timezone.now()
        history_user = self.get_history_user(instance)
        reason = self.get_change_reason_for_object(instance, history_type, using)
        manager = getattr(instance, self.manager_name)
        attrs = {f.attname: getattr(instance, f.attname) for f in self.fields_included(instance)}
        if getattr(manager.model, "history_relation", None) is not None:
            attrs["history_relation"] = instance
        history_instance = manager.model(
            history_date=history_date,
            history_type=history_type,
            history_user=history_user,
            history_change_reason=reason,
            **attrs,
        )
        signal = {"sender": manager.model, "instance": instance, "using": using}
        pre_create_historical_record.send(
            history_date=history_date,
            history_user=history_user,
            history_change_reason=reason,
            history_instance=history_instance,
            **signal,
        )
        insert_history_row(history_instance)
        self.create_historical_record_m2ms(history_instance, instance)
        post_create_historical_record.send(
            history_date=history_date,
            history_user=history_user,
            history_change_reason=reason,
            history_instance=history_instance,
            **signal,
        )


def save_with_reason(
    instance: RegulatedModel,
    *,
    actor: Any,
    reason: str,
    update_fields: Sequence[str] | None = None,
) -> RegulatedModel:
    """Validate and save ``instance`` so its history row names ``actor`` and ``reason``."""
    if not reason or not reason.strip():
        raise ReasonRequired(f"a change to {instance._meta.verbose_name} needs a reason")
    try:
        instance.full_clean(exclude=_unchanged_fields(instance, update_fields))
    except ValidationError as error:
        raise invalid_input_from(error) from error
    instance._change_reason = reason.strip()
    instance._history_user = actor
    instance.save(update_fields=update_fields)
    return instance


def check_editable(fields: Iterable[str], editable: set[str]) -> None:
    """Refuse any field outside ``editable`` (code ``field_not_editable``)."""
    refused = sorted(set(fields) - editable)
    if refused:
        raise InvalidInput(
            f"these fields cannot be set: {', '.join(refused)}", code="field_not_editable"
        )


def update_with_reason(
    instance: RegulatedModel,
    *,
    actor: Any,
    reason: str,
    changes: dict[str, Any],
    editable: set[str],
) -> RegulatedModel:
    """Apply ``changes`` (each field must be ``editable``) and save them with actor and reason."""
    check_editable(changes, editable)
    for name, value in changes.items():
        setattr(instance, name, value)
    return save_with_reason(instance, actor=actor, reason=reason, update_fields=list(changes))


def create_with_reason(model: type[RegulatedModel], *, actor: Any, reason: str, **fields: Any):
    """Create one regulated row, validated, with its first history row naming actor and reason."""
    return save_with_reason(model(**fields), actor=actor, reason=reason)


def invalid_input_from(error: ValidationError) -> InvalidInput:
    """Turn Django's ValidationError into the API's refusal, keeping the first error's code."""
    if hasattr(error, "error_dict"):
        field, errors = next(iter(error.error_dict.items()))
        first = errors[0]
        message = " ".join(first.messages)
        detail = message if field == "__all__" else f"{field}: {message}"
        return InvalidInput(
            detail,
            code=public_code(first.code),
            extra={"errors": error.message_dict},
        )
    return InvalidInput(" ".join(error.messages), code=public_code(getattr(error, "code", None)))


def _unchanged_fields(instance: models.Model, update_fields: Sequence[str] | None) -> list[str]:
    if update_fields is None:
        return []
    return [f.name for f in instance._meta.fields if f.name not in set(update_fields)]


def bulk_create_with_reason(
    objs: Sequence[RegulatedModel], *, actor: Any, reason: str
) -> list[RegulatedModel]:
    """``bulk_create`` for regulated rows, writing their history rows in the same transaction."""
    if not objs:
        return []
    if not reason or not reason.strip():
        raise ReasonRequired("a bulk change needs a reason")
    model = type(objs[0])
    with transaction.atomic(), bulk_with_history():
        created = model.objects.bulk_create(list(objs))
        _seal_bulk_history(model, created, actor=actor, reason=reason.strip(), update=False)
    return created


def bulk_update_with_reason(
    objs: Sequence[RegulatedModel], fields: Sequence[str], *, actor: Any, reason: str
) -> int:
    """``bulk_update`` for regulated rows, writing their history rows in the same transaction."""
    if not objs:
        return 0
    if not reason or not reason.strip():
        raise ReasonRequired("a bulk change needs a reason")
    model = type(objs[0])
    with transaction.atomic(), bulk_with_history():
        updated = model.objects.bulk_update(list(objs), list(fields))
        _seal_bulk_history(model, list(objs), actor=actor, reason=reason.strip(), update=True)
    return updated


def _seal_bulk_history(model, objs: list, *, actor: Any, reason: str, update: bool) -> None:
    """Write the history rows of a bulk write and seal them (bulk history sends no signal)."""
    from .chain import seal_history_rows

    rows = model.history.bulk_history_create(
        objs, update=update, default_user=actor, default_change_reason=reason
    )
    seal_history_rows(rows)  # never empty: the helpers return before writing nothing


def regulated_models() -> list[type[models.Model]]:
    """Every concrete model that must keep history (used by the guards and their tests)."""
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if issubclass(model, RegulatedModel) and not model._meta.abstract
    ]


def history_diff(version: Any, previous: Any | None) -> list[dict[str, Any]]:
    """Fields that changed between two history rows of one object (all fields for the first)."""
    # The history model's own columns: fields kept out of history (secrets) are not listed.
    fields = [f.attname for f in version._meta.fields if not f.name.startswith("history_")]
    changes = []
    for name in fields:
        new = getattr(version, name, None)
        old = getattr(previous, name, None) if previous is not None else None
        if previous is None or new != old:
            changes.append({"field": name, "old": _plain(old), "new": _plain(new)})
    return changes


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return str(value)
