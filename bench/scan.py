"""Scan throughput: verify scans per second through the running server, against a trivial
authenticated endpoint of the same server.

    .venv/bin/python bench/scan.py [--requests N] [--rounds R] [--concurrency C] [--workers W]
                                   [--threads T]

Runs on whatever DATABASE_URL names (SQLite when unset), in a throw-away database created for
the run and dropped after it. Starts gunicorn (W gthread workers of T threads, each listening
on its own socket; HTTP keep-alive; database connections persist, CONN_MAX_AGE) on a free local
port, and C client threads, each on its own persistent HTTP connection, spread evenly over the
workers (see Client), authenticated by an API token. Each round sends N scans —
``POST /api/v1/scans/`` with action ``verify`` and a serialised GS1 DataMatrix code, each with
its own scan_id, as the scan station sends them: parsed, matched to product, lot and serial,
checked, answered and recorded append-only with its audit seal — and N requests to a trivial
DRF endpoint with the same body (same authentication, permission, parsing and rendering, no
work). The two sides alternate, and swap order each round. The script prints the medians of
the rounds' rates, the ratio scans/trivial (the median of the rounds' own ratios: a round's two
sides run back to back, so a machine that slows down or speeds up between rounds moves both),
and p50/p99 latency; the goals are a ratio of at least 0.5 and a p99 under 20 ms. It prints
the machine's load average at the start and the end of the timed rounds too: on a shared
machine a figure means little without it. Where /proc is there (Linux), it also prints the CPU
each side spent per request, in the gunicorn workers, the database's server processes and the
client: the CPU a scan costs, in trivial requests, moves less with the host's load than the
rates do.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.db import connection
from throwaway import PROJECT_DIR, throwaway_database  # sets Django up first

from audit.chain import verify
from batches import services
from batches.models import BatchStatus, ScanRecord, ScanVerdict
from partners.models import PartnerKind, Role
from partners.services import api_token_issue
from tests.factories import (
    BatchFactory,
    LocationFactory,
    PartnerFactory,
    ProductFactory,
    SiteFactory,
    UserFactory,
)

GOAL_RATIO = 0.5
GOAL_P99_MS = 20.0
GTIN = "09501101530003"
LOT = "BENCH1"
SERIALS = 500  # distinct packs verified in turn
GS = "\x1d"


def seed():
    """A manufacturer's warehouse: an operator with a token, a released lot, its serials."""
    manufacturer = PartnerFactory(name="Bench Pharma", kind=PartnerKind.MANUFACTURER)
    site = SiteFactory(partner=manufacturer)
    store = LocationFactory(site=site, code="STORE")
    operator = UserFactory(username="bench", partner=manufacturer, role=Role.WAREHOUSE_OPERATOR)
    qa = UserFactory(username="bench-qa", partner=manufacturer, role=Role.QA_OFFICER)
    lot = BatchFactory(
        product=ProductFactory(manufacturer=manufacturer, gtin=GTIN),
        lot_number=LOT,
        status=BatchStatus.RELEASED,
    )
    services.serial_commission(
        batch=lot,
        serial_numbers=[f"SN{n:06d}" for n in range(SERIALS)],
        actor=qa,
        reason="bench packs",
    )
    _, token = api_token_issue(user=operator)
    code_prefix = f"]d201{GTIN}17{lot.expires_on:%y%m%d}10{LOT}{GS}21"
    return store, token, code_prefix


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(database_name: str, port: int, workers: int, threads: int = 1) -> subprocess.Popen:
    env = {
        **os.environ,
        "BENCH_DATABASE_NAME": database_name,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "LOG_LEVEL": "WARNING",
        "CONN_MAX_AGE": "600",
    }
    server = subprocess.Popen(  # noqa: S603  (our own gunicorn, fixed arguments)
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--keep-alive",
            "60",
            # Each worker listens on its own socket: the kernel spreads new connections over
            # them (Client spreads its connections evenly; see there).
            "--reuse-port",
            "--log-level",
            "warning",
            "--pythonpath",
            str(PROJECT_DIR),
            "bench.scan_server:application",  # bench/ as a namespace package: no name clashes
        ],
        env=env,
        cwd=PROJECT_DIR,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer /healthz within 30 s")


