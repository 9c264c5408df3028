"""A Redis key prefix a test (or a network of services under test) owns alone."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import redis
import redis.asyncio


@contextlib.asynccontextmanager
async def private_prefix(redis_url: str, base: str = "test:") -> AsyncIterator[str]:
    """A prefix no other test or suite on the same Redis uses; its keys are deleted
    after (unless the test stopped that Redis, which took them with it)."""
    prefix = f"{base}{os.getpid()}:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
            if keys:
                await client.unlink(*keys)
        except redis.ConnectionError:
            pass
        finally:
            await client.aclose()
