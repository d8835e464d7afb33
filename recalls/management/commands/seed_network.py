"""Load a large synthetic distribution network into an empty, throw-away database.

    manage.py seed_network --pharmacies 5000 --wholesalers 50 --lots 200

For recall drills and benchmarks only (``bench/recall.py`` builds its database with it). The
rows are loaded set-based, without history rows or audit-chain entries, so the command refuses
a database that holds any partner or any chain entry, and never runs twice on one database:
see ``recalls/synthetic.py`` for why.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from pharmadms.exceptions import ApplicationError
from recalls.synthetic import seed_network


class Command(BaseCommand):
    help = (
        "Load a synthetic network (manufacturer → wholesalers → pharmacies, lots, shipments and "
        "their ledger) into an EMPTY throw-away database, for recall drills and benchmarks."
    )

    def add_arguments(self, parser):
        parser.add_argument("--pharmacies", type=int, default=5000)
        parser.add_argument("--wholesalers", type=int, default=50)
        parser.add_argument("--lots", type=int, default=200)
        parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same net)")
        parser.add_argument(
            "--qa-password",
            default=None,
            help="give the manufacturer's QA officer this password (default: no login)",
        )

    def handle(self, *args, pharmacies, wholesalers, lots, seed, qa_password, **options):
        try:
            result = seed_network(
                pharmacies=pharmacies,
                wholesalers=wholesalers,
                lots=lots,
                seed=seed,
                qa_password=qa_password,
            )
        except ApplicationError as error:
            raise CommandError(f"{error.code}: {error.detail}") from error
        self.stdout.write(f"synthetic network loaded: {result.summary()}")
        self.stdout.write(
            f"manufacturer partner #{result.manufacturer_id}, QA officer {result.qa_username}; "
            "synthetic data for drills and benchmarks: no history, no audit-chain entries"
        )
