"""Whether a customer's free text reads as Spanish: the bot then offers Spanish, once.

A few words only a Spanish writer uses (accents stripped, as customers type them); a reply that
is only a number, a date or a yes/no is no evidence either way.
"""

from __future__ import annotations

from bot.sms.parsing.words import reply_words

# Words that are Spanish and not English (nor a name or a number people type in English texts).
_SPANISH = frozenset(
    {
        "quiero", "pagar", "pago", "pagos", "puedo", "cuanto", "cuando", "debo", "deuda",
        "cuenta", "saldo", "ayuda", "necesito", "gracias", "hola", "buenos", "buenas", "dias",
        "tardes", "noches", "por", "favor", "mi", "mis", "tengo", "tarjeta", "hoy", "manana",
        "semana", "viernes", "lunes", "martes", "miercoles", "jueves", "sabado", "domingo",
        "si", "claro", "quien", "que", "como", "donde", "esta", "este", "eso", "usted", "dinero",
        "trabajo", "mas", "menos", "todo", "ahora", "despues", "luego", "hablar", "persona",
        "espanol", "agente", "alto", "parar", "basta", "cancelar", "comenzar", "puede",
        "podria", "seria", "abonos", "plazos", "cuotas", "mensual", "mes", "el", "la", "los",
        "las", "del", "de", "con", "para", "y", "o", "no", "es", "soy", "estoy",
        # what customers write about a debt, a number or a date (issue 15's corpus)
        "equivocado", "equivocada", "equivocaron", "equivoco", "numero", "perdi", "pague",
        "pagare", "reconozco", "mia", "alcanza", "quede", "quisiera", "hacer", "ustedes",
        "habla", "dolares", "proximo", "proxima", "enlace", "mandame", "quienes",
        "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
        "septiembre", "octubre", "noviembre", "diciembre", "cincuenta", "cuarenta", "veinte",
        "treinta", "cien", "quince", "tambien", "empleo", "hospital", "medicos", "ayudame",
        "ayer", "ya", "en", "acepto", "confirmo", "terminos", "volver", "fin", "dale",
    }
)
# Words shared with English or too short to tell: they count only beside others.
_WEAK = frozenset(
    {"no", "si", "o", "y", "la", "el", "de", "es", "mi", "mas", "plan", "mes", "ya", "en", "fin",
     "hospital"}
)


def looks_spanish(text: str) -> bool:
    """True when at least two words are Spanish and at least one of them is not a weak one
    ("quiero pagar", "cuanto debo"), or one strong word makes up the whole reply ("gracias")."""
    words = reply_words(text)
    spanish = [w for w in words if w in _SPANISH]
    strong = [w for w in spanish if w not in _WEAK]
    if not strong:
        return False
    return len(spanish) >= 2 or len(words) == 1
