from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from simple_history.signals import post_create_historical_record

        _cache_history_manager_classes()

        from . import append_only, receivers

        # Every history row is sealed into the chain in its own transaction.
        post_create_historical_record.connect(
            receivers.seal_history_row, dispatch_uid="audit.seal_history_row"
        )
        receivers.connect_access_events()
        post_migrate.connect(
            append_only.on_post_migrate, sender=self, dispatch_uid="audit.append_only"
        )


def _cache_history_manager_classes() -> None:
    """Build simple-history's manager class once per (manager, queryset) pair.

    ``HistoryDescriptor.__get__`` calls ``Manager.from_queryset()`` on every ``.history`` access,
    which builds a new, identical class each time: about 140 µs of every audited write
    (bench/audit_overhead.py). The cached class behaves exactly the same.
    """
    from simple_history.manager import HistoryDescriptor

    if getattr(HistoryDescriptor, "_pharmadms_cached", False):
        return
    classes: dict = {}

    def __get__(self, instance, owner):
        key = (self.manager_class, self.queryset_class)
        manager_class = classes.get(key)
        if manager_class is None:
            manager_class = classes[key] = self.manager_class.from_queryset(self.queryset_class)
        return manager_class(self.model, instance)

    HistoryDescriptor.__get__ = __get__
    HistoryDescriptor._pharmadms_cached = True
