"""The GS1 Digital Link resolvers a scan trusts come from the environment."""

from __future__ import annotations

from tests.pharmadms.test_settings import manage

CODE = (
    "from django.conf import settings as s; from batches.gs1 import is_trusted_host;"
    "print(','.join(s.GS1_DIGITAL_LINK_HOSTS), is_trusted_host('dl.acme-pharma.example'))"
)


def test_unset_trusts_gs1s_resolver_only():
    result = manage("shell", "--no-imports", "-c", CODE, DEBUG="true")
    assert result.stdout.split() == ["id.gs1.org", "False"], result.stderr


def test_a_comma_separated_list_is_read():
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        CODE,
        DEBUG="true",
        GS1_DIGITAL_LINK_HOSTS=" id.gs1.org, dl.acme-pharma.example ,",
    )
    assert result.stdout.split() == ["id.gs1.org,dl.acme-pharma.example", "True"], result.stderr
