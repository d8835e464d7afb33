from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from simple_history.signals import post_create_historical_record

        from . import append_only, receivers

        # Every history row is sealed into the chain in its own transaction.
        post_create_historical_record.connect(
            receivers.seal_history_row, dispatch_uid="audit.seal_history_row"
        )
        receivers.connect_access_events()
        post_migrate.connect(
            append_only.on_post_migrate, sender=self, dispatch_uid="audit.append_only"
        )
