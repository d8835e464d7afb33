"""Server-rendered pages shared by all apps: the home page and a health check."""

import datetime

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from batches.selectors import stock_on_hand_by_lot

# A lot within this many days of expiry is flagged on the stock page.
NEAR_EXPIRY_DAYS = 90


@login_required
def home(request):
    """Who I am (partner, role) and my partner's stock on hand by product and lot."""
    user = request.user
    today = timezone.localdate()
    rows = stock_on_hand_by_lot(partner=user.partner) if user.partner_id else []
    near_expiry = today + datetime.timedelta(days=NEAR_EXPIRY_DAYS)
    return render(request, "home.html", {"rows": rows, "today": today, "near_expiry": near_expiry})


@require_GET
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
