"""API of recalls: the trace of a lot, recall cases, answers, reports (thin over the services).

Who sees what: the recalling firm's members see its recalls whole; a consignee's members see
the recall and their own consignee rows and notices only; regulators and superusers read
everything and download the reports, and write nothing (``PartnerRolePermission``).
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from batches.api import SignaturePasswordField, SignatureSerializer, visible_batches
from partners.models import Partner
from pharmadms.exceptions import InvalidInput
from pharmadms.viewsets import HistoryMixin, ReasonField, StrictFieldsMixin

from . import reports, selectors, services
from .epcis import recall_epcis_document
from .models import (
    EffectivenessLevel,
    Recall,
    RecallClass,
    RecallConsignee,
    RecallDepth,
    RecallNotice,
    StatusReport,
)

# --- trace -----------------------------------------------------------------------------------

TRACE_RESPONSE = inline_serializer(
    "Trace",
    {
        "batch": serializers.IntegerField(),
        "direction": serializers.ChoiceField(choices=["forward", "backward"]),
        "origin": serializers.IntegerField(),
        "nodes": serializers.ListField(child=serializers.DictField()),
        "edges": serializers.ListField(child=serializers.DictField()),
    },
)


def trace_for(user, batch, direction: str, partner_id: str | None):
    """The trace ``user`` may read: the lot's manufacturer and regulators trace from anyone
    (forward from the manufacturer by default); any other partner only from itself, so it sees
    its own customers (forward) and its own suppliers (backward), never the rest of the chain."""
    if direction not in selectors.DIRECTIONS:
        raise InvalidInput("direction is forward or backward", code="invalid_direction")
    owner = user.sees_everything or user.partner_id == batch.product.manufacturer_id
    if partner_id not in (None, ""):
        if not str(partner_id).isdigit():
            raise InvalidInput("partner is a partner id", code="invalid_partner")
        origin = Partner.objects.filter(pk=int(partner_id)).first()
        if origin is None or not (owner or origin.pk == user.partner_id):
            raise Http404
    elif owner and direction == "forward":
        origin = batch.product.manufacturer
    elif user.partner_id is not None:
        origin = user.partner
    else:
        raise InvalidInput("name the partner to trace from", code="partner_required")
    return selectors.trace_lot(batch=batch, origin=origin, direction=direction)


class TraceView(APIView):
    """`GET /api/v1/batches/<id>/trace/?direction=forward|backward&partner=<id>`."""

    @extend_schema(
        parameters=[
            OpenApiParameter("direction", str, enum=list(selectors.DIRECTIONS)),
            OpenApiParameter("partner", int, description="the partner to trace from"),
        ],
        responses=TRACE_RESPONSE,
    )
    def get(self, request, batch_id: int):
        batch = get_object_or_404(
            visible_batches(request.user).select_related("product__manufacturer"), pk=batch_id
        )
        direction = request.query_params.get("direction", "forward")
        trace = trace_for(request.user, batch, direction, request.query_params.get("partner"))
        return Response(trace.as_dict())


# --- recalls ---------------------------------------------------------------------------------


class RecallLotSerializer(serializers.Serializer):
    batch = serializers.IntegerField(source="batch_id")
    lot_number = serializers.CharField(source="batch.lot_number")
    status_before = serializers.CharField()
    quantity_distributed = serializers.IntegerField()


class RecallSerializer(serializers.ModelSerializer):
    lots = RecallLotSerializer(many=True, read_only=True)
    firm_name = serializers.CharField(source="firm.name", read_only=True)

    class Meta:
        model = Recall
        fields = [
            "id",
            "number",
            "firm",
            "firm_name",
            "product",
            "lots",
            "classification",
            "depth",
            "reason",
            "health_hazard",
            "strategy",
            "instructions",
            "effectiveness_level",
            "effectiveness_percent",
            "status",
            "is_drill",
            "opened_at",
            "notified_at",
            "completed_at",
            "terminated_at",
            "closing_justification",
            "drill_duration_ms",
        ]
        read_only_fields = fields


class RecallTermsSerializer(StrictFieldsMixin, serializers.Serializer):
    """What opening a recall (or a drill) decides."""

    lots = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1)
    classification = serializers.ChoiceField(choices=RecallClass.choices)
    depth = serializers.ChoiceField(choices=RecallDepth.choices)
    recall_reason = serializers.CharField(max_length=10_000, help_text="the defect")
    health_hazard = serializers.CharField(max_length=10_000)
    strategy = serializers.CharField(max_length=10_000)
    instructions = serializers.CharField(max_length=10_000)
    effectiveness_level = serializers.ChoiceField(choices=EffectivenessLevel.choices)
    effectiveness_percent = serializers.IntegerField(required=False, min_value=0, max_value=100)
    reason = ReasonField()

    def validate_lots(self, value: list[int]) -> list:
        user = self.context["request"].user
        lots = {lot.pk: lot for lot in visible_batches(user).filter(pk__in=value)}
        unknown = [pk for pk in value if pk not in lots]
        if unknown:
            raise serializers.ValidationError(f"unknown lots: {unknown}", code="unknown_lot")
        return [lots[pk] for pk in value]


class RecallOpenSerializer(RecallTermsSerializer):
    transport_fields = StrictFieldsMixin.transport_fields | {"signed_at", "user"}
    password = SignaturePasswordField()


class RecallDecisionResponseSerializer(serializers.Serializer):
    recall = RecallSerializer()
    signature = SignatureSerializer()


class SignedStepSerializer(StrictFieldsMixin, serializers.Serializer):
    transport_fields = StrictFieldsMixin.transport_fields | {"signed_at", "user"}
    password = SignaturePasswordField()
    reason = ReasonField()
    justification = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=10_000,
        help_text="closing with consignees unaccounted for: why (covered by the signature)",
    )


class AcknowledgementSerializer(StrictFieldsMixin, serializers.Serializer):
    batch = serializers.IntegerField(required=False, min_value=1, help_text="for several lots")
    quantity_on_hand = serializers.IntegerField(min_value=0)
    quantity_returned = serializers.IntegerField(min_value=0)
    quantity_destroyed = serializers.IntegerField(min_value=0, default=0)
    reason = ReasonField(required=False, default="recall acknowledged")


class ConsigneeSerializer(serializers.ModelSerializer):
    partner_name = serializers.CharField(source="partner.name", read_only=True)
    lot_number = serializers.CharField(source="batch.lot_number", read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = RecallConsignee
        fields = [
            "id",
            "partner",
            "partner_name",
            "batch",
            "lot_number",
            "tier",
            "supplier",
            "contact_email",
            "contact_phone",
            "quantity_shipped",
            "quantity_received",
            "sampled_for_check",
            "status",
            "notified_at",
            "reminders_sent",
            "acknowledged_at",
            "quantity_on_hand_reported",
            "quantity_returned_reported",
            "quantity_destroyed_reported",
        ]
        read_only_fields = fields

    def get_status(self, row: RecallConsignee) -> str:
        return reports.consignee_status(row)


class NoticeSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecallNotice
        fields = ["id", "recall", "kind", "subject", "body", "sent_to", "created_at", "read_at"]
        read_only_fields = fields


class StatusReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatusReport
        fields = ["id", "generated_at", "scheduled", "chain_sequence", "chain_hash"]
        read_only_fields = fields


REPORT_FORMAT = OpenApiParameter(
    "as", str, enum=list(reports.RENDERERS), description="json (default), csv or pdf"
)
FILE_RESPONSES = {
    (200, "application/json"): OpenApiTypes.OBJECT,
    (200, "text/csv"): OpenApiTypes.BINARY,
    (200, "application/pdf"): OpenApiTypes.BINARY,
}


def _download(data: dict, request, stem: str) -> HttpResponse:
    kind = request.query_params.get("as", "json")
    if kind not in reports.RENDERERS:
        raise InvalidInput("as is json, csv or pdf", code="invalid_format")
    render, content_type = reports.RENDERERS[kind]
    response = HttpResponse(render(data), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{stem}.{kind}"'
    return response


class RecallViewSet(
    HistoryMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Recall cases: opened and closed under a QA officer's signature; consignees answer."""

    serializer_class = RecallSerializer
    filterset_fields = ["status", "classification", "is_drill", "product"]
    http_method_names = ["get", "post", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to scope by
            return Recall.objects.none()
        return selectors.visible_recalls(self.request.user).prefetch_related("lots__batch")

    def _is_firm(self, recall: Recall) -> bool:
        user = self.request.user
        return user.sees_everything or user.partner_id == recall.firm_id

    def _firm_recall(self) -> Recall:
        """The recall, for readers entitled to all of it (its firm, regulators)."""
        recall = self.get_object()
        if not self._is_firm(recall):
            raise Http404
        return recall

    @extend_schema(request=RecallOpenSerializer, responses={201: RecallDecisionResponseSerializer})
    def create(self, request):
        """Open a recall (a QA officer of the manufacturer, password re-entered): its lots are
        blocked at once and the consignees notified."""
        serializer = RecallOpenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        decision = services.recall_open(
            lots=data.pop("lots"),
            signer=request.user,
            password=data.pop("password"),
            reason=data.pop("reason"),
            request=request,
            **data,
        )
        body = {
            "recall": RecallSerializer(decision.recall).data,
            "signature": SignatureSerializer(decision.signature).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=RecallTermsSerializer, responses={201: RecallSerializer})
    @action(detail=False, methods=["post"])
    def drill(self, request):
        """Run a mock recall of lots: traced, listed and reported, nothing blocked or sent."""
        serializer = RecallTermsSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        recall = services.recall_drill_run(
            lots=data.pop("lots"), actor=request.user, reason=data.pop("reason"), **data
        )
        return Response(RecallSerializer(recall).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AcknowledgementSerializer, responses=ConsigneeSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """A consignee answers: it holds, returned and destroyed these units of the lot."""
        recall = self.get_object()
        serializer = AcknowledgementSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        batch = None
        if "batch" in data:
            batch = get_object_or_404(
                recall.lots.select_related("batch"), batch_id=data.pop("batch")
            ).batch
        row = services.recall_acknowledge(recall=recall, actor=request.user, batch=batch, **data)
        return Response(ConsigneeSerializer(row).data)

    def _signed(self, request, step) -> Response:
        recall = self.get_object()
        serializer = SignedStepSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        decision = step(recall=recall, signer=request.user, request=request, **data)
        return Response(
            {
                "recall": RecallSerializer(decision.recall).data,
                "signature": SignatureSerializer(decision.signature).data,
            }
        )

    @extend_schema(request=SignedStepSerializer, responses=RecallDecisionResponseSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        """Complete the recall (QA officer, password re-entered; a justification when
        consignees have not answered)."""
        return self._signed(request, services.recall_close)

    @extend_schema(request=SignedStepSerializer, responses=RecallDecisionResponseSerializer)
    @action(detail=True, methods=["post"])
    def terminate(self, request, pk=None):
        """Record the termination of a completed recall (QA officer, password re-entered)."""

        def terminate(*, justification="", **kwargs):
            return services.recall_terminate(**kwargs)

        return self._signed(request, terminate)

    @extend_schema(responses=ConsigneeSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def consignees(self, request, pk=None):
        """Every consignee for the firm and regulators; a consignee sees its own rows only."""
        recall = self.get_object()
        rows = recall.consignees.select_related("partner", "batch").order_by(
            "tier", "partner__name", "batch_id"
        )
        if not self._is_firm(recall):
            rows = rows.filter(partner_id=request.user.partner_id)
        return Response(ConsigneeSerializer(rows, many=True).data)

    @extend_schema(responses=NoticeSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def notices(self, request, pk=None):
        """The recall communications sent to the user's own organisation (in-app)."""
        recall = self.get_object()
        notices = recall.notices.filter(partner_id=request.user.partner_id)
        return Response(NoticeSerializer(notices, many=True).data)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def effectiveness(self, request, pk=None):
        """Shares notified, acknowledged and of units accounted for, per tier (21 CFR 7.42)."""
        return Response(selectors.recall_effectiveness(self._firm_recall()))

    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def epcis(self, request, pk=None):
        """The recall as an EPCIS 2.0 JSON-LD document: the trace's shipping events and the
        ``recalled`` events where the lots are held (a drill: shipping events only)."""
        return Response(recall_epcis_document(self._firm_recall()))

    @extend_schema(parameters=[REPORT_FORMAT], responses=FILE_RESPONSES)
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        """The recall report for the regulator, now: JSON, CSV or PDF (``?as=``)."""
        recall = self._firm_recall()
        return _download(reports.recall_report_data(recall), request, f"recall-{recall.number}")

    @extend_schema(methods=["GET"], responses=StatusReportSerializer(many=True), description="list")
    @extend_schema(methods=["POST"], request=None, responses={201: StatusReportSerializer})
    @action(detail=True, methods=["get", "post"], url_path="status-reports", pagination_class=None)
    def status_reports(self, request, pk=None):
        """Status reports (21 CFR 7.53): listed; made now on POST (the firm's QA or admin)."""
        recall = self._firm_recall()
        if request.method == "POST":
            made = services.status_report_generate(recall=recall, actor=request.user)
            return Response(StatusReportSerializer(made).data, status=status.HTTP_201_CREATED)
        return Response(StatusReportSerializer(recall.status_reports.all(), many=True).data)

    @extend_schema(
        parameters=[REPORT_FORMAT, OpenApiParameter("report_id", int, OpenApiParameter.PATH)],
        responses=FILE_RESPONSES,
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"status-reports/(?P<report_id>[0-9]+)",
        url_name="status-report-download",
    )
    def status_report(self, request, pk=None, report_id=None):
        """One status report as it was made: JSON, CSV or PDF (``?as=``)."""
        recall = self._firm_recall()
        report = get_object_or_404(recall.status_reports, pk=report_id)
        stem = f"status-report-{recall.number}-{report.pk}"
        return _download(report.content, request, stem)
