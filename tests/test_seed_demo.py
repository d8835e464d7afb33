"""The seed_demo command: a realistic network, written through the services, idempotently."""

from __future__ import annotations

import datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.db.models import Q
from django.test import override_settings
from django.utils import timezone

from audit import chain
from audit.history import regulated_models
from batches.models import Batch, BatchStatus, Product, StockBalance, StockMove
from orders.models import (
    Agreement,
    AgreementPrice,
    Discrepancy,
    Order,
    OrderStatus,
    SalesTarget,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)
from partners.models import Licence, Partner, PartnerKind, Role, User
from pharmadms.identifiers import normalise_gtin, validate_gln
from tests.orders.conftest import ledger_balanced

DEMO_PASSWORD = "demo-pharma-test-2026"
FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
DEMO_ROLES = {
    "admin": Role.ADMIN,
    "qa": Role.QA_OFFICER,
    "warehouse": Role.WAREHOUSE_OPERATOR,
    "orderdesk": Role.ORDER_DESK,
    "pharmacy": Role.PARTNER_USER,
    "regulator": Role.REGULATOR,
}


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def row_counts() -> dict[str, int]:
    """Rows of every regulated model and its history, plus the ledger and the users."""
    counts = {}
    for model in regulated_models():
        counts[model._meta.label] = model.objects.count()
        counts[f"{model._meta.label} history"] = model.history.count()
    for model in (StockMove, StockBalance, User, User.history.model, Order, Shipment):
        counts[model._meta.label] = model.objects.count()
    return counts


@pytest.fixture(scope="module")
def _seeded_network(django_db_setup, django_db_blocker):
    """Seed once for the whole module (the orders make a seed take seconds), inside a
    transaction rolled back when the module ends. Each test runs in its own transaction on top,
    so what a test changes (a second run, a changed password) is rolled back after it."""
    with (
        django_db_blocker.unblock(),
        # The hasher tests/conftest.py sets for each test, so the seeded hashes check there.
        override_settings(DEMO_PASSWORD=DEMO_PASSWORD, PASSWORD_HASHERS=[FAST_HASHER]),
        transaction.atomic(),
    ):
        yield seed()
        transaction.set_rollback(True)


@pytest.fixture
def seeded(_seeded_network, db, settings):
    settings.DEMO_PASSWORD = DEMO_PASSWORD
    return _seeded_network


@pytest.mark.django_db
def test_seeds_the_partners_of_the_network(seeded):
    """One manufacturer, three wholesalers in different regions, 20 pharmacies, 2 hospitals and
    a regulator, each with a valid GLN and a site with its own GLN."""
    kinds = {kind: Partner.objects.filter(kind=kind).count() for kind in PartnerKind.values}
    assert kinds == {
        PartnerKind.MANUFACTURER: 1,
        PartnerKind.WHOLESALER: 3,
        PartnerKind.PHARMACY: 20,
        PartnerKind.HOSPITAL: 2,
        PartnerKind.LOGISTICS: 0,
        PartnerKind.REGULATOR: 1,
    }
    wholesaler_regions = Partner.objects.filter(kind=PartnerKind.WHOLESALER).values("region")
    assert len({row["region"] for row in wholesaler_regions}) == 3
    assert Partner.objects.get(kind=PartnerKind.MANUFACTURER).gs1_company_prefix
    for partner in Partner.objects.prefetch_related("sites"):
        validate_gln(partner.gln)
        assert partner.contact_email
        assert partner.contact_phone
        assert partner.sites.count() == 1
        validate_gln(partner.sites.get().gln)


