"""The Celery app, exactly as Celery's Django example sets it up."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pharmadms.settings")

app = Celery("pharmadms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="pharmadms.ping")
def ping() -> str:
    """Round-trip check for a worker and its broker."""
    return "pong"
