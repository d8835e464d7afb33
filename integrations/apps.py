from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from orders.signals import business_event

        from . import receivers

        # orders declares the signal and never imports this app (it sits below us).
        business_event.connect(
            receivers.on_business_event, dispatch_uid="integrations.on_business_event"
        )
