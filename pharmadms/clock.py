"""The business clock: the moment a business action happens (an order's date, a dispatch date).

Services stamp business dates with :func:`now` / :func:`localdate` instead of
``django.utils.timezone``. Normally these are the real time. :func:`at` runs a block of code at
another moment, for the demo seed and for imports of historical records, so that seeded orders
carry their real business dates and the sales by month show several months.

What never follows this clock: the audit trail. History rows (``history_date``), chain entries,
ledger moves' ``created_at`` and signatures record when the row was written — always the real
time, never back-dated (21 CFR Part 11 §11.10(e)). Only business dates may carry a past moment.

:func:`at` is for code that runs inside the process (a management command, a test); no API
endpoint or request body can reach it. A context variable holds the moment, so it applies to the
current thread (or task) only and is restored when the block ends, even on an error.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
from collections.abc import Iterator

from django.utils import timezone

_moment: contextvars.ContextVar[datetime.datetime | None] = contextvars.ContextVar(
    "business_moment", default=None
)


def now() -> datetime.datetime:
    """The business moment: the real time, unless a block runs :func:`at` another moment."""
    moment = _moment.get()
    return moment if moment is not None else timezone.now()


def localdate() -> datetime.date:
    """The business day in the current time zone."""
    return timezone.localtime(now()).date()


@contextlib.contextmanager
def at(moment: datetime.datetime | datetime.date) -> Iterator[datetime.datetime]:
    """Run the block as if the business moment were ``moment`` (a date means its noon, local
    time). The moment does not advance inside the block; nest blocks to move it on."""
    if isinstance(moment, datetime.datetime):
        if timezone.is_naive(moment):
            raise ValueError("a business moment is an aware datetime")
    else:
        moment = timezone.make_aware(datetime.datetime.combine(moment, datetime.time(12, 0)))
    token = _moment.set(moment)
    try:
        yield moment
    finally:
        _moment.reset(token)
