"""The temperature record the shipment page includes with one line:
``{% load coldchain_tags %}{% temperature_record shipment %}``."""

from __future__ import annotations

from django.template import Context, Template

from coldchain import services
from coldchain.models import Excursion
from coldchain.selectors import shipment_temperature_summary
from coldchain.services import ingest_messages
from tests.coldchain.conftest import message, series
from tests.factories import ExcursionRuleFactory

INCLUDE = "{% load coldchain_tags %}{% temperature_record shipment %}"


def render(shipment) -> str:
    return Template(INCLUDE).render(Context({"shipment": shipment}))


def test_the_record_shows_chart_band_excursions_with_status_and_mkt(
    trip, django_capture_on_commit_callbacks
):
    ExcursionRuleFactory(profile=trip.profile, kind="instant", name="Out of range")
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages([message("LG-0001", series(trip, [5, 5, 11, 11, 5, 5]))])
    excursion = Excursion.objects.get()
    services.excursion_acknowledge(
        excursion=excursion, actor=trip.net.wholesaler_qa, comment="quarantined at receipt"
    )

    html = render(trip.shipment)

    assert 'data-testid="temperature-record"' in html
    assert "<svg" in html
    assert 'class="band"' in html
    assert 'class="readings"' in html
    assert f"<title>{excursion.number}</title>" in html  # the excursion shaded on the chart
    assert "2.00–8.00 °C" in html
    assert excursion.number in html
    assert "Acknowledged" in html
    assert "quarantined at receipt" in html
    assert "1 excursion awaits QA disposition" in html
    # The MKT shown is the trip's, to two places.
    mkt = shipment_temperature_summary(trip.shipment)["loggers"][0]["mkt_celsius"]
    assert 5 < mkt < 11
    assert f'data-testid="temperature-mkt">{mkt:.2f}<' in html
    assert f"/api/v1/shipments/{trip.shipment.pk}/temperature/chart/" in html


def test_a_shipment_without_readings_says_so(trip):
    html = render(trip.shipment)
    assert 'data-testid="temperature-no-readings"' in html
    assert "<svg" not in html
    assert 'data-testid="temperature-no-excursions"' in html


def test_names_in_the_record_are_escaped(trip):
    ExcursionRuleFactory(profile=trip.profile, kind="instant", name="<script>x</script>")
    ingest_messages([message("LG-0001", series(trip, [5, 12]))])
    services.evaluation_sweep(now=trip.t0)
    html = render(trip.shipment)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
