"""The one rule every status lifecycle shares: a record moves only along its allowed transitions."""

from __future__ import annotations

from collections.abc import Mapping, Set

from .exceptions import RuleViolation


def require_transition(
    what: str, current: str, target: str, allowed: Mapping[str, Set[str]]
) -> None:
    """Refuse (``invalid_transition``) a move from ``current`` to ``target`` that ``allowed``
    (status → the statuses it may become) does not list; ``what`` names the record."""
    if target not in allowed.get(current, frozenset()):
        raise RuleViolation(
            f"{what} is {current}: it cannot become {target}", code="invalid_transition"
        )
