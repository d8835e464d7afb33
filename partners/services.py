"""State changes of partners, licences, sites, locations and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.history import create_with_reason, save_with_reason
from pharmadms.exceptions import InvalidInput, NotPermitted
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


def _apply(instance: Any, changes: dict[str, Any], allowed: set[str]) -> list[str]:
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(
            f"these fields cannot be changed: {', '.join(sorted(unknown))}",
            code="field_not_editable",
        )
    for name, value in changes.items():
        setattr(instance, name, value)
    return list(changes)


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
    _apply(Partner(), fields, PARTNER_FIELDS)
    return create_with_reason(Partner, actor=actor, reason=reason, **fields)


@transaction.atomic
def partner_update(*, partner: Partner, actor: User, reason: str, **changes: Any) -> Partner:
    _require_partner_admin(actor, partner)
    if not actor.is_superuser and {"kind", "gln", "is_active"} & set(changes):
        raise NotPermitted("kind, GLN and activation are changed by the platform operator")
    fields = _apply(partner, changes, PARTNER_FIELDS)
    return save_with_reason(partner, actor=actor, reason=reason, update_fields=fields)


@transaction.atomic
def licence_create(*, partner: Partner, actor: User, reason: str, **fields: Any) -> Licence:
    _require_licence_keeper(actor, partner)
    _apply(Licence(), fields, LICENCE_FIELDS)
    return create_with_reason(Licence, actor=actor, reason=reason, partner=partner, **fields)


@transaction.atomic
def licence_update(*, licence: Licence, actor: User, reason: str, **changes: Any) -> Licence:
    _require_licence_keeper(actor, licence.partner)
    fields = _apply(licence, changes, LICENCE_FIELDS)
    return save_with_reason(licence, actor=actor, reason=reason, update_fields=fields)


def _require_licence_keeper(actor: User, partner: Partner) -> None:
    if actor.is_superuser:
        return
    require_role(actor, Role.ADMIN, Role.QA_OFFICER)
    if actor.partner_id != partner.pk:
        raise NotPermitted("you can only record your own organisation's licences")


@transaction.atomic
def site_create(*, partner: Partner, actor: User, reason: str, **fields: Any) -> Site:
    _require_partner_admin(actor, partner)
    _apply(Site(), fields, SITE_FIELDS)
    return create_with_reason(Site, actor=actor, reason=reason, partner=partner, **fields)


@transaction.atomic
def site_update(*, site: Site, actor: User, reason: str, **changes: Any) -> Site:
    _require_partner_admin(actor, site.partner)
    fields = _apply(site, changes, SITE_FIELDS - {"gln"})
    return save_with_reason(site, actor=actor, reason=reason, update_fields=fields)


@transaction.atomic
def location_create(*, site: Site, actor: User, reason: str, **fields: Any) -> Location:
    _require_partner_admin(actor, site.partner)
    _apply(Location(), fields, LOCATION_FIELDS)
    return create_with_reason(Location, actor=actor, reason=reason, site=site, **fields)


@transaction.atomic
def location_update(*, location: Location, actor: User, reason: str, **changes: Any) -> Location:
    _require_partner_admin(actor, location.site.partner)
    fields = _apply(location, changes, LOCATION_FIELDS - {"kind"})
    return save_with_reason(location, actor=actor, reason=reason, update_fields=fields)


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
