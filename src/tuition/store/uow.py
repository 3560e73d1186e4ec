"""The unit of work: one database transaction, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from tuition.store.access import ApiKeyRepository, IdempotencyRepository
from tuition.store.catalog import CatalogRepository
from tuition.store.events import EventRepository
from tuition.store.ledger import LedgerRepository
from tuition.store.orders import OrderRepository
from tuition.store.payments import PaymentRepository
from tuition.store.refunds import RefundRepository
from tuition.store.wallet import WalletRepository
from tuition.store.work import WorkRepository


class UnitOfWork:
    """``async with uow:`` opens a transaction; leave without ``commit()`` to roll back.

    ``autocommit=True`` (or :meth:`autocommit`) is for work made of statements that are
    each atomic on their own (a compare-and-set, an ``INSERT … ON CONFLICT``): on
    PostgreSQL each statement commits by itself, which saves the BEGIN and COMMIT round
    trips. SQLite keeps one transaction (its ``BEGIN IMMEDIATE`` is how writers queue),
    so call ``commit()`` as usual, and rely neither on the statements being grouped nor
    on them being separate.
    """

    conn: AsyncConnection
    api_keys: ApiKeyRepository
    idempotency: IdempotencyRepository
    catalog: CatalogRepository
    orders: OrderRepository
    payments: PaymentRepository
    refunds: RefundRepository
    wallets: WalletRepository
    ledger: LedgerRepository
    events: EventRepository
    work: WorkRepository

    def __init__(self, engine: AsyncEngine, *, autocommit: bool = False) -> None:
        self._engine = engine
        self._autocommit = autocommit and engine.dialect.name == "postgresql"
        self._tx: AsyncTransaction | None = None

    def autocommit(self) -> UnitOfWork:
        """A unit of work on the same engine whose statements each commit on their own."""
        return UnitOfWork(self._engine, autocommit=True)

    async def __aenter__(self) -> Self:
        self.conn = await self._engine.connect()
        if self._autocommit:
            await self.conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._tx = await self.conn.begin()
        self.api_keys = ApiKeyRepository(self.conn)
        self.idempotency = IdempotencyRepository(self.conn)
        self.catalog = CatalogRepository(self.conn)
        self.orders = OrderRepository(self.conn)
        self.payments = PaymentRepository(self.conn)
        self.refunds = RefundRepository(self.conn)
        self.wallets = WalletRepository(self.conn)
        self.ledger = LedgerRepository(self.conn)
        self.events = EventRepository(self.conn)
        self.work = WorkRepository(self.conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            self._tx = None
            await self.conn.close()

    async def commit(self) -> None:
        if self._autocommit:
            return
        assert self._tx is not None, "commit() outside `async with`"
        await self._tx.commit()

    async def rollback(self) -> None:
        assert self._tx is not None, "rollback() outside `async with` or in autocommit"
        await self._tx.rollback()
