"""What PayBot counts, for Prometheus (prometheus-client): every metric defined here, once.

The modules where events happen (the engine, the webhooks, the payment service, the worker, the
ledger's opt-outs) import only this module and add one line where the event happens; nothing here
touches the database or the network, so the hot path pays a counter increment and no more. What
describes the ledger (backlogs, waits, lag) is not counted here but read at scrape time
(`bot/operations/scrape.py`) and handed to `exposition` as ready-made families.

Names follow Prometheus's conventions: the `paybot_` prefix, `_total` on counters, base units
(`_seconds`). With `paybot serve --workers N` each process writes its samples to files under
`PROMETHEUS_MULTIPROC_DIR` (set by the parent before the processes start) and a scrape answered
by any of them adds up all (`MultiProcessCollector`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# No `_created` series beside each counter: a timestamp per label set doubles what is stored and
# says nothing a dashboard uses (`rate()` handles restarts by itself).
disable_created_metrics()
# The classic text format every Prometheus reads (our names are all plain ASCII).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

INBOUND_MESSAGES = Counter(
    "paybot_inbound_messages", "Inbound customer messages stored, by channel.", ["channel"]
)
TURNS = Counter(
    "paybot_turns",
    "Conversation turns by outcome: answered, duplicate (a MessageSid seen before, answered from "
    "the ledger) or failed (an error; the message is stored and a retry processes it).",
    ["outcome"],
)
TURN_SECONDS = Histogram(
    "paybot_turn_duration_seconds",
    "Time to answer one inbound message, from storing it to the reply (emails sent after).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
)
PAYMENTS = Counter(
    "paybot_payments",
    "Payments submitted by customers (SMS, web) and the API, by the status they had when the "
    "request returned (paid, pending, processing, scheduled, declined), and channel.",
    ["status", "channel"],
)
PROCESSOR_ERRORS = Counter(
    "paybot_processor_errors",
    "Payment processor calls that failed: unavailable (timeout, 5xx: retried), refused (4xx: "
    "recorded declined) or fault (an unexpected error: the worker asks again).",
    ["kind"],
)
WORKER_DUE = Counter(
    "paybot_worker_payments_due", "Due payments the worker found, summed over its passes."
)
WORKER_CLAIMED = Counter(
    "paybot_worker_payments_claimed",
    "Payments the worker claimed to charge (due ones, and unconfirmed ones taken again).",
)
WORKER_CHARGED = Counter(
    "paybot_worker_payments_charged",
    "Worker charges by outcome: paid, pending, declined, unavailable (left for the next pass).",
    ["status"],
)
OPT_OUTS = Counter(
    "paybot_opt_outs", "Numbers opted out (STOP and its synonyms, the carrier's 21610).",
    ["channel"],
)
WEBHOOK_VERIFICATION_FAILURES = Counter(
    "paybot_webhook_verification_failures",
    "Webhooks refused for a missing, wrong or stale signature, by provider.",
    ["provider"],
)


# Every series whose labels are known in advance exists from the start, at 0: a rate or an
# alert over it works before the first event (Prometheus's advice), and the dashboard's queries
# all find their series.
for _channel in ("sms", "web"):
    INBOUND_MESSAGES.labels(_channel)
for _outcome in ("answered", "duplicate", "failed"):
    TURNS.labels(_outcome)
for _kind in ("unavailable", "refused", "fault"):
    PROCESSOR_ERRORS.labels(_kind)
for _status in ("paid", "pending", "declined", "unavailable"):
    WORKER_CHARGED.labels(_status)
for _provider in ("twilio", "stripe", "paypal", "sendgrid"):
    WEBHOOK_VERIFICATION_FAILURES.labels(_provider)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR))


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(ledger_families: Iterable[Metric] = ()) -> bytes:
    """The text exposition of this process's metrics (or, in multiprocess mode, every
    process's), followed by the families read from the ledger at scrape time."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    return counted + generate_latest(_Families(ledger_families))  # type: ignore[arg-type]


def mark_process_dead(pid: int) -> None:
    """A stopped process's live-gauge files are dropped (its counters stay counted)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)
