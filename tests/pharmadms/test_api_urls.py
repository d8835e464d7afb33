"""The API's URL map: the router comes early (scans are tried first, a scan station waits for
every one), and no route of the router shadows one of the API's own paths."""

from __future__ import annotations

from django.urls import URLPattern, resolve, reverse

from pharmadms import api

SAMPLE_VALUES = {"pk": 7, "batch_id": 7, "sscc": "106141411234567897"}


def test_every_path_of_the_api_reaches_its_own_view():
    own_paths = [entry for entry in api.urlpatterns if isinstance(entry, URLPattern)]
    assert len(own_paths) > 10
    for entry in own_paths:
        names = entry.pattern.converters.keys()
        url = reverse(entry.name, kwargs={name: SAMPLE_VALUES[name] for name in names})
        assert resolve(url).url_name == entry.name, url


def test_scans_are_resolved_before_the_other_resources():
    assert resolve("/api/v1/scans/").url_name == "scan-list"
    assert resolve("/api/v1/scans/decode/").url_name == "scan-decode"
    assert resolve("/api/v1/scans/12/").url_name == "scan-detail"
    router_at = next(
        index for index, entry in enumerate(api.urlpatterns) if not isinstance(entry, URLPattern)
    )
    assert router_at <= 1  # only the decode page, which the scan detail route would take, before
