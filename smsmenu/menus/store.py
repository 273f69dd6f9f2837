"""Session stores: where the engine keeps sessions, per-phone locks, replies for redelivered
messages and the per-phone rate counters. Two behind one interface:

- ``InProcessStore``: dictionaries in this process; the embedded default (one worker).
- ``RedisStore``: redis-py asyncio; any number of workers share it (SPEC §13).

A message costs two round trips. ``claim`` (one Lua script) answers a redelivered message from
its stored reply, else takes the phone's lock (a random token, with an expiry so a dead worker
cannot block a phone for ever), counts the message against the rate limit and loads the
session. ``commit`` (one Lua script) checks that the lock is still ours and the session's
version is the one loaded (compare-and-set), writes the session (or a tombstone that keeps the
version counting) with the idle timeout as its TTL, stores the reply under the message key and
releases the lock. ``release`` gives the lock back without writing, and only if still held by
the token. All keys of one phone share a Redis Cluster hash tag ``{phone}``.

The Python client, not Redis, is what limits a worker (a redis-py round trip costs ~160 µs of
client CPU), so the Redis store pipelines automatically: the scripts that concurrent messages
issue while earlier ones are on the wire travel to Redis together as one pipeline
(non-transactional: each script is atomic on its own), at a fraction of the cost per command.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import NoScriptError


class ClaimStatus(StrEnum):
    OK = "ok"  # lock held: go on with ``session``, then commit or release
    DUPLICATE = "dup"  # a message seen before: answer ``reply`` again, change nothing
    BUSY = "busy"  # another message of this phone is being handled: try again shortly
    LIMITED = "limited"  # over the rate limit: ``notify`` on the first one over, else drop


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    token: str = ""
    session: str | None = None  # the session's JSON, if there is one
    version: int = 0  # the stored version (0 when none was ever stored)
    reply: str | None = None
    notify: bool = False


class SessionStore(Protocol):
    async def claim(self, phone: str, message_key: str, *, minute: int, limit: int) -> Claim:
        """See the module notes. ``minute`` names the rate window, ``limit`` its size."""
        ...

    async def commit(
        self,
        phone: str,
        claim: Claim,
        *,
        session: str | None,
        version: int,
        session_ttl_s: float,
        message_key: str,
        reply: str,
        reply_ttl_s: float,
    ) -> bool:
        """Write ``session`` (None: none) as ``version``, the reply under the message key, and
        release the lock: all or nothing; False if the lock or the version was lost."""
        ...

    async def release(self, phone: str, claim: Claim) -> None: ...

    async def sealing_key(self) -> bytes:
        """The key every worker on this store uses to seal passwords in sessions."""
        ...

    async def aclose(self) -> None: ...


class InProcessStore:
    """Sessions in this process's memory; TTLs on the monotonic clock."""

    def __init__(self, lock_ttl_s: float = 15.0, max_replies: int = 200_000) -> None:
        self.lock_ttl_s = lock_ttl_s
        self.max_replies = max_replies  # the oldest stored replies go first beyond this
        self._claims = 0
        self._sessions: dict[str, tuple[int, str | None, float]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._replies: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._rates: dict[tuple[str, int], int] = {}
        self._rate_minute = 0
        self._key = os.urandom(32)

    async def claim(self, phone: str, message_key: str, *, minute: int, limit: int) -> Claim:
        now = time.monotonic()
        self._expire_replies(now)
        self._claims += 1
        if self._claims % 10_000 == 0:  # now and then, forget sessions nobody came back to
            self._sessions = {k: v for k, v in self._sessions.items() if v[2] > now}
        stored = self._replies.get((phone, message_key))
        if stored is not None:
            return Claim(ClaimStatus.DUPLICATE, reply=stored[0])
        held = self._locks.get(phone)
        if held is not None and held[1] > now:
            return Claim(ClaimStatus.BUSY)
        if minute != self._rate_minute:
            self._rates = {k: v for k, v in self._rates.items() if k[1] >= minute - 1}
            self._rate_minute = minute
        count = self._rates.get((phone, minute), 0) + 1
        self._rates[(phone, minute)] = count
        if count > limit:
            return Claim(ClaimStatus.LIMITED, notify=count == limit + 1)
        token = secrets.token_hex(8)
        self._locks[phone] = (token, now + self.lock_ttl_s)
        version, session = self._load(phone, now)
        return Claim(ClaimStatus.OK, token=token, session=session, version=version)

    def _load(self, phone: str, now: float) -> tuple[int, str | None]:
        entry = self._sessions.get(phone)
        if entry is None:
            return 0, None
        if entry[2] <= now:
            del self._sessions[phone]
            return 0, None
        return entry[0], entry[1]

    def _expire_replies(self, now: float) -> None:
        while len(self._replies) > self.max_replies:
            self._replies.popitem(last=False)
        while self._replies:
            key, (_, expires) = next(iter(self._replies.items()))
            if expires > now:
                break
            del self._replies[key]

    def _holds(self, phone: str, claim: Claim, now: float) -> bool:
        held = self._locks.get(phone)
        return held is not None and held[0] == claim.token and held[1] > now

    async def commit(
        self,
        phone: str,
        claim: Claim,
        *,
        session: str | None,
        version: int,
        session_ttl_s: float,
        message_key: str,
        reply: str,
        reply_ttl_s: float,
    ) -> bool:
        now = time.monotonic()
        if not self._holds(phone, claim, now):
            return False
        current, _ = self._load(phone, now)
        if current != claim.version:
            del self._locks[phone]
            return False
        if session is None and version == 0:
            self._sessions.pop(phone, None)
        else:
            self._sessions[phone] = (version, session, now + session_ttl_s)
        self._replies[(phone, message_key)] = (reply, now + reply_ttl_s)
        del self._locks[phone]
        return True

    async def release(self, phone: str, claim: Claim) -> None:
        if self._holds(phone, claim, time.monotonic()):
            del self._locks[phone]

    async def sealing_key(self) -> bytes:
        return self._key

    async def aclose(self) -> None:
        return None


_CLAIM = """
local reply = redis.call('GET', KEYS[1])
if reply then return {'dup', reply} end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy'} end
local count = redis.call('INCR', KEYS[3])
if count == 1 then redis.call('EXPIRE', KEYS[3], 120) end
local limit = tonumber(ARGV[3])
if count > limit then
  redis.call('DEL', KEYS[2])
  if count == limit + 1 then return {'limited', '1'} end
  return {'limited', '0'}
end
local stored = redis.call('HMGET', KEYS[4], 'v', 's')
if not stored[1] then return {'ok', '0'} end
if stored[2] == '' then return {'ok', stored[1]} end
return {'ok', stored[1], stored[2]}
"""

_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('HGET', KEYS[2], 'v') or '0'
if current ~= ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('HSET', KEYS[2], 'v', ARGV[3], 's', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
redis.call('DEL', KEYS[1])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class AutoPipeline:
    """Sends the commands issued while earlier ones travel to Redis as one pipeline.

    At most ``max_in_flight`` pipelines of at most ``max_batch`` commands are on the wire at
    once (each holds a connection); commands issued meanwhile wait in the queue and leave
    together when one comes back, so the busier the worker, the larger the batches. Bounded
    batches keep Redis and this process working at the same time instead of in turns.
    """

    def __init__(self, client: redis.Redis, max_in_flight: int = 8, max_batch: int = 32) -> None:
        self.client = client
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self.batches = 0
        self.commands = 0

    async def call(self, *command: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled and self._queue and len(self._tasks) < self.max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue or len(self._tasks) >= self.max_in_flight:
            return
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._sent)
        self._schedule(task.get_loop())  # more waiting: another pipeline, if a slot is free

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._schedule(task.get_loop())

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            pipe = self.client.pipeline(transaction=False)
            for command, _ in batch:
                pipe.execute_command(*command)
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class RedisStore:
    """Sessions, locks, replies and rate counters in Redis under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = "smsmenu:", lock_ttl_s: float = 15.0):
        self.client = client
        self.prefix = prefix
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.pipeline = AutoPipeline(client)
        self._scripts = {"claim": _CLAIM, "commit": _COMMIT, "release": _RELEASE}
        self._sha: dict[str, str] = {}
        self._key: bytes | None = None
        self._key_lock = asyncio.Lock()
        self._loading: asyncio.Future[None] | None = None

    @classmethod
    def from_url(cls, url: str, prefix: str = "smsmenu:", lock_ttl_s: float = 15.0) -> RedisStore:
        return cls(redis.from_url(url), prefix, lock_ttl_s)

    async def _load_scripts(self, stale: dict[str, str] | None = None) -> None:
        """Load the scripts into Redis once, however many callers need them at the same time
        (they all wake together when it is done)."""
        if self._sha and self._sha is not stale:
            return  # loaded already, or again since the caller's copy went stale
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._load())
        await asyncio.shield(self._loading)

    async def _load(self) -> None:
        loaded = {}
        for name, source in self._scripts.items():
            loaded[name] = _text(await self.client.script_load(source))
        self._sha = loaded

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the store's scripts (by SHA, pipelined); load them when Redis lacks
        them (first use, or after a restart or SCRIPT FLUSH)."""
        if not self._sha:
            await self._load_scripts()
        known = self._sha
        try:
            return await self.pipeline.call("EVALSHA", known[script], len(keys), *keys, *args)
        except NoScriptError:
            await self._load_scripts(stale=known)
            return await self.pipeline.call("EVALSHA", self._sha[script], len(keys), *keys, *args)

    def _keys(self, phone: str) -> tuple[str, str]:
        tag = f"{{{phone}}}"
        return f"{self.prefix}lock:{tag}", f"{self.prefix}session:{tag}"

    def _reply_key(self, phone: str, message_key: str) -> str:
        return f"{self.prefix}reply:{{{phone}}}:{message_key}"

    async def claim(self, phone: str, message_key: str, *, minute: int, limit: int) -> Claim:
        lock, session = self._keys(phone)
        rate = f"{self.prefix}rate:{{{phone}}}:{minute}"
        token = secrets.token_hex(8)
        result: list[Any] = await self._run(
            "claim",
            [self._reply_key(phone, message_key), lock, rate, session],
            [token, self.lock_ttl_ms, limit],
        )
        status = ClaimStatus(_text(result[0]))
        if status is ClaimStatus.DUPLICATE:
            return Claim(status, reply=_text(result[1]))
        if status is ClaimStatus.BUSY:
            return Claim(status)
        if status is ClaimStatus.LIMITED:
            return Claim(status, notify=_text(result[1]) == "1")
        stored = _text(result[2]) if len(result) > 2 else None
        return Claim(status, token=token, session=stored, version=int(result[1]))

    async def commit(
        self,
        phone: str,
        claim: Claim,
        *,
        session: str | None,
        version: int,
        session_ttl_s: float,
        message_key: str,
        reply: str,
        reply_ttl_s: float,
    ) -> bool:
        lock, session_key = self._keys(phone)
        done = await self._run(
            "commit",
            [lock, session_key, self._reply_key(phone, message_key)],
            [
                claim.token,
                claim.version,
                version,
                session or "",
                max(1, int(session_ttl_s * 1000)),
                reply,
                max(1, int(reply_ttl_s * 1000)),
            ],
        )
        return bool(done)

    async def release(self, phone: str, claim: Claim) -> None:
        lock, _ = self._keys(phone)
        await self._run("release", [lock], [claim.token])

    async def sealing_key(self) -> bytes:
        async with self._key_lock:  # the first messages arrive together: ask Redis once
            if self._key is None:
                name = f"{self.prefix}sealing-key"
                await self.client.set(name, os.urandom(32), nx=True)
                key = await self.client.get(name)
                if not isinstance(key, bytes) or len(key) < 32:
                    raise RuntimeError(f"the sealing key at {name} is malformed")
                self._key = key
        return self._key

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
