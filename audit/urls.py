"""Pages of the audit app: the audit-trail viewer and a record's lineage."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.audit_trail, name="audit-trail"),
    path("verify/", views.verify_now, name="audit-verify-now"),
    path("lineage/<str:model>/<str:object_id>/", views.record_lineage, name="audit-lineage"),
]
