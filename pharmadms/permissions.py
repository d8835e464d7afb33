"""Roles and permissions shared by all apps.

Two layers: services refuse an actor whose role may not do a business action
(:func:`require_role`), and the API refuses any write by a regulator or an anonymous caller
(:class:`PartnerRolePermission`). Visibility of other partners' objects is decided by each
viewset's queryset, so another partner's object answers 404, never 403.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .exceptions import NotPermitted


def require_role(actor: Any, *roles: str) -> None:
    """Refuse unless ``actor`` is active and holds one of ``roles`` (superusers pass)."""
    if actor is None or not actor.is_active:
        raise NotPermitted("an active user is required")
    if actor.is_superuser:
        return
    if actor.role not in roles:
        allowed = ", ".join(roles)
        raise NotPermitted(
            f"this needs the role {allowed}; you are {actor.role}", code="role_not_permitted"
        )


class PartnerRolePermission(BasePermission):
    """Signed-in users read; regulators never write; writes need a role the view allows."""

    message = "regulators read; they never write"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if request.method in SAFE_METHODS:
            return True
        if user.is_superuser:
            return True
        if user.role == "regulator" or getattr(user, "partner_id", None) is None:
            return False
        write_roles = getattr(view, "write_roles", None)
        if write_roles is not None and user.role not in write_roles:
            self.message = f"your role ({user.role}) may not do this"
            return False
        return True
