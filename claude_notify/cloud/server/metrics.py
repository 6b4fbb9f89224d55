"""Prometheus metrics, one registry per running server (tests build many servers in one process).

Counters are kept by the process that sees the fact: the API counts events and rejections, the
worker counts outcomes and latency. Queue depth is read from the database at scrape time, so
every replica reports the same, true number.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from claude_notify.cloud.server.db.models import Delivery, DeliveryStatus
from claude_notify.events import utcnow

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 21600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._watching = False
        r = self.registry
        self.events = Counter(
            "claude_notify_events_received", "Task events accepted", ["type"], registry=r
        )
        self.duplicates = Counter(
            "claude_notify_events_duplicate", "Task events replayed by event_id", registry=r
        )
        self.notifications = Counter(
            "claude_notify_notifications",
            "Notifications by channel and outcome (sent, retry, dead, rejected)",
            ["channel", "outcome"],
            registry=r,
        )
        self.quota_rejections = Counter(
            "claude_notify_quota_rejections",
            "Notifications refused by plan or quota",
            ["channel"],
            registry=r,
        )
        self.latency = Histogram(
            "claude_notify_delivery_latency_seconds",
            "From the notification's creation to the provider accepting it",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.signature_failures = Counter(
            "claude_notify_webhook_signature_failures",
            "Inbound webhook calls refused for a wrong or missing signature or secret",
            ["provider"],
            registry=r,
        )
        self.approval_link_refusals = Counter(
            "claude_notify_approval_link_refusals",
            "E-mailed approval links refused: a wrong key (or no such request), or a client "
            "past its allowance of wrong keys",
            ["reason"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "claude_notify_delivery_attempt_seconds",
            "Duration of one send attempt",
            ["channel"],
            registry=r,
        )

    def watch_queue(self, sessions: sessionmaker[Session]) -> None:
        """Report outbox depth (pending, sending) from the database on every scrape."""
        if not self._watching:
            self.registry.register(_QueueDepth(sessions))
            self._watching = True


class _QueueDepth(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def describe(self) -> list[Metric]:
        return [_depth_family(), _age_family()]

    def collect(self) -> Iterator[Metric]:
        family = _depth_family()
        counts: dict[str, int] = {DeliveryStatus.PENDING: 0, DeliveryStatus.SENDING: 0}
        now = utcnow()
        try:
            with self.sessions() as session:
                rows = session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.status.in_(tuple(counts)))
                    .group_by(Delivery.status)
                )
                counts.update(dict(rows.all()))
                # Due and not yet taken: a retry still waiting out its backoff is not late.
                oldest = session.scalar(
                    select(func.min(Delivery.next_attempt_at)).where(
                        Delivery.status == DeliveryStatus.PENDING,
                        Delivery.next_attempt_at <= now,
                    )
                )
        except SQLAlchemyError:
            return
        for status, count in counts.items():
            family.add_metric([status], count)
        yield family
        age = _age_family()
        age.add_metric([], (now - oldest).total_seconds() if oldest is not None else 0.0)
        yield age


def _depth_family() -> GaugeMetricFamily:
    return GaugeMetricFamily("claude_notify_queue_depth", "Deliveries waiting", labels=["status"])


def _age_family() -> GaugeMetricFamily:
    # Rises when no worker takes due deliveries (workers down, stuck or too few), whatever
    # the depth: a few old rows matter more than many fresh ones.
    return GaugeMetricFamily(
        "claude_notify_queue_oldest_due_seconds",
        "How long the oldest due delivery has waited for a worker (0 when none)",
    )
