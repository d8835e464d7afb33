from django.apps import AppConfig


class ColdchainConfig(AppConfig):
    name = "coldchain"
    verbose_name = "Cold chain"

    def ready(self) -> None:
        from batches import hooks
        from orders.views import register_shipment_panel

        from . import selectors

        # batches sits below us and asks lot_holds() before a lot moves or sells: a lot that
        # came on a shipment with an open or acknowledged excursion is held at the buyer's.
        # (Readings and dead letters are APPEND_ONLY_UNSEALED: audit/append_only.py guards them.)
        hooks.register_hold_check(selectors.excursion_holds, gate=selectors.excursion_hold_gate)
        # The shipment page (orders) shows the shipment's temperature record.
        register_shipment_panel("coldchain/_shipment_panel.html")
