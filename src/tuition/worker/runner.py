"""The worker loop: relay the outbox, deliver webhooks, sweep for due work, run jobs.

Run any number of ``tuition worker`` processes against PostgreSQL; claims use
``FOR UPDATE SKIP LOCKED`` with a lease, so they share the rows and none is worked on by
two at once. A worker killed mid-batch leaves its rows to be claimed again once the lease
passes. On SIGTERM the current batch is finished and the loop stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx

from tuition.config import Settings
from tuition.container import Container
from tuition.domain.errors import Conflict
from tuition.domain.orders import OrderStatus
from tuition.domain.payments import PaymentStatus, RefundStatus
from tuition.logs import get_logger
from tuition.services.anchors import anchor_daily
from tuition.services.ledger import seal_ledger
from tuition.services.webhook_targets import (
    GuardedTransport,
    Resolver,
    TargetPolicy,
    system_resolver,
)
from tuition.services.webhooks import Deliverer, backoff
from tuition.store.tables import orders, payments, refunds
from tuition.store.uow import UnitOfWork
from tuition.worker.jobs import HANDLERS

log = get_logger(__name__)

_PENDING_ORDER = (OrderStatus.PENDING_PAYMENT.value,)
_OPEN_PAYMENT = (PaymentStatus.CREATED.value, PaymentStatus.PENDING.value)
_PENDING_REFUND = (RefundStatus.PENDING.value,)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    lease: timedelta = timedelta(seconds=60)
    batch: int = 100
    poll_interval: float = 0.5
    sweep_interval: timedelta = timedelta(seconds=5)
    # A payment whose notification has not come after this long is queried.
    recover_after: timedelta = timedelta(seconds=60)
    max_job_attempts: int = 20
    webhook_timeout: float = 10.0
    webhook_concurrency: int = 16

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        return cls(
            lease=timedelta(seconds=settings.worker_lease_seconds),
            poll_interval=settings.worker_poll_seconds,
            recover_after=timedelta(seconds=settings.recover_after_seconds),
        )


@dataclass(slots=True)
class Stats:
    relayed: int = 0
    delivered: int = 0
    jobs: int = 0
    swept: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.relayed or self.delivered or self.jobs)


class Worker:
    def __init__(
        self,
        container: Container,
        config: WorkerConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.container = container
        self.config = config or WorkerConfig.from_settings(container.settings)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._last_sweep: datetime | None = None
        self._anchor_retry_at: datetime | None = None  # after a failed daily anchor
        # Every delivery passes the SSRF guard; trust_env=False because a proxy taken
        # from the environment would be mounted beside the guard and bypass it.
        guarded = GuardedTransport(
            transport or httpx.AsyncHTTPTransport(),
            TargetPolicy.allowing(container.settings.webhook_allowed_hosts),
            resolver,
        )
        self._client = httpx.AsyncClient(
            transport=guarded,
            timeout=self.config.webhook_timeout,
            follow_redirects=False,
            trust_env=False,
        )
        self._deliverer = Deliverer(self._client, container.clock, self.rng)
        self.deps = replace(container.payment_deps(), recover_after=self.config.recover_after)

    def uow(self) -> UnitOfWork:
        return self.container.uow()

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; the batch in hand is always finished first."""
        log.info("worker_started")
        while not stop.is_set():
            try:
                stats = await self.run_once()
            except Exception:
                log.exception("worker_iteration_failed")
                stats = Stats()
            if not stats.busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.config.poll_interval)
        log.info("worker_stopped")

    async def run_once(self) -> Stats:
        stats = Stats()
        now = self.container.clock.now()
        if self._last_sweep is None or now - self._last_sweep >= self.config.sweep_interval:
            stats.swept = await self.sweep()
            self._last_sweep = now
        async with self.uow() as uow:
            stats.relayed = await uow.work.relay(now=now, limit=self.config.batch)
            await uow.commit()
        # Deliveries and jobs run side by side: a recovery job does not wait for a batch
        # of webhooks (their requests mostly wait on the network), nor they for it.
        delivered, jobs_run = await asyncio.gather(
            self.deliver_due(), self.run_due_jobs(), return_exceptions=True
        )
        for outcome in (delivered, jobs_run):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(delivered, int)
        assert isinstance(jobs_run, int)
        stats.delivered, stats.jobs = delivered, jobs_run
        return stats

    async def sweep(self) -> int:
        """Queue a job for each due object that has none: expiries, silent payments,
        pending refunds.

        Payments and refunds get their jobs when they are created; this is the safety
        net for rows written without one (before jobs were created with them). It pages
        through every due row lacking its job (keyset pages of ``batch``), never only
        the first page, so no backlog keeps a row from getting its job.
        """
        now = self.container.clock.now()
        cutoff = now - self.config.recover_after
        queued = 0
        async with self.uow() as uow:
            for kind, table, statuses, due, due_by in (
                ("expire_order", orders, _PENDING_ORDER, "expires_at", now),
                ("reconcile_payment", payments, _OPEN_PAYMENT, "created_at", cutoff),
                ("submit_refund", refunds, _PENDING_REFUND, "created_at", cutoff),
            ):
                after: tuple[datetime, str] | None = None
                while True:
                    page = await uow.work.without_job(
                        kind,
                        table,
                        statuses=statuses,
                        due=due,
                        due_by=due_by,
                        after=after,
                        limit=self.config.batch,
                    )
                    subjects = [row_id for _, row_id in page]
                    queued += await uow.work.enqueue_many(kind, subjects, run_at=now, now=now)
                    if len(page) < self.config.batch:
                        break
                    after = page[-1]
            await uow.idempotency.purge_expired(now)
            await uow.commit()
        await seal_ledger(self.uow())
        # Anchors prove live money was not rewritten; test mode's ledger is not anchored.
        live = self.container.mode == "live"
        if live and (self._anchor_retry_at is None or now >= self._anchor_retry_at):
            try:
                if await anchor_daily(self.uow(), self.container.settings, now):
                    log.info("ledger_anchored")
                self._anchor_retry_at = None
            except Exception as exc:  # a bad key or directory must not stop the sweep
                log.warning("ledger_anchor_failed", error=f"{type(exc).__name__}: {exc}")
                self._anchor_retry_at = now + timedelta(hours=1)
        queued += await self._queue_reconciliations(now)
        queued += await self.run_subscriptions()
        queued += await self.run_payout_schedule()
        return queued

    async def run_payout_schedule(self) -> int:
        """Propose the current period's payout run once (UNIQUE per schedule and period);
        approve it when TUITION_PAYOUT_AUTO_APPROVE (test mode:
        TUITION_TEST_PAYOUT_AUTO_APPROVE) says so; finish an approved run whose
        payouts a crash interrupted. 1 when a run was proposed now."""
        from tuition.services import payout_runs

        settings = self.container.settings
        deps = self.container.payout_deps()
        run, new = await payout_runs.propose_due_run(
            self.uow(), schedule=settings.payout_schedule, proposed_by="worker", deps=deps
        )
        if run is None:
            return 0
        if run.status == payout_runs.PROPOSED and settings.auto_approves_payouts(
            self.container.mode
        ):
            # Approved meanwhile (by another worker, an operator): it pays once anyway.
            with contextlib.suppress(Conflict):
                await payout_runs.approve_run(
                    self.uow(), run.id, operator=payout_runs.AUTO_APPROVER, deps=deps
                )
        elif run.status == payout_runs.APPROVED:
            async with self.uow() as uow:
                items = await uow.payout_runs.items(run.id)
            if any(item.status == payout_runs.PROPOSED for item in items):
                await payout_runs.execute_run(self.uow(), run.id, deps=deps)
        return int(new)

    async def run_subscriptions(self) -> int:
        """Renewal orders, lapses, dunning and expiry of subscriptions (services/renewals.py)."""
        from tuition.services.renewals import run_renewals
        from tuition.worker.subscriptions import renewal_deps

        run = await run_renewals(self.uow(), deps=renewal_deps(self.container))
        return len(run.prepared) + len(run.past_due) + len(run.expired) + len(run.canceled)

    async def _queue_reconciliations(self, now: datetime) -> int:
        """Each morning, yesterday's reconciliation per channel (UNIQUE job key: once)."""
        from tuition.services.reconciliation import RECONCILE_JOB, due_subjects

        subjects = due_subjects(self.container.registry, now, self.container.settings.zone)
        if not subjects:
            return 0
        async with self.uow() as uow:
            queued = await uow.work.enqueue_many(RECONCILE_JOB, subjects, run_at=now, now=now)
            await uow.commit()
        return queued

    async def deliver_due(self) -> int:
        """Claim a batch of due deliveries and send it (services/webhooks.py
        ``Deliverer.deliver_batch``): three short transactions per batch, not per
        delivery."""
        now = self.container.clock.now()
        async with self.uow() as uow:
            claimed = await uow.work.claim_deliveries(
                now=now, lease=self.config.lease, limit=self.config.batch
            )
            await uow.commit()
        if not claimed:
            return 0
        await self._deliverer.deliver_batch(
            self.uow(), self.uow(), claimed, concurrency=self.config.webhook_concurrency
        )
        return len(claimed)

    async def run_due_jobs(self) -> int:
        now = self.container.clock.now()
        async with self.uow() as uow:
            claimed = await uow.work.claim_jobs(
                now=now, lease=self.config.lease, limit=self.config.batch
            )
            await uow.commit()
        for job in claimed:
            handler = HANDLERS.get(job.kind)
            error: str | None = None
            again: datetime | None = None
            try:
                if handler is None:
                    raise LookupError(f"no handler for job kind {job.kind!r}")
                again = await handler(self.uow(), job.subject, self.deps)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("job_failed", job=job.key, attempt=job.attempts, error=error)
            finished = self.container.clock.now()
            async with self.uow() as uow:
                if error is None and again is None:
                    await uow.work.finish_job(job.id, now=finished)
                elif error is None and again is not None:
                    await uow.work.retry_job(
                        job.id, run_at=again, error=None, now=finished, give_up=False
                    )
                else:
                    await uow.work.retry_job(
                        job.id,
                        run_at=finished + backoff(job.attempts, self.rng),
                        error=error,
                        now=finished,
                        give_up=job.attempts >= self.config.max_job_attempts,
                    )
                await uow.commit()
        return len(claimed)
