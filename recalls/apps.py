from django.apps import AppConfig


class RecallsConfig(AppConfig):
    name = "recalls"

    def ready(self) -> None:
        from audit.selectors import register_owner_paths
        from batches import hooks

        from .models import RecallLot
        from .selectors import recall_holds

        # A lot under recall is refused by every allocation, pick, dispatch, receipt into
        # saleable stock, restock and sale (batches.hooks.lot_holds asks this check). The gate,
        # read with every other gate in one statement, lets lots under no recall skip it; it
        # matches the check's own condition, so it never hides a hold.
        hooks.register_hold_check(
            recall_holds,
            gate=lambda batch_id: RecallLot.objects.filter(
                batch_id=batch_id, recall__is_drill=False
            ),
        )
        # Auditors of the recalling firm see the recall's records in the audit trail.
        register_owner_paths("recalls.recall", "firm_id")
        register_owner_paths("recalls.recalllot", "recall__firm_id")
        register_owner_paths("recalls.recallconsignee", "recall__firm_id", "partner_id")
