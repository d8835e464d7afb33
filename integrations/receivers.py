"""Receivers the integrations app connects to signals that lower apps declare."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from . import services

logger = logging.getLogger(__name__)


def on_business_event(
    sender: Any, *, event: str, payload: dict[str, Any], partner_ids: Iterable[int], **kwargs: Any
) -> None:
    """Turn a committed business event into webhook deliveries and e-mails.

    ``orders.signals.announce`` sends the signal after the order's transaction has committed,
    so nothing here can undo the order and nothing may surface as its error: a failure is
    logged, never raised (the signal is sent with ``send``, which would propagate it).
    """
    try:
        services.business_event_dispatch(event=event, payload=payload, partner_ids=partner_ids)
    except Exception:
        logger.exception("business event %s for partners %s was not dispatched", event, partner_ids)
