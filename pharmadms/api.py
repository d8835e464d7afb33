"""The API router: every resource under /api/v1/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from audit.api import AuditEntryViewSet, AuditLineageView, AuditVerifyView
from batches.api import (
    BatchViewSet,
    ProductViewSet,
    SerialViewSet,
    StockBalanceViewSet,
    StockMoveViewSet,
    StorageClassViewSet,
)
from batches.label_api import BatchLabelPdfView, BatchLabelPngView
from batches.scan_views import ScanDecodeView
from coldchain.api import (
    BatchReadingsView,
    BatchTemperatureView,
    ExcursionRuleViewSet,
    ExcursionViewSet,
    LoggerAssignmentViewSet,
    LoggerViewSet,
    OrderReadingsView,
    ShipmentChartView,
    ShipmentReadingsView,
    ShipmentSensorEpcisView,
    ShipmentTemperatureView,
    TemperatureProfileViewSet,
)
from integrations.api import WebhookEndpointViewSet
from orders.analytics_api import (
    NearExpiryView,
    ReplenishmentView,
    SalesAnalyticsView,
    TargetAttainmentView,
)
from orders.api import AgreementViewSet, OrderViewSet, ReturnViewSet, ShipmentViewSet
from orders.package_labels import PackageLabelPdfView, PackageLabelPngView
from orders.scanning import ScanViewSet
from partners.api import LicenceViewSet, LocationViewSet, PartnerViewSet, SiteViewSet, TokenView
from recalls.api import RecallViewSet, TraceView

router = DefaultRouter()
router.register("scans", ScanViewSet, basename="scan")  # first: see urlpatterns
router.register("partners", PartnerViewSet, basename="partner")
router.register("licences", LicenceViewSet, basename="licence")
router.register("sites", SiteViewSet, basename="site")
router.register("locations", LocationViewSet, basename="location")
router.register("storage-classes", StorageClassViewSet, basename="storageclass")
router.register("products", ProductViewSet, basename="product")
router.register("batches", BatchViewSet, basename="batch")
router.register("stock-balances", StockBalanceViewSet, basename="stockbalance")
router.register("stock-moves", StockMoveViewSet, basename="stockmove")
router.register("serials", SerialViewSet, basename="serial")
router.register("agreements", AgreementViewSet, basename="agreement")
router.register("orders", OrderViewSet, basename="order")
router.register("shipments", ShipmentViewSet, basename="shipment")
router.register("returns", ReturnViewSet, basename="return")
router.register("audit/entries", AuditEntryViewSet, basename="auditentry")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")
router.register("loggers", LoggerViewSet, basename="logger")
router.register("excursions", ExcursionViewSet, basename="excursion")
router.register("logger-assignments", LoggerAssignmentViewSet, basename="loggerassignment")
router.register("temperature-profiles", TemperatureProfileViewSet, basename="temperatureprofile")
router.register("excursion-rules", ExcursionRuleViewSet, basename="excursionrule")
router.register("recalls", RecallViewSet, basename="recall")

urlpatterns = [
    # URLs are tried in order, and a scan station waits for every scan: the scans' first (the
    # decode page before them, or the scan detail route would take it).
    path("scans/decode/", ScanDecodeView.as_view(), name="scan-decode"),
    path("", include(router.urls)),
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("audit/verify/", AuditVerifyView.as_view(), name="audit-verify"),
    path("audit/lineage/", AuditLineageView.as_view(), name="audit-lineage-api"),
    path("analytics/sales/", SalesAnalyticsView.as_view(), name="analytics-sales"),
    path("analytics/targets/", TargetAttainmentView.as_view(), name="analytics-targets"),
    path("analytics/replenishment/", ReplenishmentView.as_view(), name="analytics-replenishment"),
    path("analytics/near-expiry/", NearExpiryView.as_view(), name="analytics-near-expiry"),
    path("batches/<int:pk>/label.png", BatchLabelPngView.as_view(), name="batch-label-png"),
    path("batches/<int:pk>/label.pdf", BatchLabelPdfView.as_view(), name="batch-label-pdf"),
    path("packages/<str:sscc>/label.png", PackageLabelPngView.as_view(), name="package-label-png"),
    path("packages/<str:sscc>/label.pdf", PackageLabelPdfView.as_view(), name="package-label-pdf"),
    # The temperature record (coldchain/api.py), under the resources it belongs to.
    path("shipments/<int:pk>/readings/", ShipmentReadingsView.as_view(), name="shipment-readings"),
    path("orders/<int:pk>/readings/", OrderReadingsView.as_view(), name="order-readings"),
    path("batches/<int:pk>/readings/", BatchReadingsView.as_view(), name="batch-readings"),
    path("batches/<int:pk>/mkt/", BatchTemperatureView.as_view(), name="batch-mkt"),
    # The trace of a lot (recalls/api.py).
    path("batches/<int:batch_id>/trace/", TraceView.as_view(), name="batch-trace"),
    path(
        "shipments/<int:pk>/temperature/",
        ShipmentTemperatureView.as_view(),
        name="shipment-temperature",
    ),
    path(
        "shipments/<int:pk>/temperature/chart/",
        ShipmentChartView.as_view(),
        name="shipment-temperature-chart",
    ),
    path(
        "shipments/<int:pk>/temperature/epcis/",
        ShipmentSensorEpcisView.as_view(),
        name="shipment-temperature-epcis",
    ),
]
