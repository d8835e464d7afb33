"""Pages of recalls, under /recalls/."""

from django.urls import path

from . import views

app_name = "recalls"

urlpatterns = [
    path("trace/<int:batch_id>/", views.trace_page, name="trace"),
    path("<int:pk>/", views.recall_page, name="recall"),
]
