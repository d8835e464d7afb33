"""The API router: every resource under /api/v1/."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from audit.api import AuditEntryViewSet, AuditLineageView, AuditVerifyView
from batches.api import (
    BatchViewSet,
    ProductViewSet,
    StockBalanceViewSet,
    StockMoveViewSet,
    StorageClassViewSet,
)
from integrations.api import WebhookEndpointViewSet
from orders.analytics_api import (
    NearExpiryView,
    ReplenishmentView,
    SalesAnalyticsView,
    TargetAttainmentView,
)
from orders.api import AgreementViewSet, OrderViewSet, ReturnViewSet, ShipmentViewSet
from partners.api import LicenceViewSet, LocationViewSet, PartnerViewSet, SiteViewSet, TokenView

router = DefaultRouter()
router.register("partners", PartnerViewSet, basename="partner")
router.register("licences", LicenceViewSet, basename="licence")
router.register("sites", SiteViewSet, basename="site")
router.register("locations", LocationViewSet, basename="location")
router.register("storage-classes", StorageClassViewSet, basename="storageclass")
router.register("products", ProductViewSet, basename="product")
router.register("batches", BatchViewSet, basename="batch")
router.register("stock-balances", StockBalanceViewSet, basename="stockbalance")
router.register("stock-moves", StockMoveViewSet, basename="stockmove")
router.register("agreements", AgreementViewSet, basename="agreement")
router.register("orders", OrderViewSet, basename="order")
router.register("shipments", ShipmentViewSet, basename="shipment")
router.register("returns", ReturnViewSet, basename="return")
router.register("audit/entries", AuditEntryViewSet, basename="auditentry")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("audit/verify/", AuditVerifyView.as_view(), name="audit-verify"),
    path("audit/lineage/", AuditLineageView.as_view(), name="audit-lineage-api"),
    path("analytics/sales/", SalesAnalyticsView.as_view(), name="analytics-sales"),
    path("analytics/targets/", TargetAttainmentView.as_view(), name="analytics-targets"),
    path("analytics/replenishment/", ReplenishmentView.as_view(), name="analytics-replenishment"),
    path("analytics/near-expiry/", NearExpiryView.as_view(), name="analytics-near-expiry"),
    path("", include(router.urls)),
]
