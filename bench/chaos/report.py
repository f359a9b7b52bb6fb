"""The run's figures (a dict, written as JSON with --json) and the table printed from them, the
one docs/reliability.md keeps.

Imports the standard library, SQLAlchemy and bot.ledger (counts), bench.chaos."""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.chaos.faults import KINDS, FaultEvent

ROOT = Path(__file__).resolve().parents[2]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


async def _ledger(database_url: str) -> dict[str, Any]:
    from sqlalchemy import text

    from bot.ledger.db import Database

    database = Database(database_url)
    try:
        async with database.session() as session:
            rows = (await session.execute(text(
                "SELECT status, channel, (plan_id IS NOT NULL) AS installment, count(*), "
                "coalesce(sum(amount_cents), 0) FROM payments GROUP BY 1, 2, 3"))).all()
            messages = (await session.execute(text(
                "SELECT direction, count(*) FROM messages GROUP BY 1"))).all()
            emails = (await session.execute(text(
                "SELECT status, count(*) FROM outbound_emails GROUP BY 1"))).all()
    finally:
        await database.close()
    by_status: Counter[str] = Counter()
    by_channel: Counter[str] = Counter()
    cents: Counter[str] = Counter()
    installments: Counter[str] = Counter()
    for status, channel, installment, count, amount in rows:
        by_status[status] += count
        cents[status] += int(amount)
        if installment:
            installments[status] += count
        else:
            by_channel[f"{channel} {status}"] += count
    return {"payments_by_status": dict(by_status), "cents_by_status": dict(cents),
            "one_off_by_channel_and_status": dict(by_channel),
            "installments_by_status": dict(installments),
            "messages_by_direction": {d: c for d, c in messages},
            "emails_by_status": {s: c for s, c in emails}}


def _latencies(stats: Any, events: list[FaultEvent]) -> dict[str, Any]:
    """Per webhook attempt that was answered: overall, and within a fault (from its start
    until it recovered, or for 30 s after its repair when it did not within the limit)."""
    attempts = [(a.started, a.seconds) for record in (stats.records if stats else [])
                for a in record.attempts if a.status == 200]
    windows = [(e.started, e.recovered or e.repaired + 30.0) for e in events]
    during = [seconds for at, seconds in attempts
              if any(start <= at <= end for start, end in windows)]
    calm = [seconds for at, seconds in attempts
            if not any(start <= at <= end for start, end in windows)]

    def summary(values: list[float]) -> dict[str, Any]:
        return {"count": len(values),
                "p50_ms": _ms(_percentile(values, 0.50)), "p99_ms": _ms(_percentile(values, 0.99)),
                "max_ms": _ms(max(values) if values else None)}

    return {"all": summary([s for _, s in attempts]), "during_faults": summary(during),
            "outside_faults": summary(calm)}


def _load(stats: Any) -> dict[str, Any]:
    """The customers' counters (bench.chaos.customers.LoadStats), records left out."""
    if stats is None:
        return {}
    out: dict[str, Any] = {}
    for item in dataclasses.fields(stats):
        value = getattr(stats, item.name)
        if item.name == "records":
            continue
        out[item.name] = dict(value) if isinstance(value, Counter) else value
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _faults(events: list[FaultEvent]) -> dict[str, Any]:
    by_kind: dict[str, list[FaultEvent]] = defaultdict(list)
    for event in events:
        by_kind[event.kind].append(event)
    out: dict[str, Any] = {}
    for kind in KINDS:
        happened = by_kind.get(kind, [])
        recoveries = [e.recovery_seconds for e in happened if e.recovery_seconds is not None]
        out[kind] = {
            "count": len(happened),
            "not_recovered": sum(1 for e in happened if e.recovery_seconds is None),
            "recovery_mean_s": round(statistics.mean(recoveries), 2) if recoveries else None,
            "recovery_max_s": round(max(recoveries), 2) if recoveries else None,
            "targets": [e.target for e in happened if e.target],
        }
    return out


