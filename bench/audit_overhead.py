"""Audit overhead: regulated writes per second with history and seal, against the same writes bare.

    .venv/bin/python bench/audit_overhead.py [--writes N] [--rounds R] [--show-queries]
                                             [--breakdown] [--profile]

Runs on whatever DATABASE_URL names (SQLite when unset), in a throw-away database created for
the run and dropped after it, like bench/ledger.py.

The write is the smallest regulated change there is: one partner's phone number, through
``audit.history.save_with_reason(partner, actor=..., reason=..., update_fields=["contact_phone"])``,
each its own transaction. With history and seal, that is: validation, the UPDATE, the
django-simple-history version and the chain entry that seals it (written together by
``audit.chain.insert_history_row``), all committed together.

The bare write is the SAME call with django-simple-history switched off
(``settings.SIMPLE_HISTORY_ENABLED = False``, only while the bare side is timed): the same
validation, the same ORM UPDATE of the same row, the same transaction (``RegulatedModel.save``
opens it) through the same connection, but no history row and so no seal. So the ratio prices
exactly what history and seal add, nothing else. For scale, the script also prints the floor
below both: the same UPDATE as one SQL statement in its own transaction, without the ORM (not
part of the ratio: it also drops validation and the ORM).

The three alternate in slices of 100 so a busy machine slows them alike; the medians of the
rounds give the rates. The goal is a ratio of at least 0.5 (history and seal cost no more than 2x).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time

from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from throwaway import throwaway_database  # sets Django up before any model is imported

from audit.chain import verify
from audit.history import save_with_reason
from audit.models import AuditEntry
from partners.models import Partner, PartnerKind, Role
from tests.factories import PartnerFactory, UserFactory

GOAL = 0.5
SLICE = 100  # writes per alternating slice of a round
UPDATE_PHONE = "UPDATE partners_partner SET contact_phone = %s WHERE id = %s"


def seed():
    """One partner to change, and the administrator who changes it."""
    partner = PartnerFactory(name="Bench Wholesale", kind=PartnerKind.WHOLESALER)
    actor = UserFactory(username="bench", partner=partner, role=Role.ADMIN)
    return partner, actor


def phone(i: int) -> str:
    return f"+49 89 {1_000_000 + i % 9_000_000}"  # a new value each write: a real change


def audited_writes(count: int, partner, actor, start: int = 0) -> float:
    """``count`` regulated writes with history and seal, each its own transaction; seconds."""
    started = time.perf_counter()
    for i in range(start, start + count):
        partner.contact_phone = phone(i)
        save_with_reason(
            partner, actor=actor, reason="bench: phone changed", update_fields=["contact_phone"]
        )
    return time.perf_counter() - started


def bare_writes(count: int, partner, actor, start: int = 0) -> float:
    """The same calls with django-simple-history off: no history row, so no seal; seconds."""
    settings.SIMPLE_HISTORY_ENABLED = False
    try:
        return audited_writes(count, partner, actor, start)
    finally:
        settings.SIMPLE_HISTORY_ENABLED = True


def sql_writes(count: int, partner, actor, start: int = 0) -> float:
    """The floor: the same UPDATE as one SQL statement, each its own transaction; seconds."""
    assert connection.get_autocommit()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for i in range(start, start + count):
            with transaction.atomic():
                cursor.execute(UPDATE_PHONE, [phone(i), partner.pk])
    return time.perf_counter() - started


SIDES = (audited_writes, bare_writes, sql_writes)


def timed_round(writes: int, place, offset: int) -> list[float]:
    """Seconds for ``writes`` writes of each side, timed in alternating slices."""
    seconds = [0.0] * len(SIDES)
    for start in range(0, writes, SLICE):
        count = min(SLICE, writes - start)
        for n, side in enumerate(SIDES):
            seconds[n] += side(count, *place, start=offset + start)
    return seconds


def show_queries(partner, actor) -> None:
    """Print every statement of one write, with history and seal and bare."""
    for label, side in (("with history and seal", audited_writes), ("bare", bare_writes)):
        with CaptureQueriesContext(connection) as captured:
            side(1, partner, actor)
        print(f"one write {label}: {len(captured)} statements")
        for query in captured:
            print(f"  {query['sql'][:160]}")


class Clock:
    """Seconds spent in chosen functions and in each kind of SQL statement, while running."""

    STATEMENTS = (  # (label, how the statement starts)
        ("SQL: BEGIN", "BEGIN"),
        ("SQL: UPDATE the partner", 'UPDATE "partners_partner"'),
        ("SQL: INSERT the history row", 'INSERT INTO "partners_historicalpartner"'),
        ("SQL: advance and lock the chain head", "UPDATE audit_chainhead SET sequence"),
        ("SQL: INSERT the chain entry", "INSERT INTO audit_auditentry"),
        ("SQL: UPDATE the chain head hash", "UPDATE audit_chainhead SET head_hash"),
        ("SQL: history row, entry, head hash (one CTE)", "WITH row_written"),
    )

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self._restore: list = []

    def add(self, label: str, seconds: float) -> None:
        self.spent[label] = self.spent.get(label, 0.0) + seconds

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.add(label, time.perf_counter() - started)

        setattr(owner, name, timed)
        self._restore.append((owner, name, original))

    def statement(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            label = next((lbl for lbl, head in self.STATEMENTS if sql.startswith(head)), None)
            self.add(label or f"SQL: other ({sql[:40]})", time.perf_counter() - started)

    def restore(self) -> None:
        for owner, name, original in reversed(self._restore):
            if owner is connection:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._restore.clear()


def breakdown(writes: int, partner, actor) -> None:
    """Where a write's time goes, with history and seal and bare: microseconds per write.

    The two sides alternate in slices, like the timed rounds, each under its own clock."""
    import simple_history.manager

    import audit.history
    from audit import chain

    def timed_slice(side, clock: Clock, count: int, start: int) -> float:
        clock.wrap(connection, "commit", "COMMIT")
        clock.wrap(Partner, "full_clean", "validation (full_clean)")
        if side is audited_writes:
            clock.wrap(
                audit.history.HistoricalRecords,
                "create_historical_record",
                "history + seal, all of it",
            )
            clock.wrap(
                simple_history.manager.HistoryDescriptor,
                "__get__",
                "  history: manager built per access (HistoryDescriptor)",
            )
            clock.wrap(chain, "insert_history_row", "  history row written and sealed")
            clock.wrap(chain, "row_content", "    seal: canonical row content")
            clock.wrap(chain, "content_hash", "    seal: JSON + SHA-256 (content, entry)")
        try:
            with connection.execute_wrapper(clock.statement):
                return side(count, partner, actor, start=start)
        finally:
            clock.restore()

    sides = (("with history and seal", audited_writes), ("bare", bare_writes))
    clocks, seconds = [Clock(), Clock()], [0.0, 0.0]
    for start in range(0, writes, SLICE):
        count = min(SLICE, writes - start)
        for n, (_, side) in enumerate(sides):
            seconds[n] += timed_slice(side, clocks[n], count, 7_000_000 + start)
    print(f"breakdown of {writes} writes, microseconds per write (timers add a little):")
    for (name, _), clock, spent_total in zip(sides, clocks, seconds, strict=True):
        print(f"  {name}: {spent_total / writes * 1e6:7.0f} total")
        sql = sum(v for k, v in clock.spent.items() if k.startswith("SQL"))
        for label, spent in sorted(clock.spent.items()):
            print(f"    {label:<58} {spent / writes * 1e6:7.0f}")
        print(f"    {'(all SQL statements)':<58} {sql / writes * 1e6:7.0f}")


def profile(writes: int, partner, actor, sort: str = "cumulative") -> None:
    """cProfile ``writes`` writes with history and seal; print where the time goes."""
    profiler = cProfile.Profile()
    profiler.enable()
    audited_writes(writes, partner, actor)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats(sort)
    stats.print_stats(40)
    print(f"profile of {writes} writes with history and seal (sorted by {sort}):")
    print(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1000, help="writes per round and side")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed writes per side first")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL of one write")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="cumulative",
        metavar="SORT",
        help="cProfile the audited writes, sorted by SORT (cumulative, tottime, ...)",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="time each part of a write (µs per write)"
    )
    args = parser.parse_args()

    with throwaway_database("audit overhead"):
        place = seed()
        for side in SIDES:
            side(args.warmup, *place)
        if args.show_queries:
            show_queries(*place)
        if args.profile:
            profile(args.writes, *place, sort=args.profile)
        if args.breakdown:
            breakdown(args.writes, *place)
        history_before = Partner.history.count()
        rates: list[list[float]] = [[] for _ in SIDES]
        for round_number in range(1, args.rounds + 1):
            seconds = timed_round(args.writes, place, offset=round_number * args.writes)
            for n, spent in enumerate(seconds):
                rates[n].append(args.writes / spent)
            print(
                f"  round {round_number}: {rates[0][-1]:.0f} writes/s with history and seal,"
                f" {rates[1][-1]:.0f} bare, {rates[2][-1]:.0f} SQL UPDATEs/s"
            )
        check_trail(*place, expected=args.rounds * args.writes, before=history_before)

    audited, bare, floor = (statistics.median(r) for r in rates)
    print(
        f"audit_overhead: {audited:.0f} writes/s with history and seal, {bare:.0f} bare writes/s,"
        f" ratio {audited / bare:.2f} (goal >= {GOAL}: history and seal cost no more than 2x)"
    )
    print(
        f"  floor: {floor:.0f} SQL UPDATEs/s (one statement per transaction, no ORM);"
        f" audited/floor {audited / floor:.2f}, bare/floor {bare / floor:.2f}"
    )
    return 0


def check_trail(partner, actor, *, expected: int, before: int) -> None:
    """Every audited write left one version, every version one entry, and the chain verifies."""
    versions = Partner.history.count() - before
    if versions != expected:
        raise SystemExit(f"{versions} history rows for {expected} audited writes")
    sealed = AuditEntry.objects.filter(source="partners.historicalpartner").count()
    if sealed != Partner.history.count():
        raise SystemExit(f"{sealed} entries for {Partner.history.count()} partner versions")
    result = verify()
    if not result.ok:
        raise SystemExit(f"the chain does not verify: {result.as_dict()}")


if __name__ == "__main__":
    sys.exit(main())
