r"""Proving who texts from a number we do not know, before anything about an account is shown.

    new --any--> awaiting_account --account id--> awaiting_code (code to phone/email on file)
                                               \-> awaiting_knowledge (no contact: SSN last 4 + DOB)
    awaiting_code / awaiting_knowledge --wrong answer--> (same state), or locked after the last try
    locked --lock expired--> awaiting_account

Whether an account exists is never told: an unknown account id gets the same answer as a real one.
The engine performs the look-ups; this module only decides where the conversation goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transitions import Machine

from states.replies import Reply

STATES = ["new", "awaiting_account", "awaiting_code", "awaiting_knowledge", "locked"]

READS = {
    "new": "any",
    "awaiting_account": "account_id",
    "awaiting_code": "code",
    "awaiting_knowledge": "code",
    "locked": "any",
}

TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "ask_account", "source": ["new", "locked"], "dest": "awaiting_account"},
    {
        "trigger": "account_given",
        "source": "awaiting_account",
        "dest": "awaiting_knowledge",
        "conditions": "knowledge_only",
    },
    {"trigger": "account_given", "source": "awaiting_account", "dest": "awaiting_code"},
    {
        "trigger": "answer_wrong",
        "source": ["awaiting_code", "awaiting_knowledge"],
        "dest": "locked",
        "conditions": "out_of_tries",
    },
    # An internal transition (dest None): the engine says how many tries are left, no re-prompt.
    {"trigger": "answer_wrong", "source": ["awaiting_code", "awaiting_knowledge"], "dest": None},
    {"trigger": "restart", "source": STATES, "dest": "new"},
]


@dataclass
class VerificationFlow:
    context: dict[str, Any] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    state: str = "new"
    has_contact_on_file: bool = False
    tries_left: int = 3

    def knowledge_only(self) -> bool:
        return not self.has_contact_on_file

    def out_of_tries(self) -> bool:
        return self.tries_left <= 0

    def on_enter_awaiting_account(self, *_: Any) -> None:
        self.replies.append(Reply("ask_account_id"))

    def on_enter_awaiting_code(self, *_: Any) -> None:
        self.replies.append(self.prompt())

    on_enter_awaiting_knowledge = on_enter_awaiting_code

    def on_enter_locked(self, *_: Any) -> None:
        self.replies.append(Reply("verification_locked"))

    def prompt(self) -> Reply:
        if self.state == "awaiting_code":
            return Reply("ask_code", {"tries_left": self.tries_left})
        if self.state == "awaiting_knowledge":
            return Reply("ask_knowledge", {"tries_left": self.tries_left})
        if self.state == "locked":
            return Reply("verification_locked")
        return Reply("ask_account_id")


def build_machine() -> Machine:
    return Machine(
        model=None,
        states=STATES,
        transitions=TRANSITIONS,
        initial="new",
        auto_transitions=False,
    )
