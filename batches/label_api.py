"""API for printable lot labels: ``GET /api/v1/batches/<id>/label.png`` and ``label.pdf``."""

from __future__ import annotations

import re

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from pharmadms.exceptions import NotPermitted

from . import labels
from .api import visible_batches

SERIAL_PARAMETER = OpenApiParameter(
    "serial",
    str,
    required=False,
    description="GS1 AI (21) to encode as well; only the lot's manufacturer prints serials",
)


class FileOrJsonNegotiation(BaseContentNegotiation):
    """A label answers its file whatever the client accepts (a browser's <img> or a printer
    spooler sends odd Accept headers); a refusal answers the API's JSON ``{code, detail}``."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return JSONRenderer(), JSONRenderer.media_type


def file_response(content: bytes, media_type: str, filename: str) -> HttpResponse:
    """The file, shown inline (printed from the browser), never cached by shared caches."""
    response = HttpResponse(content, content_type=media_type)
    safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)
    response["Content-Disposition"] = f'inline; filename="{safe_name}"'
    response["Cache-Control"] = "private, no-cache"
    return response


class BatchLabelView(APIView):
    """A lot's GS1 DataMatrix label: (01) GTIN, (17) expiry, (10) lot, optional (21) serial.

    Anyone who sees the lot prints its lot label; a serialised label (``?serial=``) only the
    lot's manufacturer, who commissions the serial numbers.
    """

    content_negotiation_class = FileOrJsonNegotiation
    media_type = ""
    extension = ""
    render = None

    def get(self, request, pk: int):
        batch = get_object_or_404(visible_batches(request.user).select_related("product"), pk=pk)
        serial = request.query_params.get("serial", "")
        if serial and not (
            request.user.is_superuser or request.user.partner_id == batch.product.manufacturer_id
        ):
            raise NotPermitted(
                "only the lot's manufacturer prints serialised labels", code="not_the_manufacturer"
            )
        label = labels.LotLabel.for_batch(batch, serial=serial)
        content = type(self).render(label)
        suffix = f"-{serial}" if serial else ""
        return file_response(
            content, self.media_type, f"lot-{batch.lot_number}{suffix}.{self.extension}"
        )


class BatchLabelPngView(BatchLabelView):
    media_type = "image/png"
    extension = "png"
    render = staticmethod(labels.lot_label_png)

    @extend_schema(
        operation_id="batches_label_png",
        parameters=[SERIAL_PARAMETER],
        responses={(200, "image/png"): OpenApiTypes.BINARY},
    )
    def get(self, request, pk: int):
        """The lot label as a 300 dpi PNG (70 × 35 mm)."""
        return super().get(request, pk)


class BatchLabelPdfView(BatchLabelView):
    media_type = "application/pdf"
    extension = "pdf"
    render = staticmethod(labels.lot_label_pdf)

    @extend_schema(
        operation_id="batches_label_pdf",
        parameters=[SERIAL_PARAMETER],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
    )
    def get(self, request, pk: int):
        """The lot label as a one-page PDF (70 × 35 mm), the symbol in vectors."""
        return super().get(request, pk)
