"""URL map: pages, admin, the API under /api/v1/, its schema and docs."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from batches.scan_views import scan_station

from . import views

admin.site.site_header = "PharmaDMS back office"

urlpatterns = [
    path("api/v1/", include("pharmadms.api")),  # first: URLs are tried in order
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("lots/", include("batches.urls")),
    path("scan/", scan_station, name="scan-station"),
    path("audit/", include("audit.urls")),
    path("sales/", include("orders.urls")),
    path("recalls/", include("recalls.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", views.healthz, name="healthz"),
]
