"""The WSGI application bench/scan.py runs under gunicorn: the project as deployed, on the
bench's throw-away database, plus one trivial authenticated DRF endpoint to compare with.

    gunicorn --pythonpath <project> bench.scan_server:application

``BENCH_DATABASE_NAME`` names the database (the SQLite file or the PostgreSQL database that
bench/throwaway.py created); everything else comes from the environment as in production.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pharmadms.settings")

from django.conf import settings  # noqa: E402  (the environment above must be set first)

# Before any connection exists: the throw-away database instead of the configured one.
settings.DATABASES["default"]["NAME"] = os.environ["BENCH_DATABASE_NAME"]
settings.ROOT_URLCONF = __name__

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()  # sets Django up: DRF's views import models

from django.http import JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


def worker(request):
    """Which worker process serves this connection (the bench spreads its connections)."""
    return JsonResponse({"pid": os.getpid()})


class TrivialView(APIView):
    """The floor: the same authentication, permission check, JSON parsing and rendering as
    POST /api/v1/scans/, and no work at all."""

    def post(self, request):
        return Response({"ok": True, "fields": len(request.data)})


urlpatterns = [
    path("bench/trivial/", TrivialView.as_view()),
    path("bench/worker/", worker),
    path("", include("pharmadms.urls")),
]
