"""Temperature profiles and excursion rules over the API (reference data every partner reads,
maintained by the owner's QA officers and admins, with a reason), and the logger assignments
(listed per partner, ended by the seller's staff)."""

from __future__ import annotations

import datetime

import pytest
from rest_framework.test import APIClient

from coldchain.models import EvaluationState, Excursion, ExcursionRule, TemperatureProfile
from coldchain.services import ingest_messages
from tests.coldchain.conftest import message, minutes, series
from tests.factories import ExcursionRuleFactory, StorageClassFactory, UserFactory

API = "/api/v1"


@pytest.fixture
def room(network):
    return StorageClassFactory(
        code="15-25c", name="Room temperature", min_celsius=15, max_celsius=25
    )


def strict(user) -> APIClient:
    """A client that answers a server error as a response, so a 500 fails the assertion."""
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=user)
    return client


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]


def create_profile(user, room, **extra):
    body = {
        "storage_class": room.pk,
        "name": "Room temperature in transit",
        "min_celsius": "15.00",
        "max_celsius": "25.00",
        "mkt_window_hours": 720,
        "mkt_limit_celsius": "25.00",
        "reason": "new storage class",
        **extra,
    }
    return strict(user).post(f"{API}/temperature-profiles/", body, format="json")


def test_a_qa_officer_creates_a_profile_and_its_rules_and_corrects_them(network, room):
    created = create_profile(network.qa, room)
    assert created.status_code == 201, created.content
    profile = created.json()
    assert profile["owner"] == network.manufacturer.pk
    assert profile["rules"] == []

    rule = strict(network.qa).post(
        f"{API}/excursion-rules/",
        {
            "profile": profile["id"],
            "name": "Above 25 °C for 30 min",
            "kind": "consecutive",
            "direction": "high",
            "delay_minutes": 30,
            "reason": "labelled storage conditions",
        },
        format="json",
    )
    assert rule.status_code == 201, rule.content

    changed = strict(network.qa).patch(
        f"{API}/excursion-rules/{rule.json()['id']}/",
        {"delay_minutes": 45, "reason": "stability data allow 45 minutes"},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["delay_minutes"] == 45
    narrowed = strict(network.admin).patch(
        f"{API}/temperature-profiles/{profile['id']}/",
        {"max_celsius": "24.00", "reason": "customer's requirement"},
        format="json",
    )
    assert narrowed.status_code == 200, narrowed.content
    stored = TemperatureProfile.objects.get(pk=profile["id"])
    assert str(stored.max_celsius) == "24.00"
    assert stored.history.latest().history_change_reason == "customer's requirement"
    history = strict(network.qa).get(f"{API}/temperature-profiles/{profile['id']}/history/")
    assert history.status_code == 200
    listed = strict(network.qa).get(f"{API}/temperature-profiles/{profile['id']}/").json()
    assert [r["kind"] for r in listed["rules"]] == ["consecutive"]


def test_every_signed_in_user_reads_profiles_and_rules_but_only_the_owner_writes(network, room):
    profile_id = create_profile(network.qa, room).json()["id"]
    rule = ExcursionRuleFactory(profile_id=profile_id, kind="instant")
    other_qa = UserFactory(username="oqa", partner=network.other, role="qa_officer")

    for user in (network.other_user, network.regulator, network.wholesaler_qa):
        client = strict(user)
        assert client.get(f"{API}/temperature-profiles/{profile_id}/").status_code == 200
        assert client.get(f"{API}/excursion-rules/{rule.pk}/").status_code == 200
    # The history names Acme's staff: Acme and the regulator read it, others do not.
    assert (
        strict(other_qa).get(f"{API}/temperature-profiles/{profile_id}/history/").status_code == 404
    )
    assert (
        strict(network.regulator)
        .get(f"{API}/temperature-profiles/{profile_id}/history/")
        .status_code
        == 200
    )

    refused(
        strict(other_qa).patch(
            f"{API}/temperature-profiles/{profile_id}/",
            {"max_celsius": "30.00", "reason": "warmer"},
            format="json",
        ),
        403,
        "not_your_organisation",
    )
    refused(
        strict(other_qa).post(
            f"{API}/excursion-rules/",
            {"profile": profile_id, "kind": "instant", "reason": "x"},
            format="json",
        ),
        403,
        "not_your_organisation",
    )
    refused(
        strict(network.warehouse).patch(
            f"{API}/excursion-rules/{rule.pk}/", {"name": "x", "reason": "x"}, format="json"
        ),
        403,
        "permission_denied",
    )
    refused(create_profile(network.regulator, room), 403, "permission_denied")
    assert APIClient().get(f"{API}/temperature-profiles/").status_code == 401
    assert APIClient().get(f"{API}/excursion-rules/").status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"min_celsius": "25.00", "max_celsius": "15.00"}, 400, "invalid_range"),
        ({"reason": ""}, 400, "reason_required"),
        ({"colour": "blue"}, 400, "unknown_field"),
        ({"owner": 1}, 400, "field_not_editable"),
        ({"mkt_window_hours": 0}, 400, "min_value"),
        ({"storage_class": 999_999}, 400, "does_not_exist"),
    ],
)
def test_a_bad_profile_is_refused_with_a_code(network, room, body, status, code):
    refused(create_profile(network.qa, room, **body), status, code)
    assert not TemperatureProfile.objects.filter(storage_class=room).exists()


