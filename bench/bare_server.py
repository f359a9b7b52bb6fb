"""The baseline for `bench.sms_load`: a bare aiohttp handler that does only what any Twilio
webhook must do (parse the form, check X-Twilio-Signature with the SDK's RequestValidator
against PUBLIC_BASE_URL + path, answer TwiML built with the SDK's MessagingResponse) and
nothing else: no database, no Redis, no conversation.

    python -m bench.bare_server --port 8099   # env: TWILIO_AUTH_TOKEN, PUBLIC_BASE_URL

With --store POSTGRES_URL it also does the one thing PayBot's guarantees make unavoidable:
each inbound message is INSERTed (raw asyncpg, one durable commit) into a table of its own,
`bench_inbound`, before the answer. That is the floor for "stored before answered".

With --store and --redis REDIS_URL it does the least that a whole turn with PayBot's
guarantees costs, and no business at all: store the inbound row (autocommit), take the
conversation's Redis lock (SET NX PX), then in one atomic statement claim the message,
checkpoint the state and store the reply, and let the lock go (one EVALSHA). The conversation's
state is read in the storing statement and checked by version in the writing one, so a turn is
two SQL round trips and two Redis ones,
raw asyncpg and redis-py, no ORM, no flow, no template: the ceiling of any implementation that
keeps "stored before answered, processed once, one message of a conversation at a time".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot.serving import fast_event_loop

# About the length of a typical PayBot reply, so both servers send similar bytes.
REPLY = (
    "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL. "
    "Reply STOP to opt out."
)


STORE = web.AppKey("store", object)
REDIS = web.AppKey("redis", object)

TURN_TABLES = (
    "CREATE TABLE IF NOT EXISTS bench_turn_inbound (id bigserial PRIMARY KEY, sid text UNIQUE,"
    " phone text, body text, at timestamptz DEFAULT now(), processed_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS bench_turn_conversations (phone text PRIMARY KEY, state text,"
    " version bigint NOT NULL DEFAULT 0, updated_at timestamptz DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS bench_turn_outbound (id bigserial PRIMARY KEY,"
    " in_reply_to bigint, phone text, body text, at timestamptz DEFAULT now())",
)
# Stored (autocommit, durable when it returns) and the conversation read in the same round trip,
# before the lock: the read is only a guess, which the write below checks by version.
STORE_INBOUND_AND_READ = """
WITH stored AS (
  INSERT INTO bench_turn_inbound (sid, phone, body) VALUES ($1, $2, $3)
  ON CONFLICT (sid) DO NOTHING RETURNING id
)
SELECT stored.id, c.state, coalesce(c.version, 0) AS version
FROM stored LEFT JOIN bench_turn_conversations c ON c.phone = $2
"""
# A retry of a stored message, or a guess that the write found stale: read again, under the lock.
READ_AGAIN = """
SELECT i.id, i.processed_at IS NOT NULL AS done, c.state, coalesce(c.version, 0) AS version
FROM bench_turn_inbound i LEFT JOIN bench_turn_conversations c ON c.phone = i.phone
WHERE i.sid = $1
"""
# Claim, checkpoint and reply in one statement, atomic, and only if the conversation is still at
# the version that was read: 0 means "already processed" or "read again".
WRITE_TURN = """
WITH current AS (
  SELECT coalesce((SELECT version FROM bench_turn_conversations WHERE phone = $2), 0) AS version
), claim AS (
  UPDATE bench_turn_inbound SET processed_at = now()
  WHERE id = $1 AND processed_at IS NULL AND (SELECT version FROM current) = $4
  RETURNING id, phone
), checkpoint AS (
  INSERT INTO bench_turn_conversations (phone, state, version) SELECT phone, $3, $4 + 1 FROM claim
  ON CONFLICT (phone) DO UPDATE SET state = excluded.state, version = excluded.version,
  updated_at = now()
), reply AS (
  INSERT INTO bench_turn_outbound (in_reply_to, phone, body) SELECT id, phone, $5 FROM claim
)
SELECT count(*) FROM claim
"""
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end return 0"


def create_app(
    auth_token: str, public_base_url: str, store: str | None = None, redis_url: str | None = None
) -> web.Application:
    validator = RequestValidator(auth_token)
    base = public_base_url.rstrip("/")

    async def inbound_sms(request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        signature = request.headers.get("X-Twilio-Signature", "")
        if not validator.validate(base + request.path_qs, form, signature):
            return web.Response(status=403, text="invalid signature")
        if store and redis_url:
            await minimal_turn(request.app, form)
        elif store:
            await request.app[STORE].execute(  # type: ignore[attr-defined]
                "INSERT INTO bench_inbound (sid, phone, body) VALUES ($1, $2, $3)"
                " ON CONFLICT (sid) DO NOTHING",
                form.get("MessageSid", ""),
                form.get("From", ""),
                form.get("Body", ""),
            )
        response = MessagingResponse()
        response.message(REPLY)
        return web.Response(text=str(response), content_type="application/xml")

    async def minimal_turn(app: web.Application, form: dict[str, str]) -> None:
        pool, redis = app[STORE], app[REDIS]
        sid, phone = form.get("MessageSid", ""), form.get("From", "")
        row = await pool.fetchrow(STORE_INBOUND_AND_READ, sid, phone, form.get("Body", ""))
        lock, token = f"bench:conv-lock:{phone}", secrets.token_hex(16)
        for _ in range(6000):  # 30 s at most, as PayBot's lock
            if await redis.set(lock, token, nx=True, px=30_000):
                break
            await asyncio.sleep(0.005)
        else:
            raise RuntimeError(f"conversation lock {lock} not acquired")
        try:
            for _attempt in range(2):
                if row is None or _attempt:
                    again = await pool.fetchrow(READ_AGAIN, sid)
                    if again["done"]:
                        return  # processed once: a real server answers from the stored reply
                    row = again
                next_state = "amount" if row["state"] != "amount" else "method"
                if await pool.fetchval(
                    WRITE_TURN, row["id"], phone, next_state, row["version"], REPLY
                ):
                    return
        finally:
            await redis.release(keys=[lock], args=[token])

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def pool_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        import asyncpg

        # As many connections as PayBot's pool may hold (10 + 10 overflow).
        pool = await asyncpg.create_pool(store, min_size=2, max_size=20)
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_inbound (sid text PRIMARY KEY, "
            "phone text, body text, at timestamptz DEFAULT now())"
        )
        if redis_url:
            for statement in TURN_TABLES:
                await pool.execute(statement)
        app[STORE] = pool
        yield
        await pool.close()

    async def redis_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        import redis.asyncio as aioredis

        redis = aioredis.Redis.from_url(redis_url)
        redis.release = redis.register_script(RELEASE)  # type: ignore[attr-defined]
        app[REDIS] = redis
        yield
        await redis.aclose()

    app = web.Application(client_max_size=64 * 1024)
    if store:
        app.cleanup_ctx.append(pool_ctx)
    if store and redis_url:
        app.cleanup_ctx.append(redis_ctx)
    app.router.add_post("/webhooks/twilio/sms", inbound_sms)
    app.router.add_get("/healthz", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--store",
        metavar="POSTGRES_URL",
        help="also INSERT each message (one commit) before answering",
    )
    parser.add_argument(
        "--redis",
        metavar="REDIS_URL",
        help="with --store: the least a whole turn with PayBot's guarantees costs (see above)",
    )
    args = parser.parse_args()
    app = create_app(
        os.environ["TWILIO_AUTH_TOKEN"], os.environ["PUBLIC_BASE_URL"], args.store, args.redis
    )
    # The minimal turn runs on PayBot's event loop (uvloop), so only the work differs.
    loop = fast_event_loop() if args.redis else None
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
