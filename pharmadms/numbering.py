"""Document numbers counted per year (SO-2026-000123, SH-…, RT-…, RC-2026-0001, DR-…).

Each kind of document has its own counter table (a model deriving from :class:`YearCounter`);
:func:`next_number` takes the year's next number under the counter row's lock, so two writers
never get the same one and a rolled-back transaction gives its number back.
"""

from __future__ import annotations

import datetime

from django.db import models


class YearCounter(models.Model):
    """The last number of a kind of document issued in a year; locked while the next one is
    taken.

    Not regulated: the numbers it hands out are recorded in each document's own history.
    """

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"


def next_number(
    counter_model: type[YearCounter], prefix: str, day: datetime.date, *, digits: int
) -> str:
    """The next number of ``day``'s year, as ``PREFIX-YEAR-NNNN`` with ``digits`` digits.

    Taken under the counter's row lock, held until the caller's transaction ends: callers take
    it before their first sealed write (the chain-head lock order).
    """
    counter, _ = counter_model.objects.get_or_create(year=day.year)
    counter = counter_model.objects.select_for_update().get(pk=counter.pk)
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    return f"{prefix}-{day.year}-{counter.last_number:0{digits}d}"