def test_a_second_active_profile_of_a_class_is_refused(network, room):
    assert create_profile(network.qa, room).status_code == 201
    refused(create_profile(network.qa, room), 409, "duplicate_profile")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "consecutive"}, "delay_required"),
        ({"kind": "cumulative"}, "budget_required"),
        ({"kind": "data_gap"}, "interval_required"),
        ({"kind": "instant", "limit_celsius": "10.00"}, "limit_needs_direction"),
        ({"kind": "sometimes"}, "invalid_kind"),
        ({"kind": "instant", "direction": "sideways"}, "invalid_direction"),
        ({"kind": "instant", "delay_minutes": -5}, "min_value"),
    ],
)
def test_a_bad_rule_is_refused_with_a_code(network, room, body, code):
    profile_id = create_profile(network.qa, room).json()["id"]
    response = strict(network.qa).post(
        f"{API}/excursion-rules/", {"profile": profile_id, "reason": "x", **body}, format="json"
    )
    refused(response, 400, code)
    assert not ExcursionRule.objects.exists()


def test_a_rule_keeps_its_kind_and_a_partial_change_is_checked_whole(network, room):
    profile_id = create_profile(network.qa, room).json()["id"]
    rule = (
        strict(network.qa)
        .post(
            f"{API}/excursion-rules/",
            {"profile": profile_id, "kind": "consecutive", "delay_minutes": 10, "reason": "x"},
            format="json",
        )
        .json()
    )
    url = f"{API}/excursion-rules/{rule['id']}/"
    refused(
        strict(network.qa).patch(url, {"kind": "instant", "reason": "x"}, format="json"),
        400,
        "field_not_editable",
    )
    refused(
        strict(network.qa).patch(url, {"delay_minutes": 0, "reason": "x"}, format="json"),
        400,
        "delay_required",
    )
    refused(
        strict(network.qa).patch(
            f"{API}/temperature-profiles/{profile_id}/",
            {"max_celsius": "10.00", "reason": "x"},
            format="json",
        ),
        400,
        "invalid_range",
    )
    refused(strict(network.qa).patch(url, {"reason": "nothing"}, format="json"), 400, "no_changes")


@pytest.fixture
def judging_rule(trip, django_capture_on_commit_callbacks):
    """An instant rule of the trip's profile (kept by the seller) that found an excursion."""
    trip.profile.owner = trip.trade.seller
    trip.profile._change_reason = "test: Acme maintains it"
    trip.profile.save()
    rule = ExcursionRuleFactory(profile=trip.profile, kind="instant")
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages([message("LG-0001", series(trip, [5, 9, 5]))])
    return rule


