"""The excursion rules as a pure, resumable computation over one logger's readings.

No database here: :class:`RuleEvaluator` takes the rule's stored state, consumes readings in
measured order, and reports the excursions it found or extended (:class:`Finding`).
``coldchain.services.shipment_evaluate`` loads and saves the state, feeds the readings, and turns
findings into regulated ``Excursion`` rows.

Time is measured time. A reading holds its value until the next reading (sample and hold, as
logger software reports it): the time out of range of a run runs from its first reading out of
range to the first reading back in range.
"""

from __future__ import annotations

import datetime
import operator
from dataclasses import dataclass
from decimal import Decimal

from .models import Direction, ExcursionKind, RuleKind


@dataclass
class Finding:
    """An excursion as the readings show it now."""

    kind: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    peak_celsius: Decimal | None
    duration_seconds: int
    is_ongoing: bool


@dataclass
class State:
    """Mirror of ``EvaluationState``'s evaluation fields."""

    position_at: datetime.datetime | None = None
    position_sequence: int | None = None
    position_celsius: Decimal | None = None
    run_started_at: datetime.datetime | None = None
    run_peak_celsius: Decimal | None = None
    cumulative_seconds: int = 0
    cumulative_exceeded_at: datetime.datetime | None = None
    cumulative_peak_celsius: Decimal | None = None
    readings_evaluated: int = 0

    FIELDS = (
        "position_at",
        "position_sequence",
        "position_celsius",
        "run_started_at",
        "run_peak_celsius",
        "cumulative_seconds",
        "cumulative_exceeded_at",
        "cumulative_peak_celsius",
        "readings_evaluated",
    )

    @classmethod
    def from_values(cls, values) -> State:
        """From the values of ``FIELDS`` in their order (a ``values_list`` row)."""
        return cls(*values)

    def values(self) -> tuple:
        return _state_values(self)


_state_values = operator.attrgetter(*State.FIELDS)


def _seconds(delta: datetime.timedelta) -> int:
    return int(delta.total_seconds())


