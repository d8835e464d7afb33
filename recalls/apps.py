from django.apps import AppConfig


class RecallsConfig(AppConfig):
    name = "recalls"

    def ready(self) -> None:
        from audit.selectors import register_owner_paths
        from batches import hooks

        from .selectors import recall_holds

        # A lot under recall is refused by every allocation, pick, dispatch, receipt into
        # saleable stock, restock and sale (batches.hooks.lot_holds asks this check).
        hooks.register_hold_check(recall_holds)
        # Auditors of the recalling firm see the recall's records in the audit trail.
        register_owner_paths("recalls.recall", "firm_id")
        register_owner_paths("recalls.recalllot", "recall__firm_id")
        register_owner_paths("recalls.recallconsignee", "recall__firm_id", "partner_id")
