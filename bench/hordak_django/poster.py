"""Posts ledger transactions through django-hordak, for bench/hordak.py.

It runs in a virtualenv of its own with Django and django-hordak (bench/hordak.py makes
it; neither is a dependency of Tuition), against the PostgreSQL database named by the
``BENCH_PG_*`` variables:

    python poster.py migrate            # hordak's schema
    python poster.py setup              # the two accounts every posting moves money between
    python poster.py post SECONDS BATCH # post for SECONDS, BATCH transfers per transaction

``post`` prints one line, ``postings=N transactions=M seconds=S``. Each transfer is one
hordak Transaction with two Legs (two postings), as Tuition's bench.ledger entries are.
"""

from __future__ import annotations

import os
import sys
import time
from decimal import Decimal

import django
from django.conf import settings


def configure() -> None:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": os.environ["BENCH_PG_DATABASE"],
                "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
                "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
                "USER": os.environ.get("BENCH_PG_USER", "postgres"),
                "PASSWORD": os.environ.get("BENCH_PG_PASSWORD", ""),
            }
        },
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "mptt", "hordak"],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        DEFAULT_CURRENCY="CNY",
        HORDAK_CURRENCIES=["CNY"],
        HORDAK_INTERNAL_CURRENCY="CNY",
    )
    django.setup()


def main(argv: list[str]) -> int:
    configure()
    from django.core.management import call_command
    from django.db import transaction
    from djmoney.money import Money
    from hordak.models import Account

    command = argv[0]
    if command == "migrate":
        call_command("migrate", verbosity=0)
        return 0
    if command == "setup":
        Account.objects.create(name="Clearing", code="1", type="AS", currencies=["CNY"])
        Account.objects.create(name="Revenue", code="2", type="IN", currencies=["CNY"])
        return 0
    seconds, batch = float(argv[1]), int(argv[2])
    clearing = Account.objects.get(code="1")
    revenue = Account.objects.get(code="2")
    amount = Money(Decimal("1.23"), "CNY")
    transfers = transactions = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        with transaction.atomic():
            for _ in range(batch):
                revenue.transfer_to(clearing, amount)
        transfers += batch
        transactions += 1
    took = time.perf_counter() - started
    print(f"postings={transfers * 2} transactions={transactions} seconds={took:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
