"""The keywords that work in every step: STOP and its kin, START, HELP, AGENT, BALANCE, LINK,
MENU, PLAN, and the replies a person must read (complaints, disputes, maybe-opt-outs).

Choices worth knowing (each is pinned by tests/test_parsing.py):

* Opt-out. A message that is only an opt-out word (STOP, STOPALL, UNSUBSCRIBE, CANCEL,
  END, QUIT, OPTOUT, REVOKE, ALTO, PARAR, CANCELAR, BASTA, BAJA) plus politeness
  ("Stop. Thank you") or a clear opt-out phrase anywhere ("stop texting me", "no more
  texts", "take me off your list", "no me manden mas mensajes") is ``opt_out``.
  A complaint, dispute, legal threat or wrong-number reply is ``ask_agent``, and so is
  an opt-out word inside a longer sentence that is not a clear opt-out ("stop harassing
  me", "cancel my payment"): a person decides. A clear opt-out phrase wins over a
  complaint marker ("stop texting me, this is a scam" is ``opt_out``): it is honoured
  at once.
* Wrong number, dispute, hardship ("wrong number", "this isn't my debt", "i lost my job") are
  kinds of their own (``wrong_number``, ``dispute``, ``hardship``): each is handed to a person
  with its reason and its own reply. An opt-out word in the same message wins (``ask_agent``):
  whether it is a revocation, a person decides.
* PLAN ("my plan", "what's my plan") is a keyword: it works in every step.
* "Who is this" (``who``: "who are you", "quien es", "de parte de quien") is answered with the
  creditor's name, the debt-collector disclosure and the support contact, not HELP's text.
* Spanish keywords: AYUDA (help), ALTO/PARAR/CANCELAR/BASTA (opt-out), COMENZAR (opt-in),
  SALDO (balance), PLAN, AGENTE (agent), MENU; PAGAR is PAY (read by the "idle" step,
  intents.py), as are "quiero pagar", "cuanto debo", "perdi mi trabajo", "no es mi deuda",
  "numero equivocado" in their kinds.
"""

from __future__ import annotations

import re

from bot.sms.parsing.meaning import Meaning
from bot.sms.parsing.words import phrase_set, reply_words

_OPT_OUT_WORDS = frozenset(
    {
        "stop", "stopall", "unsubscribe", "unsub", "cancel", "end", "quit", "optout", "revoke",
        "alto", "parar", "cancelar", "basta", "baja",
    }
)
# Words that may surround an opt-out word ("Stop. Thank you", "STOP IT", "alto por favor").
_OPT_OUT_FILLERS = frozenset(
    {
        "please", "pls", "plz", "thank", "thanks", "you", "thx", "ty", "ok", "okay", "now",
        "it", "all", "me", "just", "no", "sir", "maam", "already", "immediately", "asap",
        "por", "favor", "gracias", "ya", "yes",
    }
)
# Opt-out words that are also ordinary English: with these only politeness may follow
# ("cancel please" opts out, "cancel it" goes to an agent, "end of the month" is a date).
_WEAK_OPT_OUT_WORDS = frozenset({"cancel", "cancelar", "end", "quit"})
_POLITE = frozenset(
    {"please", "pls", "plz", "thank", "thanks", "you", "thx", "ty", "ok", "okay", "por",
     "favor", "gracias", "just"}
)
# An opt-out word inside a longer message that is not a clear opt-out: a person decides.
_MAYBE_OPT_OUT_WORDS = frozenset(
    {"stop", "cancel", "cancelar", "alto", "parar", "basta", "revoke"}
)