async def figures(*, stage: Any, stats: Any, events: list[FaultEvent], checks: list[Any],
                  proxy: Any, fleet: Any, exits: dict[str, int], settled: dict[str, Any],
                  load_seconds: float, args: Any) -> dict[str, Any]:
    invariants = [{"name": c.name, "examined": c.examined, "violations": list(c.violations),
                   "notes": list(getattr(c, "notes", []))} for c in checks]
    crashes = {m.name: m.crashes for m in fleet.members if m.crashes}
    unrecovered = sum(1 for e in events if e.recovery_seconds is None)
    violations = sum(len(c["violations"]) for c in invariants)
    return {
        "run": {"commit": _commit(), "seed": args.seed, "minutes": args.minutes,
                "customers": args.customers, "faults": not args.no_faults,
                "load_seconds": round(load_seconds, 1)},
        "load": _load(stats),
        "latency": _latencies(stats, events),
        "ledger": await _ledger(stage.database_url),
        "stripe": dataclasses.asdict(proxy) | {"charges_seen": len(stage.charges)},
        "texts_sent": len(stage.twilio.messages),
        "emails_accepted": len(stage.sendgrid.messages),
        "faults": _faults(events),
        "processes": {"starts": {m.name: m.starts for m in fleet.members},
                      "unexpected_exits": crashes, "exit_codes_on_sigterm": exits},
        "settled": settled,
        "invariants": invariants,
        # Not a recovery or an unexpected exit is a finding too; the target is 0 of each.
        "violations": violations,
        "unrecovered_faults": unrecovered,
    }


def table(f: dict[str, Any]) -> str:
    """The figures as the Markdown table docs/reliability.md keeps, then the details."""
    run, load, lat = f["run"], f["load"], f["latency"]
    lines = [
        f"### Chaos run: {run['minutes']:g} min, {run['customers']} customers, seed "
        f"{run['seed']}, commit {run['commit']}",
        "",
        "| what | figure |",
        "| --- | --- |",
    ]
    for key, value in load.items():
        lines.append(f"| {key.replace('_', ' ')} | {value} |")
    ledger = f["ledger"]
    lines += [
        f"| payments by status | {_inline(ledger['payments_by_status'])} |",
        f"| plan installments by status | {_inline(ledger['installments_by_status'])} |",
        f"| one-off payments by channel | {_inline(ledger['one_off_by_channel_and_status'])} |",
        f"| texts sent (Twilio API) / emails accepted (SendGrid) | {f['texts_sent']} / "
        f"{f['emails_accepted']} |",
        f"| emails by status | {_inline(ledger['emails_by_status'])} |",
        f"| Stripe: charges / replays of a key / 500s / hangs | {f['stripe']['charges_seen']} / "
        f"{f['stripe']['replayed']} / {f['stripe']['refused_500']} / {f['stripe']['hung']} |",
        f"| Stripe events: received / twice / out of order / max delay | "
        f"{f['stripe']['events_received']} / {f['stripe']['delivered_twice']} / "
        f"{f['stripe']['delivered_out_of_order']} / {f['stripe']['max_event_delay']:.1f} s |",
        f"| webhook latency p50 / p99, all | {lat['all']['p50_ms']} / {lat['all']['p99_ms']} ms |",
        f"| webhook latency p50 / p99, during faults | {lat['during_faults']['p50_ms']} / "
        f"{lat['during_faults']['p99_ms']} ms |",
        f"| settled after the load | {f['settled']['seconds']} s; left with the live workers: "
        f"{_inline(f['settled']['left_with_live_workers'])}; after the later passes: "
        f"{_inline(f['settled']['left'])} |",
        "",
        "| fault | count | recovery mean / max (s) | not recovered |",
        "| --- | --- | --- | --- |",
    ]
    for kind, row in f["faults"].items():
        lines.append(f"| {kind} | {row['count']} | {row['recovery_mean_s']} / "
                     f"{row['recovery_max_s']} | {row['not_recovered']} |")
    lines += ["", "| invariant | examined | violations | notes |", "| --- | --- | --- | --- |"]
    for check in f["invariants"]:
        lines.append(f"| {check['name']} | {check['examined']} | {len(check['violations'])} | "
                     f"{len(check.get('notes', []))} |")
    lines.append(f"| **total** | | **{f['violations']}** | |")
    for check in f["invariants"]:
        for violation in check["violations"][:20]:
            lines.append(f"- {check['name']}: {violation}")
    for check in f["invariants"]:
        for note in check.get("notes", [])[:5]:
            lines.append(f"- note, {check['name']}: {note}")
    if f["processes"]["unexpected_exits"]:
        lines.append(f"- unexpected exits: {f['processes']['unexpected_exits']}")
    return "\n".join(lines)


def _inline(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
