import pytest

from bot.text.gsm7 import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    encoding,
    is_gsm7,
    non_gsm7_chars,
    segment_count,
    septet_count,
    to_gsm7,
)

EXAMPLE = (
    "Northwind Recovery: Hi Maria, your balance on Acme Card ending 4821 is $1,250.00. "
    "Reply PAY to pay by text or open https://pay.example/p/Xy7Qk2 Reply STOP to opt out."
)


def test_alphabet_sizes():
    # 128 positions of the default alphabet less ESC; 10 extension characters (incl. form feed)
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    "text",
    [
        "",
        EXAMPLE,
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?",
        "¡ÄÖÑÜ§¿äöñüà",
        "Pago: ALTO, PARAR, CANCELAR, BASTA. Año, señor, müde",
        "{braces} [brackets] ~tilde^ back\\slash pipe| 20€",
    ],
)
def test_is_gsm7_true(text):
    assert is_gsm7(text)
    assert encoding(text) == "GSM-7"


@pytest.mark.parametrize(
    "text",
    [
        "it’s",  # right single quotation mark
        "“quoted”",
        "a – b",  # en dash
        "wait…",
        "• bullet",
        "no\u00a0break",
        "emoji 😀",
        "tab\there",
        "`backtick`",
        "á",  # a-acute is not GSM-7 (à is)
        "ç",  # only capital Ç is GSM-7
        "Zoë",
        "价格",
    ],
)
def test_is_gsm7_false(text):
    assert not is_gsm7(text)
    assert encoding(text) == "UCS-2"


def test_non_gsm7_chars_lists_offenders_once_in_order():
    assert non_gsm7_chars("“a” – b “c”") == ["“", "”", "–"]
    assert non_gsm7_chars(EXAMPLE) == []


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),  # the design's two-segment budget
        ("a" * 307, 3),
        ("a" * 459, 3),
        ("a" * 460, 4),
        ("€" * 80, 1),  # 160 septets
        ("€" + "a" * 159, 2),  # 161 septets
        ("{" * 76 + "a" * 8, 1),  # 160 septets
        ("{" * 80 + "a", 2),  # 161 septets
        ("é" * 160, 1),  # basic-set accents cost one septet
        ("á" * 70, 1),  # UCS-2
        ("á" * 71, 2),
        ("á" * 134, 2),
        ("á" * 135, 3),
        ("a" * 159 + "’", 3),  # one curly quote: 160 UCS-2 units -> 3 parts of 67
        ("😀" * 35, 1),  # 70 UTF-16 units
        ("😀" * 36, 2),
    ],
)
def test_segment_count(text, segments):
    assert segment_count(text) == segments


def test_extension_pair_is_not_split_between_parts():
    # 306 septets would fill two parts of 153, but the escape pair of "€" would
    # straddle the boundary: it moves to part two, and the text needs a third part.
    text = "a" * 152 + "€" + "a" * 152
    assert septet_count(text) == 306
    assert segment_count(text) == 3
    assert segment_count("a" * 151 + "€" + "a" * 153) == 2


def test_surrogate_pair_is_not_split_between_parts():
    text = "a" * 66 + "😀" + "a" * 66  # 134 UTF-16 units, emoji straddles unit 67
    assert segment_count(text) == 3
    assert segment_count("a" * 65 + "😀" + "a" * 66) == 2


def test_septet_count():
    assert septet_count("abc") == 3
    assert septet_count("a€[") == 5
    with pytest.raises(ValueError):
        septet_count("’")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It’s “fine” – really — ok…", 'It\'s "fine" - really - ok...'),
        ("‘single’ ‚low‛", "'single' 'low'"),
        ("«guillemets» „low“", '"guillemets" "low"'),
        ("• one\n◦ two\n‣ three · four", "- one\n- two\n- three - four"),
        ("$50\u00a0now\u202fplease\u2009ok", "$50 now please ok"),
        ("zero\u200bwidth\ufeff soft\u00adhyphen", "zerowidth softhyphen"),
        ("Pay\ttoday", "Pay today"),
        ("a − b ‐ c ‑ d", "a - b - c - d"),
        ("Acme™ ©", "AcmeTM (c)"),
        ("José Núñez, García, François", "José Nuñez, Garcia, Francois"),
        ("ﬁnal ＡＢＣ", "final ABC"),
        ("e\u0301", "é"),  # decomposed input is composed first: é is GSM-7
        ("price: 20€ {ok} [x]", "price: 20€ {ok} [x]"),
        (EXAMPLE, EXAMPLE),
    ],
)
def test_to_gsm7(text, expected):
    result = to_gsm7(text)
    assert result == expected
    assert is_gsm7(result)


def test_to_gsm7_unknown_characters():
    assert to_gsm7("ok 😀 价格") == "ok ? ??"
    assert to_gsm7("ok 😀", replacement="") == "ok "
    assert to_gsm7("ok 😀", replacement=None) == "ok 😀"
    assert to_gsm7("👍🏽") == "??"  # emoji + skin tone modifier
    assert to_gsm7("❤️") == "?"  # the variation selector vanishes


def test_to_gsm7_keeps_gsm_text_unchanged_and_is_idempotent():
    sample = "Confirm: $50.00 from Visa ending 4242 on Dec 15, 2026. Reply YES or NO."
    assert to_gsm7(sample) == sample
    messy = "“Done” – $50.00 • Ref P-7K3Q…"
    assert to_gsm7(to_gsm7(messy)) == to_gsm7(messy)


def test_to_gsm7_brings_a_ucs2_message_back_to_fewer_segments():
    text = ("Your plan’s next payment — $208.34 — is due Dec 15. " * 3).strip()
    assert segment_count(text) == 3  # UCS-2: 155 units, 3 parts of 67
    assert segment_count(to_gsm7(text)) == 1