_TEXTING = (
    r"(?:text|texts|texting|txt|txts|txting|message|messages|messaging|msg|msgs|sms|contact|"
    r"contacting|email|emails|emailing|sending|send|write|writing|bothering|bugging)"
)
_OPT_OUT_PHRASES = re.compile(
    r"\b(?:"
    r"unsubscribe|unsub|stop ?all|opt ?out|opt me out|optout|"
    rf"(?:stop|quit|cease) {_TEXTING}|"
    rf"(?:dont|do not|never) (?:ever )?(?:{_TEXTING}|text me|msg me)|"
    r"no more (?:text|texts|txt|txts|message|messages|msgs|sms|texting|messaging|emails?|"
    r"contact)|"
    r"remove me|remove (?:my )?(?:number|phone|phone number|cell|name)|"
    r"take (?:me|my number|my name|my phone) off|"
    r"(?:off|from) (?:your|the|this) (?:contact |mailing |texting )?list|"
    r"leave me alone|revoke (?:my )?consent|withdraw (?:my )?consent|i revoke|"
    # Spanish
    r"no (?:me )?(?:mande|manden|mandes|envie|envien|envies|escriba|escriban|escribas|"
    r"contacte|contacten|molesten|moleste|textee|texteen)|"
    r"no mas (?:mensajes|mensaje|textos|texto|msjs|sms)|"
    r"(?:ya )?no quiero (?:mas |recibir )?(?:mensajes|textos)|"
    r"dej(?:en|e|a) de (?:mandar|enviar|escribir|contactar|molestar|textear)\w*|"
    r"dar(?:me)? de baja"
    r")\b"
)
# Complaints, disputes, legal threats, wrong number, hardship: a person decides.
_ASK_AGENT = re.compile(
    r"\b(?:"
    r"harass\w*|threat\w*|bully\w*|"
    r"sue|suing|sued|lawsuit|lawyer|attorney|attorneys|legal|court|judge|"
    r"cfpb|ftc|bbb|fdcpa|tcpa|fcra|attorney general|report you|reporting you|"
    r"(?:file|filing) a complaint|complaint|"
    r"scam|scams|scammer|scammers|fraud|fraudulent|phishing|spam|"
    r"how did you get (?:my|this) (?:number|phone|info)|"
    r"cease and desist|cease|"
    r"bankrupt|bankruptcy|deceased|passed away|died|"
    r"not interested|"
    r"(?:dont|do not|stop|quit|no more) (?:call|calling|calls)|"
    r"fuck\w*|fck|f off|screw you|"
    # Spanish
    r"estafa|fraude|abogado|demanda|acoso"
    r")\b"
)

# The three a person handles with their own reply (bot/sms/handover.py), after the maybe-opt-outs
# above them: the number is not the account holder's; the debt is disputed (Reg F: not owed, not
# theirs, already paid); a hardship (the options are a plan or a person).
_WRONG_NUMBER = re.compile(
    r"\b(?:"
    r"wrong (?:number|person|phone|#)|(?:no one|nobody|noone) (?:here )?(?:by|named|with) "
    r"(?:that|this) name|(?:i|we) (?:dont|do not) know (?:who (?:that|this|she|he) is|"
    r"(?:this|that|a|any) person|(?:him|her|them|anyone by that name))|"
    r"not (?:the|this) person you|new phone who (?:dis|this|is this)|"
    r"numero equivocado|persona equivocada|no conozco a|se equivoc\w* de (?:numero|persona)|"
    r"no soy (?:esa persona|la persona|el|ella)|(?:esa|esta) persona no (?:vive|esta) aqui|"
    r"no es (?:mi|este) numero"
    r")\b"
)
_DISPUTE = re.compile(
    r"\b(?:"
    r"not my (?:debt|account|bill|loan|card)|(?:this|that|it) (?:is not|isnt) (?:mine|my debt)|"
    r"not mine|(?:dont|do not|never) owe|owe (?:you )?nothing|i owe nothing|"
    r"already paid|i paid|paid (?:it|this|that|off)|"
    r"(?:dont|do not) recognize|never (?:opened|had) (?:an|this|that|the|any)|"
    r"dispute|disputing|disputed|validation|validate|identity theft|"
    r"no es mi deuda|no debo|ya (?:lo |la )?pague|(?:esta|esa) deuda no es mia|no es mia|"
    r"no (?:reconozco|conozco) (?:esta|esa) (?:deuda|cuenta)|nunca (?:tuve|abri)|disputa\w*"
    r")\b"
)
_HARDSHIP = re.compile(
    r"\b(?:"
    r"lost (?:my |our |his |her )?(?:job|work|income|jobs)|laid off|got laid off|"
    r"(?:got|was|been|just got) fired|unemployed|out of work|no (?:job|income|work)|"
    r"hardship|medical bills|in the hospital|(?:cant|cannot|can not) afford|"
    r"(?:cant|cannot|can not) (?:pay|make) (?:anything|any payments?)|"
    r"(?:have|got) no money|broke right now|fixed income|on disability|"
    r"perdi (?:mi )?(?:trabajo|empleo)|sin (?:trabajo|empleo)|desempleado|desempleada|"
    r"no tengo dinero|no puedo pagar|me quede sin (?:trabajo|empleo|dinero)|no tengo trabajo|"
    r"gastos medicos|cuentas medicas|estoy enfermo|estoy enferma|no me alcanza|"
    r"no tengo (?:con que|como) pagar|situacion dificil|estoy en el hospital"
    r")\b"
)

