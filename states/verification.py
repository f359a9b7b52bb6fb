r"""Proving who texts from a number we do not know, before anything about an account is shown.

    new --any--> awaiting_account --account id--> awaiting_code
    awaiting_account --account id, while the number must wait or no code may go out--> (same)
    awaiting_code --wrong answer--> (same), or awaiting_account once the code is spent

In awaiting_code the answer is the code sent to the phone or email on file, or, only for an
account with neither, the last 4 of the SSN and the date of birth. Whether an account exists is
never told: an unknown account id gets the same answers as a real one, whatever happens next.
The engine performs the look-ups, the limits and the sends (bot/accounts/second_factor.py);
this module only decides where the conversation goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transitions import Machine

from states import build_machine as machine_for
from states.replies import Reply

STATES = ["new", "awaiting_account", "awaiting_code"]

READS = {
    "new": "any",
    "awaiting_account": "account_id",
    "awaiting_code": "code",
}

TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "ask_account", "source": STATES, "dest": "awaiting_account", "after": "say_ask"},
    {"trigger": "account_given", "source": "awaiting_account", "dest": "awaiting_code",
     "after": "say_ask"},
    # The engine says why (wrong, spent, wait): neither transition re-prompts.
    {
        "trigger": "answer_wrong",
        "source": "awaiting_code",
        "dest": "awaiting_account",
        "conditions": "code_spent",
    },
    {"trigger": "answer_wrong", "source": "awaiting_code", "dest": None},
    {"trigger": "restart", "source": STATES, "dest": "new"},
]


@dataclass
class VerificationFlow:
    context: dict[str, Any] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    state: str = "new"
    tries_left: int = 3  # of the code (or the SSN + DOB chance) being answered

    def code_spent(self) -> bool:
        return self.tries_left <= 0

    def say_ask(self, *_: Any) -> None:
        self.replies.append(self.prompt())

    def prompt(self) -> Reply:
        if self.state == "awaiting_code":
            return Reply("ask_code", {"tries_left": self.tries_left})
        return Reply("ask_account_id")


def build_machine() -> Machine:
    return machine_for(STATES, TRANSITIONS, initial="new")
