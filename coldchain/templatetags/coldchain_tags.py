"""Template tags of the cold chain for pages other apps own: the temperature record of a
shipment, for the shipment page (orders)::

    {% load coldchain_tags %}{% temperature_record shipment %}
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import mark_safe

from coldchain import chart, selectors
from coldchain.models import Excursion, ExcursionStatus

register = template.Library()


@register.inclusion_tag("coldchain/_temperature_record.html")
def temperature_record(shipment) -> dict[str, Any]:
    """The shipment's temperature record: the chart (readings, profile band, excursions
    shaded) inline as SVG, the excursions with their status, and per logger min, max, mean and
    MKT with the MKT of each window. The page that includes it has already decided that its
    user may see the shipment."""
    return temperature_record_context(shipment)


def temperature_record_context(shipment) -> dict[str, Any]:
    """The template's context (also for a view that renders it on its own)."""
    summary = selectors.shipment_temperature_summary(shipment)
    series = selectors.shipment_series(shipment)
    profile = summary["profile"]
    excursions = list(
        Excursion.objects.filter(shipment=shipment)
        .exclude(status=ExcursionStatus.WITHDRAWN)
        .select_related("logger", "rule")
        .order_by("starts_at", "pk")
    )
    svg = ""
    if series:
        svg = chart.svg(
            chart.ChartData(
                title=f"Shipment {shipment.number}",
                series=series,
                band=(profile["min_celsius"], profile["max_celsius"]) if profile else None,
                excursions=[(e.number, e.starts_at, e.ends_at) for e in excursions],
            )
        )
    return {
        "shipment": shipment,
        "profile": profile,
        "loggers": summary["loggers"],
        "excursions": excursions,
        # Built by coldchain.chart from numbers and escaped names only.
        "chart_svg": mark_safe(svg),  # noqa: S308
        "open_excursions": sum(
            e.status in (ExcursionStatus.OPEN, ExcursionStatus.ACKNOWLEDGED) for e in excursions
        ),
    }
