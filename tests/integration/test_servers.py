"""The real servers the suite depends on are there (never skipped)."""

import asyncpg
import redis.asyncio as redis


async def test_postgres_answers(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()


async def test_redis_answers(redis_url: str) -> None:
    client = redis.from_url(redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
