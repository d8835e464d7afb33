"""State changes of partners, licences, sites, locations and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.history import check_editable, create_with_reason, update_with_reason
from pharmadms.exceptions import NotPermitted
from pharmadms.permissions import require_role

from .models import ApiToken, Licence, Location, Partner, Role, Site, User

PARTNER_FIELDS = {
    "name",
    "kind",
    "gln",
    "region",
    "contact_email",
    "contact_phone",
    "gs1_company_prefix",
    "is_active",
}
LICENCE_FIELDS = {
    "number",
    "kind",
    "issuing_authority",
    "product_categories",
    "covers_controlled_substances",
    "valid_from",
    "valid_until",
    "status",
}
SITE_FIELDS = {"name", "gln", "address_line", "postal_code", "city", "country", "is_active"}
LOCATION_FIELDS = {"code", "name", "kind", "is_active"}


SYSTEM_USERNAME = "system"


def system_account() -> User:
    """The platform's own account, the "who" of what the platform does by itself (an excursion
    found in a logger's readings, a recall reminder, a scheduled status report, the demo setup).

    A superuser that cannot sign in (no usable password) and belongs to no partner; created on
    first use, its own creation recorded as by itself. A user named ``system`` that is not such
    an account is never acted as.
    """
    system = User.objects.filter(username=SYSTEM_USERNAME).first()
    if system is None:
        with transaction.atomic():
            system = User(
                username=SYSTEM_USERNAME,
                first_name="PharmaDMS",
                last_name="platform",
                is_superuser=True,
            )
            system.set_unusable_password()
            system._change_reason = "the platform's account for what it does by itself"
            system._history_user = system
            system.save()
    elif not (system.is_superuser and system.is_active) or system.has_usable_password():
        raise NotPermitted(
            f"a user {SYSTEM_USERNAME!r} exists but is not an active superuser without a "
            "password: refusing to act as it",
            code="system_account_invalid",
        )
    return system


def _require_partner_admin(actor: User, partner: Partner) -> None:
    """Platform superusers manage any partner; a partner's admin manages only their own."""
    if actor.is_superuser:
        return
    require_role(actor, Role.ADMIN)
    if actor.partner_id != partner.pk:
        raise NotPermitted("you can only manage your own organisation")


@transaction.atomic
def partner_create(*, actor: User, reason: str, **fields: Any) -> Partner:
    if not actor.is_superuser:
        raise NotPermitted("only the platform operator registers new trading partners")
    check_editable(fields, PARTNER_FIELDS)
    return create_with_reason(Partner, actor=actor, reason=reason, **fields)


@transaction.atomic
def partner_update(*, partner: Partner, actor: User, reason: str, **changes: Any) -> Partner:
    _require_partner_admin(actor, partner)
    if not actor.is_superuser and {"kind", "gln", "is_active"} & set(changes):
        raise NotPermitted("kind, GLN and activation are changed by the platform operator")
    return update_with_reason(
        partner, actor=actor, reason=reason, changes=changes, editable=PARTNER_FIELDS
    )


@transaction.atomic
def licence_create(*, partner: Partner, actor: User, reason: str, **fields: Any) -> Licence:
    _require_licence_keeper(actor, partner)
    check_editable(fields, LICENCE_FIELDS)
    return create_with_reason(Licence, actor=actor, reason=reason, partner=partner, **fields)


@transaction.atomic
def licence_update(*, licence: Licence, actor: User, reason: str, **changes: Any) -> Licence:
    _require_licence_keeper(actor, licence.partner)
    return update_with_reason(
        licence, actor=actor, reason=reason, changes=changes, editable=LICENCE_FIELDS
    )


def _require_licence_keeper(actor: User, partner: Partner) -> None:
    if actor.is_superuser:
        return
    require_role(actor, Role.ADMIN, Role.QA_OFFICER)
    if actor.partner_id != partner.pk:
        raise NotPermitted("you can only record your own organisation's licences")


@transaction.atomic
def site_create(*, partner: Partner, actor: User, reason: str, **fields: Any) -> Site:
    _require_partner_admin(actor, partner)
    check_editable(fields, SITE_FIELDS)
    return create_with_reason(Site, actor=actor, reason=reason, partner=partner, **fields)


@transaction.atomic
def site_update(*, site: Site, actor: User, reason: str, **changes: Any) -> Site:
    _require_partner_admin(actor, site.partner)
    return update_with_reason(
        site, actor=actor, reason=reason, changes=changes, editable=SITE_FIELDS - {"gln"}
    )


@transaction.atomic
def location_create(*, site: Site, actor: User, reason: str, **fields: Any) -> Location:
    _require_partner_admin(actor, site.partner)
    check_editable(fields, LOCATION_FIELDS)
    return create_with_reason(Location, actor=actor, reason=reason, site=site, **fields)


@transaction.atomic
def location_update(*, location: Location, actor: User, reason: str, **changes: Any) -> Location:
    _require_partner_admin(actor, location.site.partner)
    return update_with_reason(
        location, actor=actor, reason=reason, changes=changes, editable=LOCATION_FIELDS - {"kind"}
    )


def _digest(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def api_token_issue(*, user: User) -> tuple[ApiToken, str]:
    """Issue a token; the raw value is returned once and only its digest is stored."""
    raw = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        digest=_digest(raw),
        prefix=raw[:8],
        expires_at=timezone.now() + settings.API_TOKEN_TTL,
    )
    return token, raw


def api_token_resolve(raw_token: str) -> ApiToken | None:
    """The live token for ``raw_token``, or None when unknown, expired or revoked."""
    token = (
        ApiToken.objects.select_related("user", "user__partner")
        .filter(digest=_digest(raw_token), revoked_at__isnull=True)
        .first()
    )
    if token is None or token.expires_at <= timezone.now() or not token.user.is_active:
        return None
    return token


def api_token_revoke(*, token: ApiToken) -> None:
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