def test_changing_a_rule_judges_the_trips_in_transit_again(
    trip, judging_rule, django_capture_on_commit_callbacks
):
    """A wider limit: the excursion the old rule found is no longer shown and is withdrawn."""
    rule = judging_rule
    (excursion,) = Excursion.objects.all()

    changed = strict(trip.net.qa).patch(
        f"{API}/excursion-rules/{rule.pk}/",
        {"direction": "high", "limit_celsius": "10.00", "reason": "stability data: 10 °C"},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert not EvaluationState.objects.filter(rule=rule).exists()
    with django_capture_on_commit_callbacks(execute=True):
        ingest_messages([message("LG-0001", series(trip, [5], start_seq=4, offset=15))])

    excursion.refresh_from_db()
    assert excursion.status == "withdrawn"


def test_renaming_a_rule_judges_nothing_again(trip, judging_rule):
    """Where the rule stands on each trip in transit is kept: only what it judges re-runs it."""
    rule = judging_rule
    standing = EvaluationState.objects.get(rule=rule)

    renamed = strict(trip.net.qa).patch(
        f"{API}/excursion-rules/{rule.pk}/",
        {"name": "Above 8 °C at once", "reason": "clearer name"},
        format="json",
    )

    assert renamed.status_code == 200, renamed.content
    assert EvaluationState.objects.get(rule=rule) == standing
    assert rule.history.latest().history_change_reason == "clearer name"
    # The same delay given again is no change either.
    same = strict(trip.net.qa).patch(
        f"{API}/excursion-rules/{rule.pk}/",
        {"delay_minutes": rule.delay_minutes, "reason": "confirmed"},
        format="json",
    )
    assert same.status_code == 200, same.content
    assert EvaluationState.objects.filter(rule=rule).exists()


# --- logger assignments --------------------------------------------------------------------


def test_assignments_are_listed_to_seller_and_buyer_only(trip):
    net = trip.net
    for user in (trip.trade.seller_warehouse, net.wholesaler_qa, net.regulator):
        listed = strict(user).get(f"{API}/logger-assignments/?ongoing=true").json()
        assert [a["id"] for a in listed["results"]] == [trip.assignment.pk], user
        assert listed["results"][0]["device_id"] == "LG-0001"
    assert strict(net.other_user).get(f"{API}/logger-assignments/").json()["results"] == []
    refused(
        strict(net.other_user).get(f"{API}/logger-assignments/{trip.assignment.pk}/"),
        404,
        "not_found",
    )
    assert APIClient().get(f"{API}/logger-assignments/").status_code == 401
    history = strict(trip.trade.seller_warehouse).get(
        f"{API}/logger-assignments/{trip.assignment.pk}/history/"
    )
    assert history.status_code == 200


def test_the_sellers_warehouse_ends_an_assignment(trip):
    url = f"{API}/logger-assignments/{trip.assignment.pk}/end/"
    ends_at = minutes(trip, 90)
    refused(
        strict(trip.net.wholesaler_qa).post(url, {"reason": "x"}, format="json"),
        403,
        "permission_denied",
    )
    refused(
        strict(trip.trade.seller_warehouse).post(
            url,
            {"ends_at": (trip.t0 - datetime.timedelta(hours=1)).isoformat(), "reason": "x"},
            format="json",
        ),
        400,
        "invalid_window",
    )
    refused(
        strict(trip.trade.seller_warehouse).post(
            url, {"ends_at": ends_at.isoformat()}, format="json"
        ),
        400,
        "reason_required",
    )

    ended = strict(trip.trade.seller_warehouse).post(
        url,
        {"ends_at": ends_at.isoformat(), "reason": "logger taken off at the hub"},
        format="json",
    )

    assert ended.status_code == 200, ended.content
    trip.assignment.refresh_from_db()
    assert trip.assignment.ends_at == ends_at
    assert (
        strict(trip.net.qa).get(f"{API}/logger-assignments/?ongoing=true").json()["results"] == []
    )
    refused(
        strict(trip.trade.seller_warehouse).post(url, {"reason": "again"}, format="json"),
        409,
        "assignment_ended",
    )
    refused(
        strict(trip.net.regulator).post(url, {"reason": "x"}, format="json"),
        403,
        "permission_denied",
    )