_MENU_WORDS = phrase_set(
    "menu", "main menu", "start over", "restart", "start again", "begin again", "reset",
    "menu please", "go to menu", "back to menu", "back to the menu", "go to the menu",
    "the menu", "show menu", "menu principal", "empezar de nuevo", "volver a empezar",
    "volver al menu", "al menu", "ir al menu", "el menu", "inicio", "menu por favor",
)
_MENU_ANYWHERE = re.compile(r"\b(?:start over|main menu)\b")
# A hello and nothing else: the bot answers with where things stand, never an apology.
_GREETINGS = phrase_set(
    "hi", "hello", "hey", "hiya", "howdy", "yo", "hi there", "hello there", "hey there",
    "good morning", "good afternoon", "good evening", "morning", "hi again", "hello again",
    "hola", "buenos dias", "buenas tardes", "buenas noches", "buenas", "saludos",
)
# The language a customer asks for (ESPAÑOL / ENGLISH): a keyword in every step, in either
# language.
_SPANISH_WORDS = phrase_set(
    "espanol", "spanish", "en espanol", "in spanish", "espanol por favor", "spanish please",
    "habla espanol", "hablas espanol", "habla usted espanol", "se habla espanol",
)
_ENGLISH_WORDS = phrase_set(
    "english", "ingles", "in english", "en ingles", "english please", "ingles por favor",
    "do you speak english",
)
_OPT_IN_WORDS = phrase_set(
    "start", "unstop", "subscribe", "resubscribe", "opt in", "optin", "opt me in", "start please",
    "start texting", "start texting me", "resume",
    "comenzar", "comenzar por favor", "reanudar", "suscribir", "suscribirme", "iniciar",
)
_AGENT_ANYWHERE = re.compile(
    r"\b(?:"
    r"agent|agents|agente|representative|representatives|representante|operator|supervisor|"
    r"manager|human|humano|real person|live person|actual person|customer service|"
    r"customer support|"
    r"(?:talk|speak|chat) (?:to|with) (?:a |an |the |some |your )?(?:someone|somebody|person|"
    r"people|rep|agent|human|representative|manager|supervisor|real|live|actual)|"
    r"call me|give me a call|can (?:someone|somebody|you) call|"
    r"are you a (?:bot|robot|machine|computer|real)|"
    r"hablar con|llamame|llamenme|llameme|persona real|una persona|alguien real"
    r")\b"
)
_AGENT_WORDS = phrase_set("rep", "a rep", "person", "a person", "someone", "operator")
_HELP_WORDS = phrase_set(
    "help", "info", "information", "more info", "ayuda", "help me", "i need help", "need help",
    "help please", "can you help", "can you help me", "what is this", "whats this",
    "what is this about", "whats this about", "what is this for", "necesito ayuda",
    "ayudame", "ayuda por favor", "que es esto", "de que se trata", "informacion",
)
_HELP_FILLERS = frozenset({"please", "pls", "plz", "por", "favor", "i", "need", "some", "me"})
# "Who is this": the creditor's name, the debt-collector disclosure and the support contact.
_WHO = re.compile(
    r"\b(?:"
    r"who (?:is|s) (?:this|that|texting|messaging|sending)|whos (?:this|texting|messaging)|"
    r"who are (?:you|u|yall|you guys|you people)|who r u|who dis|"
    r"who (?:sent|sends|is sending|keeps texting|texted) (?:this|me|these)|"
    r"what company (?:is this|are you|is texting)|"
    r"who am i (?:talking|speaking|texting) (?:to|with)|"
    r"who is this from|is this a debt collector|"
    r"quien (?:es|eres|habla|me escribe|me manda|es usted|son ustedes|me esta escribiendo)|"
    r"quienes son|de parte de quien|de donde me escriben|que empresa es"
    r")\b"
)
_BALANCE_WORDS = phrase_set(
    "balance", "bal", "my balance", "balance please", "check balance", "check my balance",
    "current balance", "balance due", "amount due", "total due", "saldo", "mi saldo",
)
_BALANCE_ANYWHERE = re.compile(
    r"\b(?:"
    r"how much (?:do|did|does|shall|would) i (?:still )?owe|how much i owe|"
    r"how much (?:is|do i have) (?:left|remaining|owed|owing|due)|"
    r"what (?:do|did) i (?:still )?owe|"
    r"(?:whats|what is|wats|wat is|how much is|tell me|check) (?:my|the) (?:current |remaining |"
    r"total |account )?(?:balance|bal|amount due)|"
    r"cuanto debo|cual es mi saldo|cuanto es mi saldo|cuanto (?:tengo que pagar|le debo|les debo)|"
    r"cuanto me falta|mi saldo por favor|cuanto es lo que debo"
    r")\b"
)
_PLAN_WORDS = phrase_set(
    "plan", "my plan", "payment plan", "my payment plan", "plan please", "plan status",
    "my plan status", "plan details", "my plan details", "the plan", "show my plan",
    "see my plan", "view my plan", "check my plan", "show plan", "view plan", "mi plan",
    "plan de pagos", "mi plan de pagos",
)
_PLAN_ANYWHERE = re.compile(
    r"\b(?:"
    r"(?:whats|what is|check|show me|show|see|view|how is|hows|status of) (?:my|the) "
    r"(?:payment )?plan|"
    r"(?:where|how) (?:am i|do i stand) (?:on|with) (?:my|the) (?:payment )?plan"
    r")\b"
)
_LINK_ANYWHERE = re.compile(r"\b(?:link|links|url|enlace|liga|website|web site|pay online)\b")


