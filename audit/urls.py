"""Pages of the audit app."""

urlpatterns: list = []
