"""API for a shipment package's SSCC label: ``GET /api/v1/packages/<sscc>/label.png|.pdf``.

The label is drawn by batches.labels (from plain values, so batches stays below orders); this
module knows where a package goes and what it holds.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.views import APIView

from batches import labels
from batches.label_api import FileOrJsonNegotiation, file_response

from .models import PackageStatus, ShipmentPackage
from .selectors import shipments_visible_to

SSCC_PARAMETER = OpenApiParameter(
    "sscc", str, location=OpenApiParameter.PATH, description="the package's 18-digit SSCC"
)


def package_label(package: ShipmentPackage) -> labels.SsccLabel:
    """The label's text: the seller's shipping site, the buyer's, the shipment and contents."""
    shipment = package.shipment
    return labels.SsccLabel(
        sscc=package.sscc,
        ship_from=_site_text(shipment.from_site),
        ship_to=_site_text(shipment.to_site),
        reference=shipment.number,
        contents=[
            (_product_text(line.shipment_line.batch.product), line.shipment_line.batch.lot_number)
            + (line.quantity,)
            for line in package.lines.all()
        ],
    )


def _product_text(product) -> str:
    return f"{product.name} {product.strength}".strip()


def _site_text(site) -> str:
    return f"{site.partner.name}, {site.name}, {site.postal_code} {site.city}, {site.country}"


class PackageLabelView(APIView):
    """A package's logistic label (GS1-128 of AI 00 with its text), for the shipment's seller
    and buyer (and regulators); another partner's package, a package its carrier carries and
    an unpacked package are not found."""

    content_negotiation_class = FileOrJsonNegotiation
    media_type = ""
    extension = ""
    render = None

    def get(self, request, sscc: str):
        visible = shipments_visible_to(request.user).values("pk")
        package = (
            ShipmentPackage.objects.select_related(
                "shipment__from_site__partner", "shipment__to_site__partner"
            )
            .prefetch_related("lines__shipment_line__batch__product")
            .filter(sscc=sscc, shipment__in=visible, status=PackageStatus.PACKED)
            .first()
        )
        if package is None:
            raise Http404
        content = type(self).render(package_label(package))
        return file_response(content, self.media_type, f"sscc-{package.sscc}.{self.extension}")


class PackageLabelPngView(PackageLabelView):
    media_type = "image/png"
    extension = "png"
    render = staticmethod(labels.sscc_label_png)

    @extend_schema(
        operation_id="packages_label_png",
        parameters=[SSCC_PARAMETER],
        responses={(200, "image/png"): OpenApiTypes.BINARY},
    )
    def get(self, request, sscc: str):
        """The package's SSCC label as a 300 dpi PNG (A6)."""
        return super().get(request, sscc)


class PackageLabelPdfView(PackageLabelView):
    media_type = "application/pdf"
    extension = "pdf"
    render = staticmethod(labels.sscc_label_pdf)

    @extend_schema(
        operation_id="packages_label_pdf",
        parameters=[SSCC_PARAMETER],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
    )
    def get(self, request, sscc: str):
        """The package's SSCC label as a one-page A6 PDF, the barcode in vectors."""
        return super().get(request, sscc)