class RuleEvaluator:
    """One rule over one logger's readings on one shipment, resumable from a stored state."""

    def __init__(
        self,
        *,
        kind: str,
        direction: str,
        low: Decimal,
        high: Decimal,
        delay_minutes: int = 0,
        budget_minutes: int = 0,
        max_interval_minutes: int = 0,
        evaluate_from: datetime.datetime | None = None,
        state: State | None = None,
    ):
        self.kind = kind
        self.watch_high = direction in (Direction.HIGH, Direction.BOTH)
        self.watch_low = direction in (Direction.LOW, Direction.BOTH)
        self.low, self.high = low, high
        self.delay = datetime.timedelta(minutes=delay_minutes)
        self.budget_seconds = budget_minutes * 60
        self.max_interval = datetime.timedelta(minutes=max_interval_minutes)
        self.evaluate_from = evaluate_from  # start of trip + ignore period
        self.state = state or State()
        self.findings: list[Finding] = []

    # -- judging one value ------------------------------------------------------------------

    def deviation(self, at: datetime.datetime, celsius: Decimal | None) -> Decimal:
        """How far out of range a reading is (0 when in range or in the ignore period)."""
        if celsius is None or (self.evaluate_from is not None and at < self.evaluate_from):
            return Decimal(0)
        if self.watch_high and celsius > self.high:
            return celsius - self.high
        if self.watch_low and celsius < self.low:
            return self.low - celsius
        return Decimal(0)

    def side(self, celsius: Decimal) -> str:
        return ExcursionKind.HIGH if celsius > self.high else ExcursionKind.LOW

    def _worse(self, peak: Decimal | None, at, celsius: Decimal) -> Decimal:
        if peak is None or self.deviation(at, celsius) > self.deviation(at, peak):
            return celsius
        return peak

    # -- consuming readings -----------------------------------------------------------------

    def is_after_position(self, at: datetime.datetime, sequence: int) -> bool:
        s = self.state
        return s.position_at is None or (at, sequence) > (s.position_at, s.position_sequence)

    def feed(self, at: datetime.datetime, sequence: int, celsius: Decimal) -> None:
        s = self.state
        if not self.is_after_position(at, sequence):
            return
        if self.kind == RuleKind.DATA_GAP:
            self._gap(at, sequence)
        elif self.kind == RuleKind.CUMULATIVE:
            self._cumulative(at, celsius)
        else:
            self._run(at, celsius)
        s.position_at, s.position_sequence, s.position_celsius = at, sequence, celsius
        s.readings_evaluated += 1

    def _gap(self, at: datetime.datetime, sequence: int) -> None:
        s = self.state
        # The first reading is judged against the start of the trip (after the ignore
        # period): a logger that reports only hours after dispatch left those hours unrecorded.
        previous = s.position_at if s.position_at is not None else self.evaluate_from
        if previous is None:
            return
        elapsed = at - previous
        missing = s.position_sequence is not None and sequence > s.position_sequence + 1
        if elapsed > self.max_interval or missing:
            self.findings.append(
                Finding(ExcursionKind.DATA_GAP, previous, at, None, _seconds(elapsed), False)
            )

    def silence(self, until: datetime.datetime, *, ongoing: bool) -> None:
        """A data-gap rule: no reading since the last one (or since the start of the trip)
        until ``until`` — now, or the end of the trip — for longer than the interval allows.

        Found by the periodic sweep, not by a reading; the finding starts where the next
        reading's gap would start, so that reading extends this excursion instead of opening
        another one, and a backlog that shows there was no gap withdraws it.
        """
        if self.kind != RuleKind.DATA_GAP:
            return
        s = self.state
        previous = s.position_at if s.position_at is not None else self.evaluate_from
        if previous is None or until - previous <= self.max_interval:
            return
        self.findings.append(
            Finding(
                ExcursionKind.DATA_GAP, previous, until, None, _seconds(until - previous), ongoing
            )
        )

    def _cumulative(self, at: datetime.datetime, celsius: Decimal) -> None:
        s = self.state
        if s.position_at is not None and self.deviation(s.position_at, s.position_celsius) > 0:
            elapsed = _seconds(at - s.position_at)
            before = s.cumulative_seconds
            s.cumulative_seconds += elapsed
            if s.cumulative_exceeded_at is None and s.cumulative_seconds > self.budget_seconds:
                s.cumulative_exceeded_at = s.position_at + datetime.timedelta(
                    seconds=self.budget_seconds - before
                )
            if s.cumulative_exceeded_at is not None:
                self._cumulative_finding(at, ongoing=self.deviation(at, celsius) > 0)
        if self.deviation(at, celsius) > 0:
            s.cumulative_peak_celsius = self._worse(s.cumulative_peak_celsius, at, celsius)
            if s.cumulative_exceeded_at is not None:
                self._cumulative_finding(at, ongoing=True)

    def _cumulative_finding(self, at: datetime.datetime, *, ongoing: bool) -> None:
        s = self.state
        finding = Finding(
            ExcursionKind.CUMULATIVE,
            s.cumulative_exceeded_at,
            max(at, s.cumulative_exceeded_at),
            s.cumulative_peak_celsius,
            s.cumulative_seconds,
            ongoing,
        )
        if self.findings and self.findings[-1].kind == ExcursionKind.CUMULATIVE:
            self.findings[-1] = finding
        else:
            self.findings.append(finding)

    def _run(self, at: datetime.datetime, celsius: Decimal) -> None:
        s = self.state
        out = self.deviation(at, celsius) > 0
        if s.run_started_at is not None and (
            not out or self.side(celsius) != self.side(s.run_peak_celsius)
        ):
            self._run_finding(at, ongoing=False)  # back in range (or over to the other side)
            s.run_started_at, s.run_peak_celsius = None, None
        if out:
            if s.run_started_at is None:
                s.run_started_at = at
            s.run_peak_celsius = self._worse(s.run_peak_celsius, at, celsius)
            self._run_finding(at, ongoing=True)

    def _run_finding(self, at: datetime.datetime, *, ongoing: bool) -> None:
        s = self.state
        lasted = at - s.run_started_at
        if self.kind == RuleKind.CONSECUTIVE and lasted < self.delay:
            return
        finding = Finding(
            self.side(s.run_peak_celsius),
            s.run_started_at,
            at,
            s.run_peak_celsius,
            _seconds(lasted),
            ongoing,
        )
        last = self.findings[-1] if self.findings else None
        if last is not None and last.starts_at == finding.starts_at and last.kind == finding.kind:
            self.findings[-1] = finding
        else:
            self.findings.append(finding)
