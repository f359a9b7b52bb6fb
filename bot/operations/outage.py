"""A database or Redis that cannot be reached right now is an outage, not a bug: the request
gets 503 with Retry-After (a page, a problem document or plain text by surface), never a 500.

May import sqlalchemy's and redis's exception types only."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

RETRY_AFTER_SECONDS = "30"


def is_outage(error: BaseException) -> bool:
    """Redis or the database unreachable, restarting or cut off (not a bad query: that is ours
    to fix, and stays a 500 in the logs)."""
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, PoolTimeoutError,
                          OperationalError, InterfaceError, ConnectionError)):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)
