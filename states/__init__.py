"""The flows as data: payment, plan change and verification, each a declarative `transitions`
machine with the conditions that read the settings and the account. Pure: no I/O.

May import: bot.sms.parsing (what a reply means), bot.config.flow, bot.plans.changes (the plan's
rules), bot.security (masking). Never the engine, the ledger or a provider.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine


def build_machine(states: list[Any], transitions: list[Any], *, initial: str) -> Machine:
    """One machine per flow for the whole process, holding no model: each message adds its
    conversation with `add_model` and removes it after, so nothing outlives a turn."""
    return Machine(
        model=None,
        states=states,
        transitions=transitions,
        initial=initial,
        auto_transitions=False,
        send_event=False,
    )
