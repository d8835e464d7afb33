#!/usr/bin/env python3
"""Set up and run PharmaDMS on a fresh machine with nothing but Python 3.11+.

    python3 dev.py demo   # virtualenv, install, migrate, seed the demo network, serve :8000
    python3 dev.py test   # virtualenv, install, run the whole test suite (extra args go to pytest)

Every value comes from the environment (see .env.example); unset, the embedded defaults apply:
SQLite under var/, Celery tasks in-process, the in-process MQTT broker.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("PHARMADMS_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", flush=True)


def run(*args: str | Path, env: dict | None = None) -> None:
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env)  # noqa: S603
    if result.returncode:
        sys.exit(result.returncode)


def ensure_environment() -> None:
    """Create the virtualenv and install the project, again only when pyproject.toml changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit("PharmaDMS needs Python 3.11 or newer")
    if not PYTHON.exists():
        say(f"creating the virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".pharmadms-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        say("installing PharmaDMS and its dependencies")
        run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[test]")
        stamp.write_text(wanted)


def demo() -> None:
    ensure_environment()
    env = dict(os.environ)
    env.setdefault("DEBUG", "true")
    env.setdefault("DEMO_PASSWORD", "demo-pharma-2026")
    manage = [PYTHON, "manage.py"]
    say("migrating the database")
    run(*manage, "migrate", "--no-input", env=env)
    say("seeding the demo network")
    run(*manage, "seed_demo", env=env)
    say("serving on http://127.0.0.1:8000 (Ctrl-C stops)")
    run(*manage, "runserver", "127.0.0.1:8000", env=env)


def test(extra: list[str]) -> None:
    ensure_environment()
    say("running the test suite")
    run(PYTHON, "-m", "pytest", *extra)


def main() -> None:
    command, *extra = sys.argv[1:] or ["help"]
    if command == "demo":
        demo()
    elif command == "test":
        test(extra)
    else:
        print(__doc__)
        sys.exit(0 if command == "help" else 2)


if __name__ == "__main__":
    main()
