"""Recompute the audit chain; exit non-zero and name the first broken sequence if it is broken."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.chain import verify
from audit.services import anchor_key
from pharmadms.exceptions import RuleViolation


class Command(BaseCommand):
    help = "Verify the audit chain (and, with --anchor, that it still holds a signed head)."

    def add_arguments(self, parser):
        parser.add_argument("--anchor", type=Path, help="a signed head written by audit_anchor")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the result as JSON"
        )

    def handle(self, *args, anchor: Path | None, as_json: bool, **options):
        signed_head = _read_anchor(anchor) if anchor else None
        try:
            key = anchor_key() if signed_head is not None else None
        except RuleViolation as error:  # no key: the anchor cannot be checked
            raise CommandError(str(error)) from error
        result = verify(anchor=signed_head, key=key)
        if as_json:
            self.stdout.write(_dumps(result.as_dict()))
        elif result.ok:
            self.stdout.write(
                f"audit chain intact: {result.checked} entries, head #{result.head_sequence} "
                f"{result.head_hash}"
                + (f", anchor #{signed_head.get('sequence')} holds" if anchor else "")
            )
        if not result.ok:
            first = result.first
            raise CommandError(
                f"audit chain broken at sequence {first.sequence}: {first.problem} ({first.detail})"
            )


def _read_anchor(path: Path) -> dict:
    try:
        signed_head = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read the anchor {path}: {error}") from error
    if not isinstance(signed_head, dict):
        raise CommandError(
            f"cannot read the anchor {path}: not a signed head written by audit_anchor"
        )
    return signed_head


def _dumps(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
