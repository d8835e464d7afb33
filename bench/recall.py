"""Recall: forward trace plus the JSON recall report of one lot, against the bare recursive walk.

    .venv/bin/python bench/recall.py [--pharmacies 5000] [--wholesalers 50] [--lots 200]
                                     [--samples 41] [--warmup 5] [--show-queries]

Runs on whatever DATABASE_URL names (SQLite when unset), in a throw-away database created for
the run and dropped after it, loaded by ``recalls.synthetic.seed_network`` (the defaults are
the issue's: about 200 000 shipment lines). It takes the lot with the most shipment lines,
runs a mock-recall drill on it once (untimed: that writes the consignee list the report reads),
then times, alternating sample by sample so a busy machine slows both sides alike:

- the work: ``recalls.selectors.trace_forward`` of the lot plus
  ``recalls.reports.report_json(recall_report_data(drill))``, what ``GET
  /api/v1/batches/<id>/trace/`` and ``GET /api/v1/recalls/<id>/report/?as=json`` compute;
- the floor: the bare recursive walk alone (``recursive_walk_query``), executed and fetched
  through the same connection. On SQLite, which takes the per-tier path, the floor is that
  path's walk (one grouped query per tier).

It prints the medians, the ratio work/floor, and checks that the trace accounts for every unit
of the lot and that the report lists the trace's consignees. Goal: under 100 ms, within 20x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext
from throwaway import throwaway_database  # sets Django up before any model is imported

from batches.models import Batch, StockMove
from partners.models import User
from recalls import reports, selectors, services
from recalls.synthetic import seed_network

GOAL_MS = 100.0
GOAL_RATIO = 20.0


def build(args) -> tuple[Batch, object]:
    started = time.perf_counter()
    result = seed_network(
        pharmacies=args.pharmacies, wholesalers=args.wholesalers, lots=args.lots, seed=args.seed
    )
    print(f"  seed_network: {result.summary()}")
    if connection.vendor == "postgresql":
        # What autovacuum does soon after a load: the visibility map that lets the trace read
        # its covering indexes without visiting the tables (index-only scans).
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    print(f"  network ready in {time.perf_counter() - started:.1f} s")
    lot_id = (
        Batch.objects.annotate(lines=Count("shipment_lines"))
        .order_by("-lines", "pk")
        .values_list("pk", flat=True)
        .first()
    )
    lot = Batch.objects.select_related("product__manufacturer").get(pk=lot_id)
    qa = User.objects.get(username=result.qa_username)
    drill = services.recall_drill_run(lots=[lot], actor=qa, reason="recall bench drill")
    print(
        f"  lot {lot.lot_number}: {lot.shipment_lines.count()} shipment lines, "
        f"{drill.consignees.count()} consignees; mock-recall drill {drill.drill_duration_ms} ms "
        "(untimed)"
    )
    return lot, drill


def floor(lot: Batch) -> float:
    """The bare walk, in ms."""
    origin = lot.product.manufacturer_id
    started = time.perf_counter()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(*selectors.recursive_walk_query(lot.pk, origin))
            cursor.fetchall()
    else:
        selectors._walk_by_tier(lot.pk, origin, "forward")
    return (time.perf_counter() - started) * 1000


def work(lot: Batch, drill) -> tuple[float, float, int]:
    """Trace plus JSON report, in ms: (trace, report, bytes of JSON)."""
    started = time.perf_counter()
    selectors.trace_forward(batch=lot)
    traced = time.perf_counter()
    body = reports.report_json(reports.recall_report_data(drill))
    done = time.perf_counter()
    return (traced - started) * 1000, (done - traced) * 1000, len(body)


def show_queries(lot: Batch, drill) -> None:
    with CaptureQueriesContext(connection) as trace:
        selectors.trace_forward(batch=lot)
    with CaptureQueriesContext(connection) as report:
        reports.report_json(reports.recall_report_data(drill))
    print(f"  trace: {len(trace)} queries; report: {len(report)} queries")
    for query in [*trace, *report]:
        print(f"    {query['sql'][:160]}")


def check(lot: Batch, drill) -> None:
    trace = selectors.trace_forward(batch=lot)
    produced = StockMove.objects.filter(batch=lot, kind="receipt").aggregate(units=Sum("quantity"))[
        "units"
    ]
    placed = sum(
        node.on_hand + node.in_transit + node.destroyed + node.written_off for node in trace.nodes
    )
    if placed != produced:
        raise SystemExit(f"trace broken: {placed} units placed, {produced} produced")
    data = reports.recall_report_data(drill)
    if len(data["consignees"]) != len(trace.consignees):
        raise SystemExit(
            f"report lists {len(data['consignees'])} consignees, the trace {len(trace.consignees)}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pharmacies", type=int, default=5000)
    parser.add_argument("--wholesalers", type=int, default=50)
    parser.add_argument("--lots", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=int, default=41, help="timed samples of each side")
    parser.add_argument("--warmup", type=int, default=5, help="untimed samples first")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL of one run")
    args = parser.parse_args()

    with throwaway_database("recall"):
        lot, drill = build(args)
        for _ in range(args.warmup):
            floor(lot)
            work(lot, drill)
        if args.show_queries:
            show_queries(lot, drill)
        floors, traces, report_times, totals = [], [], [], []
        size = 0
        for _ in range(args.samples):
            floors.append(floor(lot))
            trace_ms, report_ms, size = work(lot, drill)
            traces.append(trace_ms)
            report_times.append(report_ms)
            totals.append(trace_ms + report_ms)
        check(lot, drill)

    bare, total = statistics.median(floors), statistics.median(totals)
    what = "recursive walk" if connection.vendor == "postgresql" else "per-tier walk"
    print(
        f"  medians of {args.samples}: trace {statistics.median(traces):.1f} ms, "
        f"JSON report {statistics.median(report_times):.1f} ms ({size // 1024} KiB)"
    )
    print(
        f"recall: trace + JSON report {total:.1f} ms median, bare {what} {bare:.1f} ms, "
        f"ratio {total / bare:.1f}x (goal < {GOAL_MS:.0f} ms and <= {GOAL_RATIO:.0f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
