"""The Spanish catalogs hold every English text the templates and code mark, translated, with the
same placeholders; and the machinery renders each language from the one template."""

from __future__ import annotations

from datetime import date

from bot.text import catalogs, i18n
from bot.text.rendering import SmsRenderer
from states.replies import Reply


def test_every_marked_text_has_its_spanish() -> None:
    problems = [str(p) for p in catalogs.check()]
    assert problems == [], "run `make messages` and translate:\n" + "\n".join(problems)


def test_one_template_renders_each_language_and_stays_gsm7() -> None:
    renderer = SmsRenderer()
    base = {"brand": "Northwind", "support_contact": "1-800-555-0100", "first_name": "María"}
    replies = [Reply("hello", {}), Reply("help", {})]
    assert renderer.render_all(replies, base, "en") == [
        "Hi Maria!\nNorthwind: texts about paying your account. Msg frequency varies. "
        "Msg & data rates may apply. Reply STOP to opt out, AGENT for a person, PLAN for your "
        "payment plan. Support: 1-800-555-0100"
    ]
    assert renderer.render_all(replies, base, "es") == [
        "¡Hola, Maria!\nNorthwind: mensajes para pagar su cuenta. Frecuencia variable. Pueden "
        "aplicar tarifas de mensajes y datos. Responda ALTO para no recibir mas, AGENTE para "
        "hablar con una persona, PLAN para su plan de pagos. Ayuda: 1-800-555-0100"
    ]


def test_the_language_of_the_moment_and_dates() -> None:
    day = date(2026, 12, 15)
    assert i18n.current_language() == "en"
    assert i18n.format_day(day) == "Dec 15, 2026"
    with i18n.using("es"):
        assert i18n.format_day(day) == "15 dic 2026"
        assert i18n.format_month_day(day) == "15 dic"
        assert i18n.gettext("Hi %(first_name)s!") == "¡Hola, %(first_name)s!"
    with i18n.using("klingon"):
        assert i18n.current_language() == "en"
    assert [i18n.normalize_language(v) for v in ("ES", " español ", "Spanish", "en", "fr", 3)] == [
        "es", "es", "es", "en", None, None,
    ]



def test_every_method_a_creditor_takes_is_named_in_spanish() -> None:
    # Found trying `paybot chat` as a Spanish customer of a creditor that takes PayPal: "2 para
    # agregar una card, bank account o PayPal account".
    from bot.config.flow import FlowSettings

    three = FlowSettings(methods_enabled=["card", "us_bank_account", "paypal"]).method_words
    assert three == "card, bank account or PayPal account"
    with i18n.using("es"):
        assert i18n.method_words(three) == "tarjeta, cuenta bancaria o cuenta PayPal"
        assert i18n.method_words("card or bank account") == "tarjeta o cuenta bancaria"
        assert i18n.method_words("card") == "tarjeta"
    assert i18n.method_words(three) == three