@pytest.mark.django_db
def test_every_trading_partner_holds_licences_some_for_controlled_substances(seeded):
    """Every partner but the regulator holds a licence; only some cover controlled substances,
    and the licences' periods lie around today."""
    today = timezone.localdate()
    for partner in Partner.objects.exclude(kind=PartnerKind.REGULATOR):
        assert partner.licences.exists(), partner
    controlled = Licence.objects.filter(covers_controlled_substances=True)
    assert controlled.exists()
    assert Licence.objects.filter(covers_controlled_substances=False).exists()
    trading = Partner.objects.exclude(kind=PartnerKind.REGULATOR)
    assert trading.exclude(licences__in=controlled).exists(), "some partners lack a registration"
    for licence in Licence.objects.all():
        assert licence.valid_from <= today
        assert abs((licence.valid_until - today).days) < 5 * 366
    assert Licence.objects.filter(valid_until__lt=today).count() == 1  # the lapsed pharmacy


@pytest.mark.django_db
def test_seeds_products_and_lots_around_today(seeded):
    """Ten products with valid GTIN-14s, one controlled; lots include an expired one, one near
    expiry and one still in quarantine."""
    today = timezone.localdate()
    assert Product.objects.count() == 10
    for product in Product.objects.all():
        assert normalise_gtin(product.gtin) == product.gtin
    controlled = [product for product in Product.objects.all() if product.is_controlled]
    assert [product.controlled_schedule for product in controlled] == ["CII"]
    assert {p.storage_class.code for p in Product.objects.select_related("storage_class")} >= {
        "2-8c",
        "15-25c",
    }
    assert Batch.objects.filter(expires_on__lt=today).exists()
    assert Batch.objects.filter(status=BatchStatus.QUARANTINE).count() == 1
    assert Batch.objects.filter(
        status=BatchStatus.RELEASED,
        expires_on__gte=today,
        expires_on__lte=today + datetime.timedelta(days=90),
    ).exists()
    for batch in Batch.objects.all():
        assert batch.manufactured_on <= today < batch.expires_on or batch.expires_on < today


@pytest.mark.django_db
def test_stock_is_held_at_the_manufacturer_and_every_wholesaler(seeded):
    """The manufacturer and each wholesaler hold stock; quarantined stock is not in storage."""
    holders = StockBalance.objects.filter(on_hand__gt=0).values_list(
        "location__site__partner__kind", "location__site__partner__name"
    )
    kinds = {kind for kind, _ in holders}
    assert PartnerKind.MANUFACTURER in kinds
    wholesalers_with_stock = {name for kind, name in holders if kind == PartnerKind.WHOLESALER}
    assert len(wholesalers_with_stock) == 3
    assert not StockBalance.objects.filter(
        on_hand__gt=0, batch__status=BatchStatus.QUARANTINE, location__kind="storage"
    ).exists()


@pytest.mark.django_db
def test_agreements_link_every_tier_with_prices_and_monthly_targets(seeded):
    """The manufacturer supplies each wholesaler, and each wholesaler the pharmacies and
    hospitals of its region; each agreement covers the customer's region, prices products and
    sets monthly targets."""
    wholesalers = Partner.objects.filter(kind=PartnerKind.WHOLESALER)
    customers = Partner.objects.filter(kind__in=[PartnerKind.PHARMACY, PartnerKind.HOSPITAL])
    manufacturer = Partner.objects.get(kind=PartnerKind.MANUFACTURER)
    assert set(
        Agreement.objects.filter(supplier=manufacturer).values_list("customer_id", flat=True)
    ) == set(wholesalers.values_list("pk", flat=True))
    for customer in customers:
        agreement = Agreement.objects.get(customer=customer)
        assert agreement.supplier.kind == PartnerKind.WHOLESALER
        assert agreement.supplier.region == customer.region
    today = timezone.localdate()
    for agreement in Agreement.objects.select_related("customer"):
        assert agreement.territory == [agreement.customer.region]
        assert agreement.is_in_force_on(today)
        assert agreement.min_remaining_shelf_life_days > 0
        assert AgreementPrice.objects.filter(agreement=agreement).exists()
        months = SalesTarget.objects.filter(agreement=agreement, product=None)
        assert months.count() >= 4
        assert all(t.period_start.day == 1 for t in months)


