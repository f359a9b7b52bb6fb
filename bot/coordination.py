"""What many processes share through Redis: per-conversation locks and the agents' live feed.

Nothing here is the source of truth: losing Redis loses no message, payment or agreement
(the ledger and the conversation checkpoint live in SQL). While Redis cannot be reached, the
conversation lock is taken in the database instead (a `fallback` handed in by the app factory):
losing Redis costs speed, not turns. May import the standard library and redis only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

AGENT_FEED = "paybot:agent-feed"


def connect_redis(url: str | None) -> aioredis.Redis:
    """REDIS_URL when set; otherwise an in-process Redis so a bare machine runs PayBot."""
    if url:
        # Fail fast when Redis is away (its default is 10 tries over about 4 s, each call):
        # every caller has a way on without it, and a turn must not wait seconds to learn it.
        return aioredis.Redis.from_url(
            url, decode_responses=False, socket_connect_timeout=1.0, socket_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=2))
    return fakeredis.FakeAsyncRedis()


# Release the lock only if it is still ours (it may have expired and been taken by another
# process), then hand the turn's events to the agents' feed: one round trip for both.
RELEASE_AND_PUBLISH = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
for i = 2, #ARGV do redis.call('publish', KEYS[2], ARGV[i]) end
return 0
"""


class LockNotAcquired(Exception):
    """Another message of the conversation held the lock for longer than a turn may last."""


@dataclass
class HeldConversation:
    """A conversation while its lock is held: events put here reach the agents' live feed
    when the lock is let go."""

    events: list[dict[str, Any]] = field(default_factory=list)


# A lock by name, held while the block runs, kept by something other than Redis (the database:
# bot.ledger.db.Database.advisory_lock).
FallbackLock = Callable[[str], AbstractAsyncContextManager[None]]


class Coordinator:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        lock_timeout: float = 30.0,
        retry_every: float = 0.005,
        fallback: FallbackLock | None = None,
    ) -> None:
        self.redis = redis
        self.fallback = fallback
        self.lock_timeout = lock_timeout
        self.retry_every = retry_every
        self._release_and_publish = redis.register_script(RELEASE_AND_PUBLISH)

    @asynccontextmanager
    async def conversation_lock(self, key: str) -> AsyncIterator[HeldConversation]:
        """One message of a conversation at a time, across every web process."""
        lock_key, token = f"paybot:conv-lock:{key}", uuid.uuid4().hex
        try:
            await self._acquire(lock_key, token)
        except RedisError as error:
            if self.fallback is None:
                raise
            log.warning("Redis unreachable (%s): the conversation lock is taken in the database",
                        error)
            async with self.fallback(lock_key):
                held = HeldConversation()
                yield held
            for event in held.events:  # Redis may be back by now; if not, the ledger has it
                await self.publish(event)
            return
        held = HeldConversation()
        try:
            yield held
        finally:
            events = [json.dumps(event, default=str) for event in held.events]
            try:
                await self._release_and_publish(keys=[lock_key, AGENT_FEED], args=[token, *events])
            except RedisError as error:  # the lock expires by itself; the ledger has every message
                log.warning("conversation lock not released, agents' feed not told: %s", error)

    async def _acquire(self, lock_key: str, token: str) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.lock_timeout
        # The expiry frees the lock of a process that crashed while holding it.
        expiry_ms = int(self.lock_timeout * 1000)
        while not await self.redis.set(lock_key, token, nx=True, px=expiry_ms):
            if loop.time() >= give_up_at:
                raise LockNotAcquired(lock_key)
            # Messages of one conversation rarely overlap: a short poll beats a subscription.
            await asyncio.sleep(self.retry_every)

    async def publish(self, event: dict[str, Any]) -> None:
        """Tell the agents' feed of an event outside a conversation's turn (an agent's action:
        bot/inbox/feed.py has the shapes). Best effort, as the turn's events are: the ledger
        holds what happened, a console that missed an event catches up on its next read."""
        try:
            await self.redis.publish(AGENT_FEED, json.dumps(event, default=str))
        except RedisError as error:  # one line, no traceback: an outage logs every turn
            log.warning("agents' feed not told of %s: %s", event.get("type"), error)

    async def ping(self) -> None:
        await self.redis.ping()