class Client:
    """Sends requests on C persistent connections at once; returns seconds and latencies.

    The connections are spread evenly over the server's W workers, as a load balancer spreads
    them: left to the kernel, two connections may land on one worker, which then serves them
    in turn while the other idles, and a run's figures would depend on that draw.
    """

    def __init__(self, port: int, token: str, concurrency: int, workers: int):
        self.port, self.concurrency = port, concurrency
        self.headers = {
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.connections = self._spread(workers)

    def _spread(self, workers: int) -> list[http.client.HTTPConnection]:
        per_worker = -(-self.concurrency // workers)  # at most this many on one worker
        kept: list[http.client.HTTPConnection] = []
        served: dict[int, int] = {}
        for _ in range(100 * self.concurrency):
            if len(kept) == self.concurrency:
                return kept
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            connection.request("GET", "/bench/worker/")
            pid = json.loads(connection.getresponse().read())["pid"]
            if served.get(pid, 0) < per_worker:
                served[pid] = served.get(pid, 0) + 1
                kept.append(connection)
            else:
                connection.close()
        raise SystemExit(f"could not spread {self.concurrency} connections over {workers} workers")

    def run(self, path: str, bodies: list[bytes]) -> tuple[float, list[float]]:
        latencies: list[list[float]] = [[] for _ in range(self.concurrency)]
        failures: list[str] = []

        def worker(index: int) -> None:
            connection = self.connections[index]
            for body in bodies[index :: self.concurrency]:
                started = time.perf_counter()
                connection.request("POST", path, body, self.headers)
                response = connection.getresponse()
                content = response.read()
                latencies[index].append(time.perf_counter() - started)
                if response.status != 200:
                    failures.append(f"{response.status} {content[:300]!r}")
                    return

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(self.concurrency)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        if failures:
            raise SystemExit(f"{path} answered {failures[0]}")
        return seconds, [latency for part in latencies for latency in part]


def scan_bodies(count: int, start: int, location_id: int, code_prefix: str) -> list[bytes]:
    return [
        json.dumps(
            {
                "code": f"{code_prefix}SN{(start + i) % SERIALS:06d}",
                "action": "verify",
                "location": location_id,
                "scan_id": f"bench-{start + i}",
            }
        ).encode()
        for i in range(count)
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


class CpuAccount:
    """CPU seconds (user + system, from /proc) spent by the server's workers, the database's
    server processes for the bench database (PostgreSQL; SQLite runs in the workers) and this
    client, read before and after a side's requests."""

    def __init__(self, server: subprocess.Popen, database_name: str):
        self.available = Path("/proc/self/stat").exists()
        self.workers = self._children(server.pid) if self.available else []
        self.backends = self._backends(database_name) if self.available else []

    @staticmethod
    def _seconds(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _children(parent: int) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(parent):
                        found.append(int(entry.name))
                except (FileNotFoundError, ProcessLookupError):
                    continue
        return found

    @staticmethod
    def _backends(database_name: str) -> list[int]:
        if connection.vendor != "postgresql":
            return []
        with connection.cursor() as cursor:  # the workers' connections, open since the warm-up
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                [database_name],
            )
            found = [row[0] for row in cursor.fetchall()]
        connection.close()
        if os.environ.get("BENCH_SHOW_BACKENDS"):
            print(f"database server processes of the workers: {found}")
        return found

    def read(self) -> tuple[float, float, float]:
        return (
            sum(self._seconds(pid) for pid in self.workers),
            sum(self._seconds(pid) for pid in self.backends),
            time.process_time(),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per side and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per side")
    parser.add_argument("--concurrency", type=int, default=2, help="client connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument(
        "--show-queries", action="store_true", help="print the SQL of one scan, in process"
    )
    args = parser.parse_args()

    with throwaway_database("scan") as database_name:
        store, token, code_prefix = seed()
        if args.show_queries:
            show_queries(store, code_prefix)
        connection.close()  # the server's workers have the database to themselves
        port = free_port()
        server = start_server(database_name, port, args.workers, args.threads)
        try:
            client = Client(port, token, args.concurrency, args.workers)
            sent = 0

            def scans(count: int) -> tuple[float, list[float]]:
                nonlocal sent
                bodies = scan_bodies(count, sent, store.pk, code_prefix)
                sent += count
                return client.run("/api/v1/scans/", bodies)

            def trivial(count: int) -> tuple[float, list[float]]:
                bodies = scan_bodies(count, 0, store.pk, code_prefix)
                return client.run("/bench/trivial/", bodies)

            scans(args.warmup)
            trivial(args.warmup)
            cpu = CpuAccount(server, database_name)
            spent = {"scan": [0.0, 0.0, 0.0], "trivial": [0.0, 0.0, 0.0]}
            load_before = os.getloadavg()
            scan_rates, trivial_rates, scan_latencies, trivial_latencies = [], [], [], []
            for round_number in range(1, args.rounds + 1):
                sides = [("scan", scans), ("trivial", trivial)]
                if round_number % 2 == 0:
                    sides.reverse()
                for name, side in sides:
                    before = cpu.read()
                    seconds, latencies = side(args.requests)
                    for part, (start, end) in enumerate(zip(before, cpu.read(), strict=True)):
                        spent[name][part] += end - start
                    rate = args.requests / seconds
                    if name == "scan":
                        scan_rates.append(rate)
                        scan_latencies += latencies
                    else:
                        trivial_rates.append(rate)
                        trivial_latencies += latencies
                print(
                    f"  round {round_number}: {scan_rates[-1]:.0f} scans/s, "
                    f"{trivial_rates[-1]:.0f} trivial requests/s, "
                    f"ratio {scan_rates[-1] / trivial_rates[-1]:.2f}"
                )
            load_after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(timeout=30)
        check_records(expected=sent)

    scan_rate, trivial_rate = statistics.median(scan_rates), statistics.median(trivial_rates)
    ratio = statistics.median(
        scan / trivial for scan, trivial in zip(scan_rates, trivial_rates, strict=True)
    )
    ms = 1000
    print(
        f"scan latency p50 {percentile(scan_latencies, 0.5) * ms:.1f} ms, "
        f"p99 {percentile(scan_latencies, 0.99) * ms:.1f} ms (goal < {GOAL_P99_MS:.0f}); "
        f"trivial p50 {percentile(trivial_latencies, 0.5) * ms:.1f} ms, "
        f"p99 {percentile(trivial_latencies, 0.99) * ms:.1f} ms"
    )
    print(
        f"scan: {scan_rate:.0f} verify scans/s through gunicorn ({args.workers} workers, "
        f"{args.concurrency} connections), {trivial_rate:.0f} trivial requests/s, "
        f"ratio {ratio:.2f} (median of the rounds; goal >= {GOAL_RATIO})"
    )
    if cpu.available:
        per_request = {
            name: [seconds / (args.requests * args.rounds) * 1e6 for seconds in parts]
            for name, parts in spent.items()
        }
        print(
            "CPU per request (µs: gunicorn workers + database server + client): "
            + "; ".join(
                f"{name} {parts[0]:.0f} + {parts[1]:.0f} + {parts[2]:.0f} = {sum(parts):.0f}"
                for name, parts in per_request.items()
            )
            + f"; by CPU a scan costs {sum(per_request['scan']) / sum(per_request['trivial']):.2f}"
            " trivial requests"
        )
    print(
        "load average (1, 5, 15 min) at the start "
        f"{' '.join(f'{x:.2f}' for x in load_before)}, at the end "
        f"{' '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} CPUs)"
    )
    return 0


def show_queries(store, code_prefix: str) -> None:
    """Print every statement one verify scan issues through the service (no HTTP), and leave
    no record behind: the server's side is counted exactly."""
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    from batches.scanning import scan_submit
    from partners.models import User

    operator = User.objects.get(username="bench")
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        scan_submit(
            actor=operator,
            code=f"{code_prefix}SN000000",
            action="verify",
            location=store,
            scan_id="bench-show-queries",
        )
        transaction.set_rollback(True)
    print(f"one verify scan issues {len(captured)} statements (request and token not counted):")
    for query in captured:
        print(f"  {query['sql'][:160]}")


def check_records(*, expected: int) -> None:
    """Every scan sent was recorded once, accepted, and sealed: the chain verifies."""
    records = ScanRecord.objects.count()
    accepted = ScanRecord.objects.filter(verdict=ScanVerdict.ACCEPTED).count()
    if records != expected or accepted != expected:
        raise SystemExit(f"{records} scan records ({accepted} accepted) for {expected} scans")
    result = verify()
    if not result.ok:
        raise SystemExit(f"the chain does not verify: {result.as_dict()}")


if __name__ == "__main__":
    sys.exit(main())
