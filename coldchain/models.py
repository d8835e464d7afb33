"""coldchain models: filled in by the issue that builds this app."""
