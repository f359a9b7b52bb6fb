"""The payment flow's steps that take what a message already said ("pay 50 next friday",
"pay it all on the 15th", "can i do 3 payments"): the slots are kept in the context's
``wanted`` and each step answers its own through its own rules (the minimum, what is open, the
furthest date, a settlement paid today, ``schedule_payment``), or asks its question. The rest of
the flow is asked as ever, and Confirm shows everything before money moves. Pure: no I/O.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from bot.sms.parsing import Meaning, PayIntent
from states.replies import Reply

# What a message that came with its slots left for the steps that ask for them.
AMOUNT_SLOTS = ("amount_cents", "full", "amount_problem")
DATE_SLOTS = ("date", "now", "date_problem")


class SlotSteps:
    """Mixed into PaymentFlow (states/payment.py), whose attributes and triggers it uses."""

    context: dict[str, Any]
    replies: list[Reply]
    account: Any
    state: str
    proved_by: str | None

    def on_enter_amount(self: Any, *_: Any) -> None:
        """The amount a message came with is answered here, by the step's own rules (minimum,
        what is open); without one, the question."""
        wanted = self._take_wanted(AMOUNT_SLOTS)
        if wanted.get("amount_problem"):
            self.replies.append(Reply("did_not_understand", {"reason": wanted["amount_problem"]}))
        elif wanted.get("full"):
            self._answer_amount(Meaning("full"))
            return
        elif wanted.get("amount_cents") is not None:
            self._answer_amount(Meaning("amount", int(wanted["amount_cents"])))
            return
        self.replies.append(self.prompt())

    def on_enter_schedule(self: Any, *_: Any) -> None:
        """The date a message came with is answered here (not past, not beyond the furthest
        date); without one, the question."""
        wanted = self._take_wanted(DATE_SLOTS)
        today = self.account.today
        reason = wanted.get("date_problem")
        if wanted.get("now"):
            self._answer_schedule(Meaning("now"))
            return
        if wanted.get("date") and reason is None:
            day = date.fromisoformat(wanted["date"])
            if day < today:
                reason = "past_date"
            elif day > self.horizon():
                reason = "beyond_horizon"
            else:
                self._answer_schedule(Meaning("date", day))
                return
        if reason:
            self.replies.append(Reply("did_not_understand", {"reason": reason}))
        self.replies.append(self.prompt())

    def on_enter_confirm(self: Any, *_: Any) -> None:
        # A date asked for that this payment cannot have (a settlement is paid today): said,
        # before the check shows "today".
        wanted = self._take_wanted(DATE_SLOTS)
        if wanted.get("date"):
            self.replies.append(
                Reply(
                    "date_not_offered",
                    {"reason": "settlement", "day": date.fromisoformat(wanted["date"])},
                )
            )
        self.replies.append(self.prompt())

    def want(self: Any, intent: PayIntent) -> None:
        """Keep what a message carried for the steps that ask for it. A date this customer
        cannot schedule (the creditor's setting, a knowledge-only proof) is refused at once,
        with the reason."""
        wanted: dict[str, Any] = dict(self.context.get("wanted") or {})
        if intent.has_amount:
            wanted.update(
                amount_cents=intent.amount_cents,
                full=intent.full,
                amount_problem=intent.amount_problem,
            )
        if intent.has_date:
            if intent.day is not None and intent.day > self.account.today and not (
                self.may_schedule()
            ):
                reason = "knowledge" if self.proved_by == "knowledge" else "off"
                self.replies.append(
                    Reply("date_not_offered", {"reason": reason, "day": intent.day})
                )
            else:
                wanted.update(
                    date=intent.day.isoformat() if intent.day else None,
                    now=intent.now,
                    date_problem=intent.date_problem,
                )
        kept = {k: v for k, v in wanted.items() if v is not None and v is not False}
        if kept:
            self.context["wanted"] = kept
        else:
            self.context.pop("wanted", None)

    def _take_wanted(self, slots: tuple[str, ...]) -> dict[str, Any]:
        wanted: dict[str, Any] = dict(self.context.get("wanted") or {})
        taken = {k: wanted.pop(k) for k in slots if k in wanted}
        if wanted:
            self.context["wanted"] = wanted
        else:
            self.context.pop("wanted", None)
        return taken

    def plan_requested(self: Any) -> None:
        """A plan asked for ("can i do 3 payments"): the plan offers where there are any,
        else a clear answer that a person can set one up."""
        if self.has_offers() and any(o.kind == "plan" for o in self.account.offers):
            if self.state == "amount":
                self.back()  # to the offers
            else:
                self.begin()
            return
        self.replies.append(Reply("plan_request_agent", {}))
        self.replies.append(self.prompt())  # the menu, or the amount asked again