def classify_keyword(text: str) -> Meaning | None:
    """The keywords that work in any state, or None when the text is not one.

    Kinds: opt_out, opt_in, help, agent, balance, link, menu, plan, ask_agent, wrong_number,
    dispute, hardship, who, greeting, spanish, english.
    """
    tokens = reply_words(text)
    if not tokens:
        return None
    joined = " ".join(tokens)
    whole = tuple(tokens)

    # 1. Opt-out: a clear phrase, or an opt-out word with nothing but politeness around it.
    if _OPT_OUT_PHRASES.search(joined):
        return Meaning("opt_out")
    core = {t for t in tokens if t not in _OPT_OUT_FILLERS}  # "STOP STOP" is one STOP
    if len(core) == 1 and (word := next(iter(core))) in _OPT_OUT_WORDS:
        if word not in _WEAK_OPT_OUT_WORDS or all(t in _POLITE for t in tokens if t != word):
            return Meaning("opt_out")
    if whole in {("opt", "out"), ("stop", "all")}:
        return Meaning("opt_out")

    # 2. Maybe-opt-outs go to a person (who decides); then wrong numbers, disputes and
    # hardship, each with its own reply; then complaints.
    if any(t in _MAYBE_OPT_OUT_WORDS for t in tokens):
        return Meaning("ask_agent")
    if _WRONG_NUMBER.search(joined):
        return Meaning("wrong_number")
    if _DISPUTE.search(joined):
        return Meaning("dispute")
    if _HARDSHIP.search(joined) and not any(c.isdigit() for c in joined):
        return Meaning("hardship")  # "lost my job, can I pay 20" is an amount, read as one
    if _ASK_AGENT.search(joined):
        return Meaning("ask_agent")
    if _WHO.search(joined):
        return Meaning("who")

    # 3. The other keywords.
    if whole in _SPANISH_WORDS:
        return Meaning("spanish")
    if whole in _ENGLISH_WORDS:
        return Meaning("english")
    if whole in _MENU_WORDS or _MENU_ANYWHERE.search(joined):
        return Meaning("menu")
    if whole in _OPT_IN_WORDS:
        return Meaning("opt_in")
    if _AGENT_ANYWHERE.search(joined) or whole in _AGENT_WORDS:
        return Meaning("agent")
    help_core = [t for t in tokens if t not in _HELP_FILLERS]
    if whole in _HELP_WORDS or (help_core and set(help_core) <= {"help", "ayuda", "info"}):
        return Meaning("help")
    if whole in _BALANCE_WORDS or _BALANCE_ANYWHERE.search(joined):
        return Meaning("balance")
    if whole in _PLAN_WORDS or _PLAN_ANYWHERE.search(joined):
        return Meaning("plan")
    if _LINK_ANYWHERE.search(joined):
        return Meaning("link")
    if tuple(t for t in tokens if t not in _POLITE) in _GREETINGS:
        return Meaning("greeting")
    return None
