"""Pages of the orders app, under /sales/."""

from django.urls import path

from . import views

app_name = "orders"

urlpatterns = [
    path("", views.sales, name="sales"),
]