@pytest.mark.django_db
def test_orders_and_shipments_at_both_tiers(seeded):
    """Wholesalers bought from the manufacturer and pharmacies and hospitals from wholesalers;
    most orders were shipped and received, a few are open and one was cancelled."""
    demo = Order.objects.filter(customer_reference__startswith="DEMO-PO-")
    upstream = demo.filter(seller__kind=PartnerKind.MANUFACTURER)
    downstream = demo.filter(seller__kind=PartnerKind.WHOLESALER)
    assert upstream.filter(status=OrderStatus.DELIVERED).count() >= 9
    assert (
        downstream.filter(status=OrderStatus.DELIVERED, buyer__kind=PartnerKind.PHARMACY).count()
        >= 20
    )
    assert downstream.filter(
        status=OrderStatus.DELIVERED, buyer__kind=PartnerKind.HOSPITAL
    ).exists()
    statuses = set(demo.values_list("status", flat=True))
    assert {OrderStatus.SUBMITTED, OrderStatus.ALLOCATED, OrderStatus.SHIPPED} <= statuses
    assert demo.filter(status=OrderStatus.CANCELLED).count() == 1
    assert Shipment.objects.filter(status=ShipmentStatus.RECEIVED).count() >= 30
    assert Shipment.objects.filter(status=ShipmentStatus.DISPATCHED).exists()
    assert {Discrepancy.DAMAGED, Discrepancy.SHORT} <= set(
        ShipmentLine.objects.values_list("discrepancy", flat=True)
    )
    # A lot the manufacturer shipped to a wholesaler went on to a pharmacy: the trace has depth.
    to_wholesalers = set(
        ShipmentLine.objects.filter(
            shipment__order__seller__kind=PartnerKind.MANUFACTURER,
            shipment__status=ShipmentStatus.RECEIVED,
        ).values_list("batch_id", flat=True)
    )
    assert ShipmentLine.objects.filter(
        shipment__order__seller__kind=PartnerKind.WHOLESALER, batch_id__in=to_wholesalers
    ).exists()
    # Every line was priced under the agreement at submission.
    submitted = demo.exclude(status=OrderStatus.DRAFT)
    assert not submitted.filter(lines__unit_price__isnull=True).exists()


@pytest.mark.django_db
def test_ledger_balances_and_the_chain_verifies_after_seeding(seeded):
    """For every lot and location the moves add up to the balance; nothing is allocated to a
    shipped order; the audit chain verifies."""
    assert ledger_balanced()
    for batch in Batch.objects.all():
        moved_in = sum(
            StockMove.objects.filter(batch=batch, to_location__isnull=False).values_list(
                "quantity", flat=True
            )
        )
        moved_out = sum(
            StockMove.objects.filter(batch=batch, from_location__isnull=False).values_list(
                "quantity", flat=True
            )
        )
        held = sum(StockBalance.objects.filter(batch=batch).values_list("on_hand", flat=True))
        assert moved_in - moved_out == held, batch.lot_number
    assert chain.verify().ok


@pytest.mark.django_db
def test_one_demo_login_per_role(seeded):
    """Six demo users with their roles and partners, signing in with DEMO_PASSWORD; the table at
    the end lists them."""
    for username, role in DEMO_ROLES.items():
        user = User.objects.get(username=username)
        assert user.role == role
        assert user.is_active
        assert user.check_password(DEMO_PASSWORD)
        assert username in seeded
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="admin").partner.kind == PartnerKind.MANUFACTURER
    assert User.objects.get(username="orderdesk").partner.kind == PartnerKind.WHOLESALER
    assert User.objects.get(username="pharmacy").partner.kind == PartnerKind.PHARMACY
    assert User.objects.get(username="regulator").partner.kind == PartnerKind.REGULATOR
    assert not User.objects.get(username="system").has_usable_password()
    assert DEMO_PASSWORD in seeded


