"""What many processes share through Redis: per-conversation locks and the agents' live feed.

Nothing here is the source of truth: losing Redis loses no message, payment or agreement
(the ledger and the conversation checkpoint live in SQL).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import fakeredis
import redis.asyncio as aioredis

AGENT_FEED = "paybot:agent-feed"


def connect_redis(url: str | None) -> aioredis.Redis:
    """REDIS_URL when set; otherwise an in-process Redis so a bare machine runs PayBot."""
    if url:
        return aioredis.Redis.from_url(url, decode_responses=False)
    return fakeredis.FakeAsyncRedis()


class Coordinator:
    def __init__(self, redis: aioredis.Redis, *, lock_timeout: float = 30.0) -> None:
        self.redis = redis
        self.lock_timeout = lock_timeout

    @asynccontextmanager
    async def conversation_lock(self, phone: str) -> AsyncIterator[None]:
        """One message of a conversation at a time, across every web process."""
        lock = self.redis.lock(
            f"paybot:conv-lock:{phone}",
            timeout=self.lock_timeout,  # a crashed holder frees the lock by itself
            sleep=0.005,
            blocking_timeout=self.lock_timeout,
        )
        async with lock:
            yield

    async def publish(self, event: dict[str, Any]) -> None:
        await self.redis.publish(AGENT_FEED, json.dumps(event, default=str))

    async def ping(self) -> None:
        await self.redis.ping()
