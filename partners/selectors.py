"""Read-side questions about partners: above all, may this partner receive this product today?"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol

from .models import Licence, LicenceStatus, Partner, PartnerKind


class LicensableProduct(Protocol):
    """What the licence check needs of a product (batches.Product satisfies it)."""

    category: str
    is_controlled: bool


@dataclass(frozen=True)
class LicenceDecision:
    allowed: bool
    code: str
    detail: str
    licence: Licence | None = None


RECEIVING_KINDS = {
    PartnerKind.MANUFACTURER,
    PartnerKind.WHOLESALER,
    PartnerKind.PHARMACY,
    PartnerKind.HOSPITAL,
    PartnerKind.LOGISTICS,
}


def partner_may_receive(
    *, partner: Partner, product: LicensableProduct, on: datetime.date
) -> LicenceDecision:
    """Whether ``partner`` holds a licence, valid on ``on``, that covers ``product``.

    A controlled substance needs a licence that says it covers controlled substances. The
    answer names the rule that failed, so a refusal can say exactly why.
    """
    if not partner.is_active:
        return LicenceDecision(False, "partner_inactive", f"{partner.name} is not active")
    if partner.kind not in RECEIVING_KINDS:
        return LicenceDecision(
            False, "partner_cannot_hold_stock", f"a {partner.get_kind_display()} holds no stock"
        )
    valid = Licence.objects.filter(
        partner=partner, status=LicenceStatus.ACTIVE, valid_from__lte=on, valid_until__gte=on
    ).order_by("valid_until")
    valid_licences = list(valid)
    if not valid_licences:
        return LicenceDecision(
            False, "no_valid_licence", f"{partner.name} holds no licence valid on {on.isoformat()}"
        )
    covering = [lic for lic in valid_licences if product.category in lic.product_categories]
    if not covering:
        return LicenceDecision(
            False,
            "licence_scope_excludes_product",
            f"no licence of {partner.name} valid on {on.isoformat()} covers {product.category}",
        )
    if product.is_controlled:
        covering = [lic for lic in covering if lic.covers_controlled_substances]
        if not covering:
            return LicenceDecision(
                False,
                "licence_excludes_controlled",
                f"no licence of {partner.name} valid on {on.isoformat()} covers controlled "
                "substances",
            )
    licence = covering[-1]  # the one valid longest
    return LicenceDecision(True, "licensed", f"covered by licence {licence.number}", licence)
