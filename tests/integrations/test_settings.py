"""E-mail and webhook settings come from the environment, with safe defaults."""

from __future__ import annotations

import pytest

from tests.pharmadms.test_settings import manage

SECRET = "test-only-secret-key-not-for-production-use-0123456789"
PRINT = (
    "from django.conf import settings as s;"
    "print(s.EMAIL_BACKEND, s.WEBHOOK_TIMEOUT_SECONDS, s.WEBHOOK_MAX_ATTEMPTS)"
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "true"}, ["django.core.mail.backends.console.EmailBackend", "5.0", "5"]),
        ({"DEBUG": "false"}, ["django.core.mail.backends.smtp.EmailBackend", "5.0", "5"]),
        (
            {
                "DEBUG": "false",
                "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
                "WEBHOOK_TIMEOUT_SECONDS": "2.5",
                "WEBHOOK_MAX_ATTEMPTS": "8",
            },
            ["django.core.mail.backends.locmem.EmailBackend", "2.5", "8"],
        ),
    ],
)
def test_email_backend_and_webhook_limits_follow_the_environment(env, expected):
    result = manage("shell", "--no-imports", "-c", PRINT, SECRET_KEY=SECRET, **env)
    assert result.stdout.split() == expected, result.stderr
