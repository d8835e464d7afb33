"""Actions of the audit app: anchoring the chain head (electronic signatures come here too)."""

from __future__ import annotations

from django.conf import settings

from pharmadms.exceptions import RuleViolation

from . import chain
from .models import ChainHead


def anchor_key() -> bytes:
    key = settings.AUDIT_ANCHOR_KEY
    if not key:
        raise RuleViolation(
            "AUDIT_ANCHOR_KEY is not set: the chain head cannot be signed or checked",
            code="anchor_key_missing",
        )
    return key.encode()


def anchor_head() -> dict:
    """The chain's head (sequence and hash), signed with the anchor key from the environment."""
    head = ChainHead.objects.filter(pk=1).first()
    sequence, head_hash = (head.sequence, head.head_hash) if head else (0, chain.GENESIS)
    return chain.sign_head(sequence, head_hash, anchor_key())