@pytest.mark.django_db
def test_every_regulated_row_has_a_history_row_with_user_and_reason(seeded):
    """Every regulated row was written through a service: its history names who and why."""
    for model in regulated_models():
        history = model.history
        anonymous = history.filter(
            Q(history_user__isnull=True)
            | Q(history_change_reason__isnull=True)
            | Q(history_change_reason="")
        )
        assert not anonymous.exists(), f"{model._meta.label} history without user or reason"
        created = set(history.filter(history_type="+").values_list("id", flat=True))
        assert set(model.objects.values_list("pk", flat=True)) <= created, model._meta.label
    assert not StockMove.objects.filter(reason="").exists()
    assert not User.history.filter(history_change_reason__isnull=True).exists()


@pytest.mark.django_db
def test_running_twice_creates_nothing_new(seeded):
    """A second run finds every row and leaves every count, history included, as it was:
    no order, shipment or stock move is added either."""
    first = row_counts()

    second_output = seed()

    assert row_counts() == first
    assert "(0 new)" in second_output
    assert "orders and shipments: " in second_output
    assert chain.verify().ok


@pytest.mark.django_db
def test_a_changed_demo_password_is_applied_on_the_next_run(seeded, settings):
    settings.DEMO_PASSWORD = "another-demo-password"

    seed()

    assert User.objects.get(username="qa").check_password("another-demo-password")


@pytest.mark.django_db
def test_empty_demo_password_is_refused(settings):
    """Without DEMO_PASSWORD the command refuses in one line and seeds nothing."""
    settings.DEMO_PASSWORD = ""
    before = row_counts()
    with pytest.raises(CommandError, match="DEMO_PASSWORD") as error:
        call_command("seed_demo", stdout=StringIO())
    assert "\n" not in str(error.value)
    assert row_counts() == before


@pytest.mark.django_db
def test_a_foreign_user_under_a_demo_username_is_refused(seeded):
    """A user named like a demo login but with another role is not silently taken over."""
    qa = User.objects.get(username="qa")
    qa.role = Role.PARTNER_USER
    qa._change_reason = "test: someone else's account"
    qa.save(update_fields=["role"])

    with pytest.raises(CommandError, match="'qa' exists with another partner or role"):
        seed()


@pytest.mark.django_db
def test_orders_carry_their_business_dates_across_four_months(seeded):
    """The seed runs each order's steps on their business days (pharmadms.clock.at): order
    dates and dispatch dates span four months and the sales by month show them; the history
    rows of those orders still carry the real time they were written (never back-dated)."""
    from orders import analytics

    today = timezone.localdate()
    demo = Order.objects.filter(customer_reference__startswith="DEMO-PO-")
    months = {
        created.date().replace(day=1) for created in demo.values_list("created_at", flat=True)
    }
    assert len(months) >= 3
    assert all(created <= timezone.now() for created in demo.values_list("created_at", flat=True))
    dispatched = Shipment.objects.filter(order__in=demo, dispatched_at__isnull=False)
    dispatch_months = {
        moment.date().replace(day=1)
        for moment in dispatched.values_list("dispatched_at", flat=True)
    }
    assert len(dispatch_months) >= 3
    for shipment in Shipment.objects.filter(status=ShipmentStatus.RECEIVED)[:20]:
        assert shipment.dispatched_at < shipment.delivered_at < shipment.received_at
    by_month = analytics.sales_summary(seller_id=None, group_by="month")
    assert len({row["label"] for row in by_month}) >= 3

    oldest = demo.order_by("created_at").first()
    assert (today - oldest.created_at.date()).days > 60
    first_version = oldest.history.earliest("history_date")
    # Written today (the seed ran just now), though the order is dated months back.
    assert (timezone.now() - first_version.history_date) < datetime.timedelta(hours=1)
    assert first_version.created_at == oldest.created_at
