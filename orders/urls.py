"""Pages of the orders app, under /sales/."""

from django.urls import path

from . import views

app_name = "orders"

urlpatterns = [
    path("", views.sales, name="sales"),
    path("returns/", views.returns, name="returns"),
    path("returns/<int:pk>/", views.return_detail, name="return-detail"),
    path("shipments/", views.shipments, name="shipments"),
    path("shipments/<int:pk>/", views.shipment_detail, name="shipment-detail"),
]
