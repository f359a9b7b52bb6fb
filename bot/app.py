"""The application factory: one root app, one sub-app per surface, resources in cleanup_ctx."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web, web_response
from aiohttp.typedefs import Handler

from agent_console import app as console
from bot import api, appkeys, logs, operations
from bot.clock import Clock, SystemClock
from bot.config.check import require_production_ready
from bot.config.settings import Settings
from bot.coordination import Coordinator, connect_redis
from bot.inbox import agent_webhook
from bot.ledger.db import Database
from bot.operations import outage
from bot.outreach.notifications import Notifier, ledger_email_opt_outs
from bot.payments.service import PaymentService
from bot.providers import Providers, build_providers
from bot.sms.engine import ConversationEngine
from portal_fallback import app as portal
from portal_fallback import sessions
from webhooks import paypal as paypal_webhooks
from webhooks import sendgrid as sendgrid_webhooks
from webhooks import stripe as stripe_webhooks
from webhooks import twilio as twilio_webhooks

log = logging.getLogger(__name__)

REQUEST_ID = web.RequestKey("request_id", str)  # the id logged and echoed
# A charge made inside an SMS turn or a page may wait this long for Stripe: Twilio gives up on a
# webhook after 15 s, and the turn has its own work around the charge. Past it the payment is
# left for the worker (same idempotency key) and the customer is told so (bench/chaos: a hung
# processor made turns outlast Twilio's wait with the 30 s the worker keeps).
WEB_PROCESSOR_TIMEOUT = 10.0

SERVER_HEADER = "PayBot"
# aiohttp names itself and Python, with their versions, in the Server header of every response
# it has no other value for: an attacker's list of known holes to try. It reads this global for
# each response, even the 400 it answers to a malformed request before any route or middleware
# of ours runs, so this is the one place that covers them all (tests/test_server_header.py).
web_response.SERVER_SOFTWARE = SERVER_HEADER


def create_app(
    settings: Settings, providers: Providers | None = None, clock: Clock | None = None
) -> web.Application:
    if providers is None:  # given providers are a test's sandboxes; built ones must be real
        require_production_ready(settings)
    app = web.Application(client_max_size=64 * 1024)
    add_request_ids(app)
    app.middlewares.insert(1, _outages)
    app[appkeys.SETTINGS] = settings
    app[appkeys.CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_providers_ctx(providers))
    app.cleanup_ctx.append(_engine_ctx)
    app.add_subapp("/webhooks/twilio/", twilio_webhooks.create_app(settings.sms_turns_in_flight))
    app.router.add_post("/webhooks/stripe", stripe_webhooks.handle)
    app.router.add_post("/webhooks/paypal", paypal_webhooks.handle)
    app.router.add_post("/webhooks/sendgrid", sendgrid_webhooks.handle)
    app.add_subapp("/api/v1/", api.create_app())
    portal.add_routes(app)
    app.add_subapp("/agent/", console.create_app())
    app.router.add_get("/agent", _to_console)
    operations.add_routes(app, client_ip=sessions.client_ip)
    return app


@web.middleware
async def _outages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The database or Redis away for a moment: 503 and when to try again, in the surface's
    own form (the portal's page; the API's and console's own middlewares answer theirs)."""
    try:
        return await handler(request)
    except Exception as error:
        if not outage.is_outage(error):
            raise
        log.warning("%s %s: 503, the database or Redis is unreachable (%s)", request.method,
                    request.path, type(error).__name__)
        headers = {"Retry-After": outage.RETRY_AFTER_SECONDS}
        if request.path.startswith(("/p/", "/portal", "/t/")):
            # A plain link (the portal's CSP forbids `javascript:`): the same page when it was
            # one to read, else the portal's start, which shows where the customer is.
            retry_url = request.path_qs if request.method == "GET" else "/portal/"
            response = portal.page(request, "unavailable.html", 503, retry_url=retry_url)
            response.headers.update(headers)
            return response
        return web.Response(status=503, headers=headers,
                            text="Service briefly unavailable; please try again in a minute.")


def add_request_ids(app: web.Application) -> None:
    """Every request gets an id (the client's `X-Request-Id` when it is a short safe token, else
    a new one): bound on each log line of its turn, and echoed on its response, errors too."""
    app.middlewares.insert(0, _request_id)
    app.on_response_prepare.append(_echo_request_id)


@web.middleware
async def _request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Each request runs in its own task: what is bound here stays with this request.
    request[REQUEST_ID] = logs.request_id(request.headers.get(logs.REQUEST_ID_HEADER))
    logs.bind(request_id=request[REQUEST_ID])
    return await handler(request)


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    if REQUEST_ID in request:
        response.headers[logs.REQUEST_ID_HEADER] = request[REQUEST_ID]


async def _to_console(_: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/agent/")


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    database = Database(app[appkeys.SETTINGS].database_url)
    agent_webhook.configure(database, app[appkeys.SETTINGS])  # events queued only with a URL
    if app[appkeys.SETTINGS].migrate_on_start:
        await database.migrate()
    app[appkeys.DATABASE] = database
    yield
    await database.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    redis = connect_redis(app[appkeys.SETTINGS].redis_url)
    app[appkeys.COORDINATOR] = Coordinator(redis, fallback=app[appkeys.DATABASE].advisory_lock)
    yield
    await redis.aclose()


def _providers_ctx(given: Providers | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        providers = given or build_providers(app[appkeys.SETTINGS],
                                             processor_timeout=WEB_PROCESSOR_TIMEOUT)
        app[appkeys.PROVIDERS] = providers
        yield
        if given is None:  # whoever built them closes them
            await providers.close()

    return ctx


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    app[appkeys.ENGINE] = build_engine(
        app[appkeys.SETTINGS],
        app[appkeys.DATABASE],
        app[appkeys.COORDINATOR],
        app[appkeys.PROVIDERS],
        app[appkeys.CLOCK],
    )
    yield
    await app[appkeys.ENGINE].settled()  # no email of an answered turn is dropped on shutdown


def build_engine(
    settings: Settings,
    database: Database,
    coordinator: Coordinator,
    providers: Providers,
    clock: Clock,
) -> ConversationEngine:
    return ConversationEngine(
        settings=settings,
        db=database,
        coordinator=coordinator,
        payments=PaymentService(providers.charging, clock, between_writes=database.between_writes),
        notifier=Notifier(
            sms=providers.sms,
            email=providers.email,
            brand=settings.brand,
            email_opted_out=ledger_email_opt_outs(database),
        ),
        clock=clock,
    )
