"""Pages of the batches app."""

urlpatterns: list = []
