"""Cold-chain events for the edges (webhooks, e-mail): ``excursion.opened``, ``excursion.closed``.

They are business events of the platform's catalogue (``orders.signals.EVENTS``) and travel the
same way: ``orders.signals.announce`` sends them once the transaction has committed (a
rolled-back evaluation announces nothing), and ``integrations`` turns them into webhook
deliveries and e-mails.
"""

from __future__ import annotations

from orders.signals import announce

EVENTS = ("excursion.opened", "excursion.closed")

__all__ = ["EVENTS", "announce"]
