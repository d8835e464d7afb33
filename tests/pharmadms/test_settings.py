"""Configuration comes from the environment only; production values pass the deploy check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k" * 20 + "-production-secret-with-enough-entropy-0123456789",
    "ALLOWED_HOSTS": "pharmadms.example.com",
    "DATABASE_URL": "postgres://pharmadms@db.example.com:5432/pharmadms",
    "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
    "MQTT_URL": "mqtt://mqtt.example.com:1883",
}


SETTINGS_VARIABLES = {
    "DEBUG",
    "SECRET_KEY",
    "DATABASE_URL",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_COOKIES",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "MQTT_URL",
    "DATABASE_PREPARED_STATEMENTS",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    # Start from the environment less every PharmaDMS setting (the test run sets some).
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    clean["PHARMADMS_VAR_DIR"] = str(ROOT / "var" / "settings-test")
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_refuses_to_start_without_secret_key_when_debug_is_off():
    result = manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_values_pass_the_deploy_check():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_database_url_selects_postgresql_with_persistent_connections():
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['ENGINE'], d['HOST'], d['NAME'], d['CONN_MAX_AGE'] > 0, "
        "d['CONN_HEALTH_CHECKS'], s.CELERY_TASK_ALWAYS_EAGER)"
    )
    result = manage("shell", "--no-imports", "-c", code, **PRODUCTION)
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "db.example.com",
        "pharmadms",
        "True",
        "True",
        "False",
    ], result.stderr


@pytest.mark.parametrize(
    ("prepared", "options"),
    [
        ("", "{'server_side_binding': True, 'prepare_threshold': 5}"),
        ("false", "{}"),
    ],
)
def test_postgresql_prepares_repeated_statements_unless_told_not_to(prepared, options):
    code = "from django.conf import settings as s; print(s.DATABASES['default'].get('OPTIONS'))"
    env = {**PRODUCTION, "DATABASE_PREPARED_STATEMENTS": prepared}
    result = manage("shell", "--no-imports", "-c", code, **env)
    assert result.stdout.strip() == options, result.stderr


def test_embedded_defaults_are_sqlite_and_eager_tasks():
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(d['ENGINE'], d['CONN_MAX_AGE'] > 0, s.CELERY_TASK_ALWAYS_EAGER)"
    )
    result = manage("shell", "--no-imports", "-c", code, DEBUG="true")
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True", "True"], result.stderr


def test_a_malformed_boolean_is_refused_with_one_readable_line():
    result = manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be true or false" in result.stderr
