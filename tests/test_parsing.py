"""The reply parser: every line of tests/data/sms_replies.tsv, plus cases the corpus can't say.

The corpus is read when the tests are collected, so a line added to the TSV is tested
without touching this file.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import pkgutil
import random
import time
from pathlib import Path

import pytest

from bot.sms import parsing
from bot.sms.parsing import (
    KINDS,
    REASONS,
    STEPS,
    Meaning,
    PayIntent,
    classify_keyword,
    parse_reply,
)

CORPUS = Path(__file__).parent / "data" / "sms_replies.tsv"
TODAY = datetime.date(2026, 11, 25)  # a Wednesday, as the corpus says
HORIZON = datetime.date(2027, 2, 23)
CORPUS_STEPS = {"any", "confirm", "agree", "amount", "date", "menu", "contact", "plan", "idle"}
KEYWORD_KINDS = {
    "opt_out", "opt_in", "help", "agent", "balance", "link", "menu", "plan", "ask_agent"
}


def _load_corpus() -> list[tuple[int, str, str, str]]:
    rows = []
    for lineno, line in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if cols == ["step", "message", "meaning"]:
            continue
        assert len(cols) == 3, f"line {lineno}: expected 3 tab-separated columns: {line!r}"
        rows.append((lineno, *cols))
    return rows


ROWS = _load_corpus()


def _expected(meaning: str) -> Meaning:
    kind, _, value = meaning.partition(":")
    if kind == "amount":
        return Meaning("amount", int(value))
    if kind == "date":
        return Meaning("date", datetime.date.fromisoformat(value))
    if kind == "choice":
        return Meaning("choice", int(value))
    if kind == "email":
        return Meaning("email", value)
    if kind == "plan_extra" and value:
        return Meaning("plan_extra", int(value))
    if kind == "plan_request":
        return Meaning("plan_request", int(value) if value else None)
    if kind == "pay" and value:
        return Meaning("pay", _intent(value))
    assert not value, (
        f"{meaning!r}: only amount, date, choice, email, plan_extra, plan_request, pay have a value"
    )
    return Meaning(kind)


def _intent(value: str) -> PayIntent:
    """AMOUNT@DATE: AMOUNT cents, full, empty or !REASON; DATE YYYY-MM-DD, now or !REASON."""
    amount, _, when = value.partition("@")
    return PayIntent(
        amount_cents=int(amount) if amount.isdigit() else None,
        full=amount == "full",
        amount_problem=amount[1:] if amount.startswith("!") else None,
        day=datetime.date.fromisoformat(when) if when[:1].isdigit() else None,
        now=when == "now",
        date_problem=when[1:] if when.startswith("!") else None,
    )


def _parse(text: str, step: str, **kw) -> Meaning:
    kw.setdefault("today", TODAY)
    kw.setdefault("horizon", HORIZON)
    kw.setdefault("menu_size", 3)
    kw.setdefault("skip_option", 3)
    return parse_reply(text, step, **kw)


# --------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------


def test_corpus_is_well_formed():
    assert len(ROWS) >= 140
    for lineno, step, message, meaning in ROWS:
        assert step in CORPUS_STEPS, f"line {lineno}: unknown step {step!r}"
        assert message == message.strip() or not message.strip(), f"line {lineno}: stray spaces"
        assert _expected(meaning).kind in KINDS, f"line {lineno}: unknown meaning {meaning!r}"


@pytest.mark.parametrize(
    ("lineno", "step", "message", "meaning"),
    ROWS,
    ids=[f"L{r[0]}-{r[1]}-{r[2]}" for r in ROWS],
)
def test_corpus_line(lineno, step, message, meaning):
    got = _parse(message, step)
    expected = _expected(meaning)
    if expected.kind == "invalid":
        assert got.kind == "invalid", f"line {lineno}: {message!r} read as {got}"
        assert got.reason in REASONS
    else:
        assert got == expected, f"line {lineno}: {message!r}"
    if step == "any":  # keywords: classify_keyword says the same on its own
        assert classify_keyword(message) == expected


# --------------------------------------------------------------------------------------
# Keywords
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("STOP", "opt_out"),
        ("  Stop.  ", "opt_out"),
        ("unsubscribe", "opt_out"),
        ("no more texts", "opt_out"),
        ("HELP", "help"),
        ("agent", "agent"),
        ("BALANCE", "balance"),
        ("LINK", "link"),
        ("MENU", "menu"),
        ("PLAN", "plan"),
        ("START", "opt_in"),
        ("this is not my debt", "dispute"),
        ("wrong number", "wrong_number"),
        ("i lost my job", "hardship"),
    ],
)
def test_keywords_work_in_every_step(step, text, kind):
    assert _parse(text, step).kind == kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ＳＴＯＰ", "opt_out"),  # full-width letters
        ("st\u200bop", "opt_out"),  # zero-width space inside
        ("stooooop", "opt_out"),
        ("S T O P", "opt_out"),
        ("STOP STOP", "opt_out"),
        ("🛑", "opt_out"),
        ("Stop！", "opt_out"),
        ("PARAR", "opt_out"),
        ("No mas mensajes por favor", "opt_out"),
        ("no me envíen más", "opt_out"),
        ("cancel please", "opt_out"),
        ("END", "opt_out"),
        ("cancel it", "ask_agent"),  # may be "cancel the payment": a person decides
        ("stop harassing me", "ask_agent"),
        ("my lawyer will call you", "ask_agent"),
        ("I already paid this, stop", "ask_agent"),
        ("opt in", "opt_in"),
        ("unstop", "opt_in"),
        ("start over", "menu"),
        ("info", "help"),
        ("how much is left", "balance"),
        ("are you a bot", "agent"),
    ],
)
def test_keyword_variants(text, kind):
    assert classify_keyword(text) == Meaning(kind)


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "no", "not now", "yes", "50", "$50", "friday", "end of the month",
        "full balance", "maria@example.com", "stop@example.com", "help@example.com",
        "https://pay.example/p/Xy7Qk2", "quit my job so I can only pay 20", "1", "skip",
    ],
)
def test_not_a_keyword(text):
    assert classify_keyword(text) is None


def test_clear_opt_out_wins_over_a_complaint():
    # Honoured at once; the message itself is kept for the people who read complaints.
    assert classify_keyword("stop texting me, this is a scam").kind == "opt_out"
    assert classify_keyword("who is this? stop harassing me").kind == "ask_agent"


# --------------------------------------------------------------------------------------
# Yes / no / agree / contact
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "step", "expected"),
    [
        ("yes no", "confirm", Meaning("invalid", reason="ambiguous")),
        ("maybe", "confirm", Meaning("invalid", reason="not_understood")),
        ("😀", "confirm", Meaning("invalid", reason="not_understood")),
        ("pay", "confirm", Meaning("yes")),
        ("yes", "any", Meaning("yes")),
        ("wait", "any", Meaning("no")),
        ("I do not agree", "agree", Meaning("no")),
        ("yes I agree to the terms and conditions", "agree", Meaning("agree")),
        ("what am I signing", "agree", Meaning("link")),
        ("same", "contact", Meaning("yes")),
        ("wrong", "contact", Meaning("no")),
        ("a@b.com or c@d.com", "contact", Meaning("invalid", reason="ambiguous")),
        ("maria@", "contact", Meaning("invalid", reason="bad_email")),
        ("maria.newexample.com", "contact", Meaning("invalid", reason="bad_email")),
        ("<Maria@Example.com>", "contact", Meaning("email", "maria@example.com")),
        ("stop@example.com", "contact", Meaning("email", "stop@example.com")),
        ("info@acme.com", "contact", Meaning("email", "info@acme.com")),
    ],
)
def test_yes_no_agree_contact(text, step, expected):
    assert _parse(text, step) == expected


# --------------------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$50.5", Meaning("amount", 5050)),
        ("fifty dollars", Meaning("amount", 5000)),
        ("fifty five dollars and twenty cents", Meaning("amount", 5520)),
        ("cincuenta dolares", Meaning("amount", 5000)),
        ("５０", Meaning("amount", 5000)),  # full-width digits
        ("2k", Meaning("amount", 200000)),
        (".50", Meaning("amount", 50)),
        ("12.340", Meaning("amount", 1234)),  # a trailing zero is not a third decimal
        ("$50 $50", Meaning("amount", 5000)),  # the same number twice is one number
        ("$50 tomorrow at 3pm", Meaning("amount", 5000)),
        ("50 on 12/15", Meaning("amount", 5000)),
        ("0.01", Meaning("amount", 1)),
        ("$1,000,000.00", Meaning("amount", 100_000_000)),
        ("pay it off", Meaning("full")),
        ("the rest", Meaning("full")),
        ("all", Meaning("full")),
        ("no", Meaning("no")),
        ("-5", Meaning("invalid", reason="not_positive")),
        ("$-5", Meaning("invalid", reason="not_positive")),
        ("negative 20", Meaning("invalid", reason="not_positive")),
        ("$0", Meaning("invalid", reason="not_positive")),
        ("zero", Meaning("invalid", reason="not_positive")),
        ("12.345", Meaning("invalid", reason="too_many_decimals")),
        ("50 or 60", Meaning("invalid", reason="ambiguous")),
        ("50-60", Meaning("invalid", reason="ambiguous")),
        ("abc", Meaning("invalid", reason="not_understood")),
        ("$", Meaning("invalid", reason="not_understood")),
        ("not all", Meaning("invalid", reason="not_understood")),
        ("NaN", Meaning("invalid", reason="not_understood")),
        ("Infinity", Meaning("invalid", reason="not_understood")),
        ("٥٠", Meaning("invalid", reason="not_understood")),  # other scripts' digits
        ("99999999", Meaning("invalid", reason="too_large")),
        ("$1,000,000.01", Meaning("invalid", reason="too_large")),
        ("9" * 500, Meaning("invalid", reason="too_large")),
    ],
)
def test_amounts(text, expected):
    assert _parse(text, "amount") == expected


def test_amounts_are_integer_cents():
    for text in ["1250.5", "$25.99", "0.29", "19.99", "1,250.50", "0.07"]:
        got = _parse(text, "amount")
        assert got.kind == "amount" and type(got.value) is int
    assert _parse("0.29", "amount").value == 29  # float(0.29) * 100 is 28.999...
    assert _parse("19.99", "amount").value == 1999


# --------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("next friday", Meaning("date", datetime.date(2026, 12, 4))),
        ("this wednesday", Meaning("now")),  # today is a Wednesday
        ("wednesday", Meaning("date", datetime.date(2026, 12, 2))),
        ("next wednesday", Meaning("date", datetime.date(2026, 12, 2))),
        ("friday next week", Meaning("date", datetime.date(2026, 12, 4))),
        ("el próximo viernes", Meaning("date", datetime.date(2026, 12, 4))),
        ("a week from friday", Meaning("date", datetime.date(2026, 12, 4))),
        ("this weekend", Meaning("date", datetime.date(2026, 11, 28))),
        ("in a fortnight", Meaning("date", datetime.date(2026, 12, 9))),  # dateparser
        ("3 days from now", Meaning("date", datetime.date(2026, 11, 28))),
        ("next month", Meaning("date", datetime.date(2026, 12, 25))),
        ("the 15th of december", Meaning("date", datetime.date(2026, 12, 15))),
        ("december the 15th", Meaning("date", datetime.date(2026, 12, 15))),
        ("on the 15", Meaning("date", datetime.date(2026, 12, 15))),
        ("the 25th", Meaning("now")),  # the next 25th on or after today is today
        ("01/05/27", Meaning("date", datetime.date(2027, 1, 5))),
        ("dec 15 at 3pm", Meaning("date", datetime.date(2026, 12, 15))),
        ("no", Meaning("no")),
        ("yesterday", Meaning("invalid", reason="past_date")),
        ("11/20", Meaning("invalid", reason="past_date")),
        ("last friday", Meaning("invalid", reason="past_date")),
        ("9/15", Meaning("invalid", reason="beyond_horizon")),  # > 60 days ago: next year
        ("6/1/2027", Meaning("invalid", reason="beyond_horizon")),
        ("next year", Meaning("invalid", reason="beyond_horizon")),
        ("someday", Meaning("invalid", reason="not_understood")),
        ("not now", Meaning("invalid", reason="not_understood")),
        ("I can't pay today", Meaning("invalid", reason="not_understood")),
        ("13/45", Meaning("invalid", reason="not_understood")),
        ("50", Meaning("invalid", reason="not_understood")),
        ("friday 12/4", Meaning("invalid", reason="ambiguous")),
    ],
)
def test_dates(text, expected):
    assert _parse(text, "date") == expected


def test_without_horizon_any_future_date_is_fine():
    got = parse_reply("6/1/2027", "date", today=TODAY)
    assert got == Meaning("date", datetime.date(2027, 6, 1))


@pytest.mark.parametrize(
    ("today", "friday", "next_friday"),
    [
        # Monday .. Sunday of the week of 2026-11-23. "friday" is the next Friday after
        # today; "next friday" is the Friday of the following calendar week.
        (datetime.date(2026, 11, 23), datetime.date(2026, 11, 27), datetime.date(2026, 12, 4)),
        (datetime.date(2026, 11, 25), datetime.date(2026, 11, 27), datetime.date(2026, 12, 4)),
        (datetime.date(2026, 11, 27), datetime.date(2026, 12, 4), datetime.date(2026, 12, 4)),
        (datetime.date(2026, 11, 28), datetime.date(2026, 12, 4), datetime.date(2026, 12, 4)),
        (datetime.date(2026, 11, 29), datetime.date(2026, 12, 4), datetime.date(2026, 12, 4)),
    ],
)
def test_next_friday_through_the_week(today, friday, next_friday):
    assert parse_reply("friday", "date", today=today) == Meaning("date", friday)
    assert parse_reply("next friday", "date", today=today) == Meaning("date", next_friday)


def test_month_day_without_year_around_new_year():
    dec28 = datetime.date(2026, 12, 28)
    assert parse_reply("1/5", "date", today=dec28) == Meaning("date", datetime.date(2027, 1, 5))
    assert parse_reply("12/20", "date", today=dec28).reason == "past_date"
    assert parse_reply("the 3rd", "date", today=dec28) == Meaning(
        "date", datetime.date(2027, 1, 3)
    )
    feb1 = datetime.date(2027, 2, 1)
    # February has no 31st: the next 31st is in March
    assert parse_reply("the 31st", "date", today=feb1) == Meaning(
        "date", datetime.date(2027, 3, 31)
    )
    # Feb 29 waits for a leap year
    assert parse_reply("2/29", "date", today=feb1) == Meaning("date", datetime.date(2028, 2, 29))


def test_today_is_a_parameter():
    assert parse_reply("tomorrow", "date", today=datetime.date(2030, 6, 30)) == Meaning(
        "date", datetime.date(2030, 7, 1)
    )
    # parsing is a package: read every module of it, not only its __init__.
    source = "".join(
        inspect.getsource(importlib.import_module(f"{parsing.__name__}.{m.name}"))
        for m in pkgutil.iter_modules(parsing.__path__)
    ) + inspect.getsource(parsing)
    for clock_read in ("date.today()", ".now(", ".utcnow()", "time.time()", "monotonic()"):
        assert clock_read not in source


# --------------------------------------------------------------------------------------
# Menu
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("the last one", {}, Meaning("choice", 3)),
        ("3rd", {}, Meaning("choice", 3)),
        ("neither", {}, Meaning("choice", 3)),
        ("no", {}, Meaning("no")),
        ("1 or 2", {}, Meaning("invalid", reason="ambiguous")),
        ("5", {}, Meaning("invalid", reason="no_such_option")),
        ("12345", {}, Meaning("invalid", reason="no_such_option")),
        ("skip", {"skip_option": None}, Meaning("invalid", reason="no_such_option")),
        ("3", {"menu_size": 2, "skip_option": None}, Meaning("invalid", reason="no_such_option")),
        ("3", {"menu_size": 2, "skip_option": 3}, Meaning("choice", 3)),
        ("skip", {"menu_size": 4, "skip_option": 4}, Meaning("choice", 4)),
        ("option 4", {"menu_size": 4, "skip_option": None}, Meaning("choice", 4)),
    ],
)
def test_menu(text, kwargs, expected):
    assert _parse(text, "menu", **kwargs) == expected


# --------------------------------------------------------------------------------------
# Account ID, code, knowledge answer, free text
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ACC-10042", Meaning("text", "ACC-10042")),
        ("my account is ACC-10042", Meaning("text", "ACC-10042")),
        ("Account #: 10042", Meaning("text", "10042")),
        ("#10042.", Meaning("text", "10042")),
        ("it's 10042", Meaning("text", "10042")),
        ("nope", Meaning("invalid", reason="not_understood")),  # an ID has a digit
        ("hello", Meaning("greeting")),  # answered with the question, no apology
        ("12", Meaning("invalid", reason="not_understood")),
        ("A" * 41 + "1", Meaning("invalid", reason="not_understood")),
        ("ACC 10042", Meaning("invalid", reason="not_understood")),
        ("'; DROP TABLE accounts;--", Meaning("invalid", reason="not_understood")),
        ("123-45-6789", Meaning("invalid", reason="looks_like_ssn")),
    ],
)
def test_account_id(text, expected):
    assert _parse(text, "account_id") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123456", Meaning("text", "123456")),
        ("123 456", Meaning("text", "123456")),
        ("my code is 123-456", Meaning("text", "123456")),
        ("Code: 4821", Meaning("text", "4821")),
        ("12345678", Meaning("text", "12345678")),
        ("1234 01/31/1980", Meaning("text", "1234|1980-01-31")),
        ("1234, 1/31/80", Meaning("text", "1234|1980-01-31")),
        ("last 4 1234 dob 01/31/1980", Meaning("text", "1234|1980-01-31")),
        ("01/31/1980 1234", Meaning("text", "1234|1980-01-31")),
        ("1234 1980-01-31", Meaning("text", "1234|1980-01-31")),
        ("1234 January 31, 1980", Meaning("text", "1234|1980-01-31")),
        ("123", Meaning("invalid", reason="not_understood")),
        ("123456789", Meaning("invalid", reason="not_understood")),
        ("1234 13/45/1980", Meaning("invalid", reason="not_understood")),
        ("1234 01/31/2030", Meaning("invalid", reason="not_understood")),  # born in the future
        ("12345 01/31/1980", Meaning("invalid", reason="not_understood")),
        ("abc", Meaning("invalid", reason="not_understood")),
    ],
)
def test_code(text, expected):
    assert _parse(text, "code") == expected


def test_text_step():
    assert _parse("  I moved   last year ", "text") == Meaning("text", "I moved last year")
    # ("I lost my job" is a keyword now: hardship, handed to a person in every step)
    assert _parse("I lost my job", "text") == Meaning("hardship")
    assert _parse("STOP", "text") == Meaning("opt_out")


# --------------------------------------------------------------------------------------
# Bad input never raises
# --------------------------------------------------------------------------------------

JUNK = [
    "",
    " \t\n ",
    "\u200b\u200b",
    "😀😀😀",
    "🤷\u200d♀️",
    "привет, как дела",
    "你好",
    "مرحبا ٥٠",
    "'; DROP TABLE payments;--",
    "<script>alert(1)</script>",
    "{{ 7*7 }} ${7*7}",
    "\x00\x01\x02",
    "x" * 2000,
    "a1 " * 700,
    "9" * 2000,
    "1/" * 1000,
    "@" * 500,
    "stop" * 500,
    "\ud800",  # a lone surrogate
]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("text", JUNK, ids=range(len(JUNK)))
def test_junk_never_raises(step, text):
    got = _parse(text, step)
    assert isinstance(got, Meaning) and got.kind in KINDS
    if got.kind == "invalid":
        assert got.reason in REASONS


def test_empty_is_empty():
    for step in STEPS:
        assert _parse("", step) == Meaning("invalid", reason="empty")
        assert _parse("   ", step) == Meaning("invalid", reason="empty")


def test_random_text_never_raises():
    rng = random.Random(20261125)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 $.,/-:#@!?'\"😀é中\u200b\n"
    words = [w for _, _, m, _ in ROWS for w in m.split()]
    for _ in range(400):
        if rng.random() < 0.5:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        else:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        for step in STEPS:
            got = _parse(text, step)
            assert got.kind in KINDS, (text, step, got)


def test_unknown_step_is_a_programming_error():
    with pytest.raises(ValueError):
        parse_reply("yes", "confrim", today=TODAY)


def test_meaning_is_frozen_and_hashable():
    m = Meaning("amount", 5000)
    with pytest.raises(AttributeError):
        m.kind = "full"  # type: ignore[misc]
    assert {m, Meaning("amount", 5000)} == {m}


def test_fast_enough():
    _parse("in a fortnight", "date")  # warm dateparser up
    start = time.perf_counter()
    for _ in range(3):
        for _, step, message, _ in ROWS:
            _parse(message, step)
    assert time.perf_counter() - start < 3.0


# --------------------------------------------------------------------------------------
# Intents with their slots (step idle), in Spanish too; and what reads as Spanish
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("quiero pagar 50", Meaning("pay", PayIntent(amount_cents=5000))),
        ("pagar 40 el viernes", Meaning("pay", PayIntent(4000, day=datetime.date(2026, 11, 27)))),
        ("quiero pagar todo el 15", Meaning("pay", PayIntent(full=True,
                                                              day=datetime.date(2026, 12, 15)))),
        ("quiero pagar todo el quince", Meaning("pay", PayIntent(
            full=True, day=datetime.date(2026, 12, 15)))),
        ("pagar cuarenta el próximo viernes", Meaning("pay", PayIntent(
            4000, day=datetime.date(2026, 12, 4)))),
        ("quiero hacer un pago", Meaning("pay")),  # "un pago" is a payment, not $1
        ("puedo pagar en 3 pagos", Meaning("plan_request", 3)),
        ("pay in full at once", Meaning("pay", PayIntent(full=True))),  # "once" is not 11 here
        ("pay 50 in a month", Meaning("pay", PayIntent(5000, day=datetime.date(2026, 12, 25)))),
        ("pay 50 a month", Meaning("plan_request")),
        ("why should I pay 50", Meaning("invalid", reason="not_understood")),
        ("I don't want to pay 50 friday", Meaning("invalid", reason="not_understood")),
    ],
)
def test_slot_filled_intents(text, expected):
    assert _parse(text, "idle") == expected


def test_slots_are_read_only_where_a_payment_starts():
    # The amount step keeps reading an amount (the turns read the date beside it there).
    assert _parse("50 on the 15th", "amount") == Meaning("amount", 5000)
    assert _parse("quiero pagar 40", "amount") == Meaning("amount", 4000)


@pytest.mark.parametrize(
    ("text", "spanish"),
    [
        ("quiero pagar 50", True), ("número equivocado", True), ("ya pagué", True),
        ("en 4 cuotas", True), ("quién es", True), ("pay 50 next friday", False),
        ("i am in the hospital", False), ("no", False), ("plan", False), ("ok", False),
    ],
)
def test_looks_spanish(text, spanish):
    from bot.sms.parsing.language import looks_spanish

    assert looks_spanish(text) is spanish
