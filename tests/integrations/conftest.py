"""Fixtures of the integrations tests: a real HTTP receiver on 127.0.0.1, and partners' admins.

Webhook targets lie outside the system, so they are real local HTTP servers, never mocks.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from integrations import services
from partners.models import Role
from tests.factories import UserFactory


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes


class Receiver:
    """What a partner's webhook server got; answers each request with the next status."""

    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.default_status = 200
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/pharmadms"

    def url_for(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def answer(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default_status


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        receiver: Receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with receiver.lock:
            receiver.requests.append(Received(self.path, self.headers, body))
        self.send_response(receiver.answer())
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


def _serving(server: ThreadingHTTPServer):
    """Serve in a thread for one test, then stop; yields the server's Receiver."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def receiver():
    """A partner's webhook server, started on a free port of 127.0.0.1 for one test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(server)
    yield from _serving(server)


@pytest.fixture
def tls_receiver(monkeypatch):
    """The webhook server over https, as "localhost", with a certificate of a test authority
    that the sending side is made to trust (and a second one for another name)."""
    authority = trustme.CA()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(server)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.receiver.certify = lambda name: authority.issue_cert(name).configure_cert(context)
    server.receiver.certify("localhost")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    server.receiver.https_url = f"https://localhost:{port}/hooks/pharmadms"

    def trusting() -> ssl.SSLContext:
        client = ssl.create_default_context()
        authority.configure_trust(client)
        return client

    monkeypatch.setattr(services, "tls_context", trusting)
    yield from _serving(server)


@pytest.fixture
def closed_port_url() -> str:
    """A loopback address where nothing listens: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def verify_signature(secret: str, received: Received) -> bool:
    """What a partner's server does: recompute the HMAC over "<timestamp>.<body>"."""
    timestamp = received.headers["X-PharmaDMS-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256)
    return hmac.compare_digest(
        received.headers["X-PharmaDMS-Signature"], f"sha256={expected.hexdigest()}"
    )


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    """Short timeouts, three attempts, a tiny backoff: the tests wait for nothing."""
    settings.WEBHOOK_TIMEOUT_SECONDS = 3
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_BACKOFF_SECONDS = 0.05


@pytest.fixture
def admins(network):
    """The manufacturer's admin is ``network.admin``; here are the wholesalers' admins."""
    network.wholesaler_admin = UserFactory(
        username="wadmin", partner=network.wholesaler, role=Role.ADMIN
    )
    network.other_admin = UserFactory(username="oadmin", partner=network.other, role=Role.ADMIN)
    return network
