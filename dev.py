#!/usr/bin/env python3
"""Set up and run PharmaDMS on a fresh machine with nothing but Python 3.11+.

    python3 dev.py demo   # virtualenv, install, migrate, seed the demo network, serve :8000,
                          # with the MQTT consumer and the logger simulator alongside
    python3 dev.py test   # virtualenv, install, run the whole test suite (extra args go to pytest)

Every value comes from the environment (see .env.example); unset, the embedded defaults apply:
SQLite under var/, Celery tasks in-process, the in-process MQTT broker.
DEMO_PORT (default 8000) moves the web server.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
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


def background(*args: str | Path, env: dict, log: Path) -> subprocess.Popen:
    """A process that runs beside the web server, its output in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return subprocess.Popen(  # noqa: S603
            [str(a) for a in args], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )


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
    logs = ROOT / "var" / "log"
    consume = [*manage, "coldchain_consume"]
    if not env.get("MQTT_URL"):  # the embedded default: amqtt inside the consumer's process
        consume.append("--embedded-broker")
    say(f"MQTT consumer and logger simulator starting (logs in {logs})")
    helpers = [background(*consume, env=env, log=logs / "consumer.log")]
    time.sleep(3)  # the broker listens and the consumer subscribes before the first reading
    # Four hours of readings every minute, replayed 600x faster, then one a minute, live.
    simulate = ["coldchain_simulate", "--profile", "mixed", "--interval", "60"]
    simulate += ["--readings", "240", "--speed", "600", "--follow"]
    helpers.append(background(*manage, *simulate, env=env, log=logs / "simulator.log"))
    port = env.get("DEMO_PORT", "8000")
    say(f"serving on http://127.0.0.1:{port} (Ctrl-C stops)")
    try:
        result = subprocess.run(  # noqa: S603
            [str(PYTHON), "manage.py", "runserver", f"127.0.0.1:{port}"], cwd=ROOT, env=env
        )
    except KeyboardInterrupt:
        result = None
    finally:
        for helper in reversed(helpers):  # the consumer finishes its batch and acks it
            if helper.poll() is None:
                helper.send_signal(signal.SIGTERM)
        for helper in helpers:
            try:
                helper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                helper.kill()
    if result is not None and result.returncode:
        sys.exit(result.returncode)


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
