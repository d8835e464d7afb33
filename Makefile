# Shortcuts for dev.py, which does the work (it needs nothing but Python 3.11+).
.PHONY: demo test lint
demo:
	python3 dev.py demo
test:
	python3 dev.py test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
