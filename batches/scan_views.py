"""The scan station page (/scan/) and the photo decoding behind its camera button."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from partners.models import Location, LocationKind
from pharmadms.exceptions import InvalidInput

from . import photo
from .models import ScanAction, ScanRecord
from .scanning import SCAN_ROLES

# The user's own last scans listed when the page opens (the page adds each new one on top).
RECENT_SCANS = 15


@login_required
@require_GET
def scan_station(request):
    """The scan station: one input that keeps the focus for a keyboard-wedge scanner, the
    action, location and reference that apply to every scan, the verdict of the last scan in
    large type, and the scans made here."""
    user = request.user
    # Only the actions the user's role may scan (a pharmacist: receive and verify).
    actions = [
        (value, label)
        for value, label in ScanAction.choices
        if user.is_superuser or user.role in SCAN_ROLES[value]
    ]
    can_scan = user.partner_id is not None and bool(actions)
    locations = (
        Location.objects.filter(site__partner_id=user.partner_id, is_active=True)
        .exclude(kind=LocationKind.IN_TRANSIT)
        .select_related("site")
        .order_by("site__name", "code")
        if can_scan
        else Location.objects.none()
    )
    recent = (
        ScanRecord.objects.filter(user=user)
        .select_related("location", "product", "batch")
        .order_by("-created_at", "-id")[:RECENT_SCANS]
        if can_scan
        else []
    )
    context = {
        "can_scan": can_scan,
        "recent": recent,
        "actions": actions,
        "locations": locations,
        "max_photo_mb": photo.MAX_PHOTO_BYTES // (1024 * 1024),
    }
    return render(request, "batches/scan.html", context)


class PhotoDecodeThrottle(UserRateThrottle):
    """Decoding a photo costs up to a few hundred ms of CPU: a generous cap per user."""

    scope = "photo_decode"
    rate = "60/min"


class ScanDecodeView(APIView):
    """Read a barcode from a photo (multipart field ``image``).

    Answers ``{code, format, symbology_identifier, is_gs1, found}`` where ``code`` is what a
    scanner would send (symbology identifier first): submit it to ``POST /api/v1/scans/``.
    Refusals: ``photo_required``, ``photo_too_large``, ``not_an_image``, ``no_code_found``.
    Nothing is recorded: the scan that follows is.
    """

    parser_classes = [MultiPartParser]
    throttle_classes = [PhotoDecodeThrottle]

    @extend_schema(
        operation_id="scans_decode",
        request={
            "multipart/form-data": inline_serializer(
                "ScanPhoto", fields={"image": serializers.ImageField()}
            )
        },
        responses=inline_serializer(
            "DecodedCode",
            fields={
                "code": serializers.CharField(),
                "format": serializers.CharField(),
                "symbology_identifier": serializers.CharField(),
                "is_gs1": serializers.BooleanField(),
                "found": serializers.IntegerField(),
            },
        ),
    )
    def post(self, request):
        # Refuse an oversized body before reading it: the length is known from the header.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > photo.MAX_PHOTO_BYTES + 64 * 1024:  # room for the multipart envelope
            raise photo.photo_too_large()
        upload = request.FILES.get("image")  # another content type: 415 unsupported_media_type
        if upload is None:
            raise InvalidInput(
                "send the photo as multipart/form-data in the field 'image'",
                code="photo_required",
            )
        decoded = photo.decode_photo(upload, size=upload.size)
        return Response(
            {
                "code": decoded.code,
                "format": decoded.format,
                "symbology_identifier": decoded.symbology_identifier,
                "is_gs1": decoded.is_gs1,
                "found": decoded.found,
            }
        )
