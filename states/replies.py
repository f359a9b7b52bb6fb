"""What a flow says, before anyone renders it: a template name plus its context (rasa-sdk style)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    # The secure link is minted (and its hash stored) only when a reply really carries one.
    needs_link: bool = False
    # A link for one offer (a plan to sign on the web) rather than for the payment flow.
    link_offer_id: int | None = None


@dataclass(frozen=True)
class Effect:
    """A side effect the flow asks for; the conversation engine performs it after the trigger."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
