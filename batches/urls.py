"""Pages of the batches app, under /lots/."""

from django.urls import path

from . import views

app_name = "batches"

urlpatterns = [
    path("<int:pk>/", views.lot_detail, name="lot-detail"),
]
