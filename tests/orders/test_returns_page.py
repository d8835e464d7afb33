"""The returns pages: a partner's returns with status, RMA and lines; QA's signed disposition."""

from __future__ import annotations

import pytest

from batches.models import MoveKind, StockMove
from orders.models import ReturnStatus
from tests.factories import TEST_PASSWORD
from tests.orders.test_returns import ask, authorise, build_returning, receive


@pytest.fixture
def returned(shipping):
    t = build_returning(shipping)
    t.received = receive(t, authorise(t, ask(t, ("T1", 5, "overstock")), rma_number="RMA-5"))
    t.requested = ask(t, ("T1", 2, "wrong_item"))
    return t


def test_the_customer_sees_its_returns_with_status_rma_and_lines(client, returned):
    t = returned
    client.force_login(t.buyer_user)
    response = client.get("/sales/returns/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-testid="return-{t.received.number}"' in html
    assert f'data-testid="return-{t.requested.number}"' in html
    assert "RMA-5" in html
    assert "5 × Tablets lot T1 (overstock)" in html
    assert "Received (held in returns)" in html
    assert "dispose-" not in html  # the customer disposes of nothing

    response = client.get("/sales/returns/", {"status": "requested"})
    html = response.content.decode()
    assert t.requested.number in html
    assert t.received.number not in html


def test_the_sellers_qa_gets_a_link_and_signs_the_disposition(client, returned):
    t = returned
    client.force_login(t.qa)
    html = client.get("/sales/returns/").content.decode()
    assert f'data-testid="dispose-{t.received.number}"' in html
    assert f'data-testid="dispose-{t.requested.number}"' not in html  # not received yet

    line = t.received.lines.get()
    response = client.post(
        f"/sales/returns/{t.received.pk}/",
        {f"line-{line.pk}": "restock", "password": TEST_PASSWORD, "reason": "inspected: sound"},
    )

    assert response.status_code == 302
    t.received.refresh_from_db()
    assert t.received.status == ReturnStatus.DISPOSED
    assert StockMove.objects.filter(
        reference=f"return:{t.received.number}", kind=MoveKind.TRANSFER
    ).exists()
    page = client.get(response["Location"]).content.decode()
    assert "Restock" in page


def test_a_wrong_password_refuses_the_disposition_on_the_page(client, returned):
    t = returned
    client.force_login(t.qa)
    line = t.received.lines.get()
    response = client.post(
        f"/sales/returns/{t.received.pk}/",
        {f"line-{line.pk}": "destroy", "password": "wrong", "reason": "inspected"},
    )
    assert response.status_code == 409
    assert 'data-testid="disposition-error"' in response.content.decode()
    t.received.refresh_from_db()
    assert t.received.status == ReturnStatus.RECEIVED


def test_others_neither_see_nor_dispose(client, returned):
    t = returned
    client.force_login(t.net.other_user)
    assert t.received.number not in client.get("/sales/returns/").content.decode()
    assert client.get(f"/sales/returns/{t.received.pk}/").status_code == 404
    # The customer sees the return but may not dispose of it.
    client.force_login(t.buyer_user)
    assert client.get(f"/sales/returns/{t.received.pk}/").status_code == 200
    line = t.received.lines.get()
    response = client.post(
        f"/sales/returns/{t.received.pk}/",
        {f"line-{line.pk}": "destroy", "password": TEST_PASSWORD, "reason": "x"},
    )
    assert response.status_code == 403
    client.logout()
    assert client.get("/sales/returns/").status_code == 302  # sign in first
