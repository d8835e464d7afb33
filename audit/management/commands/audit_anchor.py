"""Print (and optionally write) the signed head of the audit chain, to keep outside the database."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.services import anchor_head
from pharmadms.exceptions import RuleViolation


class Command(BaseCommand):
    help = "Sign the audit chain's head with AUDIT_ANCHOR_KEY and print it (or write it to a file)."

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, help="also write the signed head to this file")

    def handle(self, *args, output: Path | None, **options):
        try:
            signed = anchor_head()
        except RuleViolation as error:  # AUDIT_ANCHOR_KEY is not set
            raise CommandError(str(error)) from error
        text = json.dumps(signed, indent=2, sort_keys=True)
        if output:
            output.write_text(text + "\n")
        self.stdout.write(text)
