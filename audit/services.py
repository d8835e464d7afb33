"""Actions of the audit app: anchoring the chain head, and electronic signatures."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from axes.utils import reset as axes_reset
from django.apps import apps
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from pharmadms.exceptions import InvalidInput, NotPermitted, RuleViolation

from . import chain
from .history import ReasonRequired
from .models import AuditAction, ChainHead, ChainVerification, Signature, SignatureMeaning


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


# --- electronic signatures (21 CFR 11.50, 11.70, 11.200) -----------------------------------

SIGNATURE_VALID = "valid"
SIGNATURE_CHANGED = "changed after signature"
# A password check authorises one signature, applied at once: never one kept for later.
SIGNING_WINDOW = datetime.timedelta(minutes=2)


def lockout_message() -> str:
    """What a locked-out user is told (at sign-in, at the API, when signing): why, how long."""
    minutes = settings.AXES_COOLOFF_MINUTES
    until = f"try again in {minutes} minutes" if minutes > 0 else "an administrator must unlock it"
    return (
        f"This account is locked after {settings.AXES_FAILURE_LIMIT} failed attempts to sign in "
        f"or to sign electronically: {until}. Tell your administrator if these attempts were "
        "not yours."
    )


class InvalidSignaturePassword(NotPermitted):
    default_code = "invalid_signature_password"


class AccountLocked(NotPermitted):
    default_code = "account_locked"


@dataclass(eq=False)
class VerifiedSigner:
    """Proof that ``user`` has just re-entered their password; spent by exactly one signature.

    Made only by :func:`signature_verify_password`.
    """

    user: Any
    verified_at: datetime.datetime
    spent: bool = False


def _signing_request(request: HttpRequest | None) -> HttpRequest:
    """The request django-axes counts the attempt against (it needs one, with an address)."""
    if request is not None:
        return request
    request = HttpRequest()
    request.method = "POST"
    request.META["REMOTE_ADDR"] = "127.0.0.1"
    return request


def _signing_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired(
            "a signature needs a reason: what does this signature confirm?",
            code="reason_required",
        )
    return reason


def _check_signable(*, meaning: str, record: models.Model) -> None:
    if meaning not in SignatureMeaning.values:
        raise InvalidInput(f"unknown signature meaning {meaning!r}", code="invalid_meaning")
    if record is None or record.pk is None:
        raise InvalidInput("only a saved record can be signed", code="record_not_saved")


def signature_verify_password(
    *, signer: Any, password: str, request: HttpRequest | None = None
) -> VerifiedSigner:
    """Check the signer's password, re-entered now, exactly as a sign-in checks it.

    It goes through ``django.contrib.auth.authenticate``, so django-axes counts a wrong
    password as a failed sign-in and locks the username out after five, and the audit chain
    records the failure. Call it outside any transaction that a refusal rolls back: a failed
    attempt must stay counted even though nothing is signed.
    """
    if signer is None or not signer.is_active:
        raise NotPermitted("only an active user can sign", code="signer_inactive")
    if not password:
        raise InvalidInput(
            "re-enter your password to sign: a session or a token alone never signs",
            code="password_required",
        )
    request = _signing_request(request)
    user = authenticate(request, username=signer.get_username(), password=password)
    if user is None:
        if getattr(request, "axes_locked_out", False):
            raise AccountLocked(lockout_message())
        raise InvalidSignaturePassword("the password is wrong: nothing was signed")
    if user.pk != signer.pk:  # pragma: no cover - a username names one user
        raise InvalidSignaturePassword("the password is not the signer's: nothing was signed")
    if settings.AXES_RESET_ON_SUCCESS:
        # A correct signing password counts as a successful sign-in: earlier failures are reset.
        axes_reset(username=signer.get_username())
    return VerifiedSigner(user=signer, verified_at=timezone.now())


def signature_apply(
    *, verified: VerifiedSigner, meaning: str, reason: str, record: models.Model
) -> Signature:
    """Sign ``record`` as saved now, for the signer whose password was just verified.

    Run it in the transaction that saved the record: the signature names the record's latest
    version and hashes its content as read from the database, and it is sealed into the audit
    chain in that same transaction.
    """
    if not isinstance(verified, VerifiedSigner) or verified.spent:
        raise NotPermitted("each signature needs its own password check", code="password_required")
    if timezone.now() - verified.verified_at > SIGNING_WINDOW:
        raise NotPermitted(
            "the password check has expired: re-enter your password to sign",
            code="password_required",
        )
    reason = _signing_reason(reason)
    _check_signable(meaning=meaning, record=record)
    signer = verified.user
    model = type(record)
    with transaction.atomic():
        # Read the record as stored, under a lock: its content and version cannot move while
        # they are bound into the signature.
        stored = model._base_manager.select_for_update().get(pk=record.pk)
        history = getattr(stored, "history", None)
        version = (
            history.order_by("-history_id").values_list("history_id", flat=True).first()
            if history is not None
            else None
        )
        signature = Signature.objects.create(
            user=signer,
            printed_name=signer.get_full_name().strip() or signer.get_username(),
            meaning=meaning,
            reason=reason,
            signed_at=timezone.now(),
            object_model=model._meta.label_lower,
            object_id=str(stored.pk),
            record_version=version,
            content_hash=chain.content_hash(chain.row_content(stored)),
            column_set=chain.column_set(model)[0],
        )
        chain.seal_row(
            signature,
            action=AuditAction.SIGNED,
            user=signer,
            occurred_at=signature.signed_at,
            reason=reason,
            object_model=signature.object_model,
            object_id=signature.object_id,
        )
    verified.spent = True
    return signature


def signature_sign(
    *,
    signer: Any,
    password: str,
    meaning: str,
    reason: str,
    record: models.Model,
    request: HttpRequest | None = None,
) -> Signature:
    """Sign a saved record electronically: the signer re-enters their password now.

    The signature records the signer and their printed name, the server's UTC time, the
    meaning and the reason, and binds itself to the record (model, id, version, content hash).
    A wrong password answers ``invalid_signature_password`` and signs nothing; a locked account
    answers ``account_locked``. A client never supplies the time or the signer.
    """
    reason = _signing_reason(reason)
    _check_signable(meaning=meaning, record=record)
    verified = signature_verify_password(signer=signer, password=password, request=request)
    return signature_apply(verified=verified, meaning=meaning, reason=reason, record=record)


def _current_hash(signature: Signature) -> str | None:
    try:
        model = apps.get_model(signature.object_model)
        pk = model._meta.pk.to_python(signature.object_id)
    except (LookupError, ValueError, ValidationError):
        return None
    row = model._base_manager.filter(pk=pk).first()
    return None if row is None else chain.content_hash_over(row, signature.column_set)


def signature_status(signature: Signature) -> str:
    """``valid`` while the signed record still holds the content signed, else
    ``changed after signature``.

    The record is the one the signature itself names (its model and id), so a signature never
    vouches for another record; a record no longer found counts as changed.
    """
    current = _current_hash(signature)
    return SIGNATURE_VALID if current == signature.content_hash else SIGNATURE_CHANGED


def chain_verification_run(*, actor: Any, reason: str) -> ChainVerification:
    """Verify the whole chain now and keep the result, sealed, as evidence of the review.

    The verification reads outside any transaction (it may take a while on a long chain and
    must not hold the chain head); only its result is written, in a short one.
    """
    from partners.services import system_account

    actor = actor or system_account()
    started_at = timezone.now()
    result = chain.verify()
    first = result.first
    with transaction.atomic():
        run = ChainVerification.objects.create(
            started_at=started_at,
            finished_at=timezone.now(),
            requested_by=actor,
            ok=result.ok,
            checked=result.checked,
            head_sequence=result.head_sequence,
            head_hash=result.head_hash,
            first_sequence=first.sequence if first else None,
            first_problem=first.problem if first else "",
            first_detail=first.detail if first else "",
            findings=[f.as_dict() for f in result.findings[:20]],
        )
        chain.seal_row(
            run,
            action=AuditAction.VERIFIED,
            user=actor,
            occurred_at=run.finished_at,
            reason=reason,
        )
    return run
