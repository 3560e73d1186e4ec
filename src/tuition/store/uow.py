"""The unit of work: one database transaction, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from tuition.domain.errors import IdempotencyKeyInUse
from tuition.store.access import ApiKeyRepository, IdempotencyRepository, current_claim
from tuition.store.agreements import AgreementRepository
from tuition.store.catalog import CatalogRepository
from tuition.store.commissions import CommissionRepository
from tuition.store.direct import as_sqlalchemy_error
from tuition.store.earnings import EarningsRepository
from tuition.store.events import EventRepository
from tuition.store.ledger import LedgerRepository
from tuition.store.orders import OrderRepository
from tuition.store.payments import PaymentRepository
from tuition.store.payout_runs import PayoutRunRepository
from tuition.store.payouts import PayoutRepository
from tuition.store.refunds import RefundRepository
from tuition.store.staged import StagedWrites
from tuition.store.subscriptions import MembershipRepository, SubscriptionRepository
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

    Inside a request that holds an ``Idempotency-Key`` (store/access.py ``holding``),
    ``commit()`` also marks the key ``committed`` with the object named by
    :meth:`outcome`, in the same transaction; until that first commit, an autocommit
    unit of work is a transaction too, so the operation's first writes and the key's
    outcome land together.

    Appends that nothing later in the transaction reads back (outbox events, the order
    and its lines, the payment and its job) are staged (``staged``, store/staged.py) and
    go out at ``commit()`` with the key's outcome: one statement on PostgreSQL. Leaving
    without committing drops them with the rest.
    """

    conn: AsyncConnection
    staged: StagedWrites
    api_keys: ApiKeyRepository
    idempotency: IdempotencyRepository
    catalog: CatalogRepository
    orders: OrderRepository
    payments: PaymentRepository
    refunds: RefundRepository
    wallets: WalletRepository
    ledger: LedgerRepository
    earnings: EarningsRepository
    payouts: PayoutRepository
    payout_runs: PayoutRunRepository
    events: EventRepository
    work: WorkRepository
    memberships: MembershipRepository
    subscriptions: SubscriptionRepository
    agreements: AgreementRepository
    commissions: CommissionRepository

    def __init__(self, engine: AsyncEngine, *, autocommit: bool = False) -> None:
        self._engine = engine
        self._autocommit = autocommit and engine.dialect.name == "postgresql"
        self._tx: AsyncTransaction | None = None  # SQLite's
        self._driver: Any = None  # PostgreSQL's asyncpg connection, while in a transaction
        self._fairy: Any = None  # the pool's proxy of it
        claim = current_claim()
        if claim is not None and not claim.fenced:
            self._autocommit = False

    @property
    def engine(self) -> AsyncEngine:
        """The engine this unit of work opens its transactions on."""
        return self._engine

    def autocommit(self) -> UnitOfWork:
        """A unit of work on the same engine whose statements each commit on their own."""
        return UnitOfWork(self._engine, autocommit=True)

    async def __aenter__(self) -> Self:
        self.conn = await self._engine.connect()
        try:
            await self._begin()
        except BaseException:
            if self._fairy is not None:  # BEGIN may have run: never pool it in doubt
                await self.conn.invalidate()
            self._fairy = self._driver = None
            await self.conn.close()
            raise
        self.staged = staged = StagedWrites(self.conn)
        self.api_keys = ApiKeyRepository(self.conn)
        self.idempotency = IdempotencyRepository(self.conn)
        self.catalog = CatalogRepository(self.conn)
        self.orders = OrderRepository(self.conn, staged)
        self.payments = PaymentRepository(self.conn, staged)
        self.refunds = RefundRepository(self.conn)
        self.wallets = WalletRepository(self.conn)
        self.ledger = LedgerRepository(self.conn)
        self.earnings = EarningsRepository(self.conn)
        self.payouts = PayoutRepository(self.conn)
        self.payout_runs = PayoutRunRepository(self.conn)
        self.events = EventRepository(self.conn, staged)
        self.work = WorkRepository(self.conn)
        self.memberships = MembershipRepository(self.conn)
        self.subscriptions = SubscriptionRepository(self.conn)
        self.agreements = AgreementRepository(self.conn)
        self.commissions = CommissionRepository(self.conn, staged)
        return self

    async def _begin(self) -> None:
        if self._engine.dialect.name != "postgresql":
            self._tx = await self.conn.begin()
            return
        # On PostgreSQL the transaction is the driver's (BEGIN, COMMIT, ROLLBACK sent by
        # this class) and SQLAlchemy's own is switched off (AUTOCOMMIT), so statements
        # run through SQLAlchemy and on the driver directly (store/direct.py) share it.
        await self.conn.execution_options(isolation_level="AUTOCOMMIT")
        if not self._autocommit:
            self._fairy = await self.conn.get_raw_connection()
            self._driver = self._fairy.driver_connection
            assert self._driver is not None
            await self._send("BEGIN")

    async def _send(self, command: str) -> None:
        """BEGIN, COMMIT or ROLLBACK on the driver; a failure is raised as SQLAlchemy
        raises it, a lost connection invalidated with every pooled one older than it
        (store/direct.py ``as_sqlalchemy_error``)."""
        assert self._driver is not None
        try:
            await self._driver.execute(command)
        except BaseException as error:
            raise await as_sqlalchemy_error(self.conn, self._fairy, command, error) from None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
            elif self._driver is not None:
                await self._rollback_or_discard(raising=exc is None)
        finally:
            self._tx, self._driver, self._fairy = None, None, None
            await self.conn.close()

    async def _rollback_or_discard(self, *, raising: bool = True) -> None:
        """Roll back the driver's transaction. A connection that cannot be rolled back
        (closed, or the ROLLBACK failed) is discarded, so the pool never hands out one
        still inside a transaction; the ROLLBACK's error is raised only if ``raising``
        (not over the error that is already on its way out)."""
        assert self._driver is not None
        if self._driver.is_closed():
            await self.conn.invalidate()
            return
        if not self._driver.is_in_transaction():
            return
        try:
            await self._send("ROLLBACK")
        except BaseException:
            await self.conn.invalidate()
            if raising:
                raise

    def outcome(self, object_id: str) -> None:
        """Name the object this operation created or changed: a retry with the same
        ``Idempotency-Key`` whose first answer was lost re-renders it. No-op outside a
        request holding a key."""
        claim = current_claim()
        if claim is not None:
            claim.outcome_id = object_id

    async def commit(self) -> None:
        claim = current_claim()
        fenced = claim is not None and claim.unwritten
        if fenced:
            assert claim is not None
            self.idempotency.stage_outcome(self.staged, claim)
        matched = await self.staged.flush()
        if fenced and matched[-1] != 1:
            raise IdempotencyKeyInUse(
                "this request's Idempotency-Key was taken over by a retry after its "
                "lease ran out; nothing of it was written",
                param="Idempotency-Key",
            )
        if self._driver is not None:
            # After COMMIT the connection runs each statement on its own: commit last.
            await self._send("COMMIT")
            self._driver = None
        elif self._tx is not None:
            await self._tx.commit()
            self._tx = None
        else:
            assert self._autocommit, "commit() outside `async with`"
        if claim is not None:
            claim.fenced, claim.written_outcome = True, claim.outcome_id

    async def rollback(self) -> None:
        if self._driver is not None:
            await self._rollback_or_discard()
            self._driver = None
            return
        assert self._tx is not None, "rollback() outside `async with` or in autocommit"
        await self._tx.rollback()
        self._tx = None
