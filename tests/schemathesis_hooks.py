"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/test_api_schemathesis.py.

An offer's terms and a link's amount are held to the balance, today's date and the creditor's
limits, which no JSON Schema can state: for those two operations a schema-valid body may get a
422, but only one that names such a rule. A 422 for anything the document could have said (a
shape, a format, which fields go together) still fails the run."""

from __future__ import annotations

import re
from typing import Any

import schemathesis

OPERATIONS = {"POST /accounts/{account_id}/offers", "POST /accounts/{account_id}/links",
              "POST /conversations/{phone}/messages"}
LEDGER_RULES = re.compile(
    "|".join(
        (
            # the balance
            r"more than the balance", r"less than the balance", r"the balance is zero",
            r"a cent off this balance", r"the account has no (phone|email)",
            # today's date
            r"must not be in the past", r"must be within \d+ days", r"must be a day within",
            r"must be in the future", r"must not be after the first installment",
            r"the first installment must be within",
            # the creditor's limits
            r"must be at most \d+ installments", r"is below the minimum payment",
            # sums and orders of the figures given
            r"do not add up to", r"the installments add up to", r"dates must be in order",
            # an agent's text as it will be sent: its segments, nothing left once look-alikes
            # and invisible characters are made GSM-7, characters no carrier takes
            r"SMS segments", r"the message is empty", r"characters that cannot be sent",
        )
    )
)


@schemathesis.check
def refused_only_for_a_rule_of_the_ledger(ctx: Any, response: Any, case: Any) -> None:
    if case.operation.label not in OPERATIONS or response.status_code != 422:
        return
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    message = str(response.json().get("error", ""))
    if not LEDGER_RULES.search(message):
        raise AssertionError(
            f"a body the document accepts was refused for a rule it could state: {message}"
        )
