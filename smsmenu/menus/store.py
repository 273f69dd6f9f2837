"""Session stores: where the engine keeps sessions, per-phone locks, the messages taken in
(``menus.intake``: which copy is which message, and its reply) and per-phone rate counters.
Two behind one interface:

- ``InProcessStore``: dictionaries in this process; the embedded default (one worker).
- ``RedisStore``: redis-py asyncio; any number of workers share it (SPEC §13).

A message costs three calls, each one round trip (one Lua script on Redis). ``claim`` takes the
phone's lock (a random token, with an expiry so a dead worker cannot block a phone for ever),
then, under it, decides whether the message is a copy of one taken in before (``intake``'s
rule); a copy of an answered message gets its stored reply, a new one is counted against the
rate limit (over it: no entry, the lock given back) and recorded with a random id; then the
session is loaded. ``commit`` checks that the lock is still ours and the session's version the
one loaded (compare-and-set), writes the session (or a tombstone that keeps the version
counting) with the idle timeout as its TTL and stores the reply on the message's entry; the
lock stays held. ``finish`` records whether the message's response reached the link (the
entry is then kept only ``ack_grace``) and gives the lock back, only if still held by the
token. All keys of one phone share a Redis Cluster hash tag ``{phone}``; a message's entries
are found by its fingerprint (a keyed HMAC, never the text).

The Python client, not Redis, is what limits a worker (a redis-py round trip costs ~160 µs of
client CPU), so the Redis store pipelines automatically: the scripts that concurrent messages
issue while earlier ones are on the wire travel to Redis together as one pipeline
(non-transactional: each script is atomic on its own), at a fraction of the cost per command.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import NoScriptError

from smsmenu.menus.intake import DEFAULT_WINDOWS, Entry, Windows, live, same_message


class ClaimStatus(StrEnum):
    OK = "ok"  # lock held: go on with ``session``, then commit and finish
    DUPLICATE = "dup"  # a copy of an answered message: ``reply`` again, then finish
    BUSY = "busy"  # another message of this phone is being handled: try again shortly
    LIMITED = "limited"  # over the rate limit: ``notify`` on the first one over, else drop


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    message_id: str = ""  # the message's id: new, or the earlier copy's
    attempts: int = 0  # how many copies of this message were taken in (this one included)
    token: str = ""
    session: str | None = None  # the session's JSON, if there is one
    version: int = 0  # the stored version (0 when none was ever stored)
    reply: str | None = None
    notify: bool = False


class SessionStore(Protocol):
    async def claim(
        self,
        phone: str,
        fingerprint: str,
        *,
        arrived_ms: int,
        now_ms: int,
        minute: int,
        limit: int,
    ) -> Claim:
        """See the module notes. ``minute`` names the rate window, ``limit`` its size."""
        ...

    async def commit(
        self,
        phone: str,
        claim: Claim,
        *,
        fingerprint: str,
        session: str | None,
        version: int,
        session_ttl_s: float,
        reply: str,
        now_ms: int,
    ) -> bool:
        """Write ``session`` (None: none) as ``version`` and the message's reply, all or
        nothing; False if the lock or the version was lost. The lock stays held."""
        ...

    async def finish(
        self, phone: str, claim: Claim, *, fingerprint: str, acked: bool, now_ms: int
    ) -> None:
        """The message's response was written (``acked``) or not; give the lock back."""
        ...

    async def aclose(self) -> None: ...


class InProcessStore:
    """Sessions in this process's memory; TTLs on the monotonic clock, the intake's windows on
    the engine's (epoch milliseconds)."""

    def __init__(
        self,
        lock_ttl_s: float = 15.0,
        windows: Windows = DEFAULT_WINDOWS,
        max_entries: int = 200_000,
    ) -> None:
        self.lock_ttl_s = lock_ttl_s
        self.windows = windows
        self.max_entries = max_entries  # the oldest entries go first beyond this
        self._claims = 0
        self._sessions: dict[str, tuple[int, str | None, float]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._entries: OrderedDict[tuple[str, str], list[Entry]] = OrderedDict()
        self._rates: dict[tuple[str, int], int] = {}
        self._rate_minute = 0

    async def claim(
        self,
        phone: str,
        fingerprint: str,
        *,
        arrived_ms: int,
        now_ms: int,
        minute: int,
        limit: int,
    ) -> Claim:
        now = time.monotonic()
        self._claims += 1
        if self._claims % 10_000 == 0:  # now and then, forget sessions nobody came back to
            self._sessions = {k: v for k, v in self._sessions.items() if v[2] > now}
        held = self._locks.get(phone)
        if held is not None and held[1] > now:
            return Claim(ClaimStatus.BUSY)
        token = secrets.token_hex(8)
        self._locks[phone] = (token, now + self.lock_ttl_s)
        key = (phone, fingerprint)
        entries = live(self._entries.pop(key, []), now_ms, self.windows)
        entry = same_message(entries, arrived_ms, self.windows)
        if entry is not None and entry.reply is not None:
            self._keep(key, entries)
            return Claim(ClaimStatus.DUPLICATE, entry.id, entry.attempts, token, reply=entry.reply)
        if entry is not None:
            entry.attempts += 1
        else:
            limited = self._over_limit(phone, minute, limit)
            if limited is not None:
                self._keep(key, entries)
                del self._locks[phone]
                return limited
            entry = Entry(secrets.token_hex(8), arrived_ms)
            entries.append(entry)
        self._keep(key, entries)
        version, session = self._load(phone, now)
        return Claim(ClaimStatus.OK, entry.id, entry.attempts, token, session, version)

    def _over_limit(self, phone: str, minute: int, limit: int) -> Claim | None:
        if minute != self._rate_minute:
            self._rates = {k: v for k, v in self._rates.items() if k[1] >= minute - 1}
            self._rate_minute = minute
        count = self._rates.get((phone, minute), 0) + 1
        self._rates[(phone, minute)] = count
        if count > limit:
            return Claim(ClaimStatus.LIMITED, notify=count == limit + 1)
        return None

    def _keep(self, key: tuple[str, str], entries: list[Entry]) -> None:
        if entries:
            self._entries[key] = entries  # (re)inserted last: the dict stays in age order
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _load(self, phone: str, now: float) -> tuple[int, str | None]:
        entry = self._sessions.get(phone)
        if entry is None:
            return 0, None
        if entry[2] <= now:
            del self._sessions[phone]
            return 0, None
        return entry[0], entry[1]

    def _holds(self, phone: str, claim: Claim, now: float) -> bool:
        held = self._locks.get(phone)
        return held is not None and held[0] == claim.token and held[1] > now

    def _entry(self, phone: str, fingerprint: str, message_id: str) -> Entry | None:
        for entry in self._entries.get((phone, fingerprint), []):
            if entry.id == message_id:
                return entry
        return None

    async def commit(
        self,
        phone: str,
        claim: Claim,
        *,
        fingerprint: str,
        session: str | None,
        version: int,
        session_ttl_s: float,
        reply: str,
        now_ms: int,
    ) -> bool:
        now = time.monotonic()
        if not self._holds(phone, claim, now):
            return False
        current, _ = self._load(phone, now)
        if current != claim.version:
            return False
        if session is None and version == 0:
            self._sessions.pop(phone, None)
        else:
            self._sessions[phone] = (version, session, now + session_ttl_s)
        entry = self._entry(phone, fingerprint, claim.message_id)
        if entry is not None:
            entry.reply = reply
        return True

    async def finish(
        self, phone: str, claim: Claim, *, fingerprint: str, acked: bool, now_ms: int
    ) -> None:
        if acked:
            entry = self._entry(phone, fingerprint, claim.message_id)
            if entry is not None:
                entry.acked_ms = now_ms
        if self._holds(phone, claim, time.monotonic()):
            del self._locks[phone]

    def remember(self, phone: str, fingerprint: str, message_id: str, at_ms: int) -> None:
        """Know again a message that an earlier run of this worker took in and never
        acknowledged (``ledger.shortcut_acks``): a copy of it is then recognised."""
        key = (phone, fingerprint)
        self._keep(key, [*self._entries.pop(key, []), Entry(message_id, at_ms)])

    async def aclose(self) -> None:
        return None


# Entries in Redis are JSON arrays [id, at_ms, attempts, reply or false, acked_ms or false],
# one list per phone and fingerprint, kept while any entry lives (see ``intake``).
_PRUNE = """
local function load(key, now, grace, ttl)
  local raw = redis.call('GET', key)
  local kept = {}
  if raw then
    for _, e in ipairs(cjson.decode(raw)) do
      local alive = true
      if e[5] then alive = now - e[5] < grace end
      if alive and now - e[2] < ttl then table.insert(kept, e) end
    end
  end
  table.sort(kept, function(a, b) return a[2] < b[2] end)
  return kept
end
local function save(key, list, grace, ttl)
  if #list == 0 then redis.call('DEL', key) return end
  local life = grace
  for _, e in ipairs(list) do if not e[5] then life = ttl end end
  redis.call('SET', key, cjson.encode(list), 'PX', life)
end
"""

_CLAIM = (
    _PRUNE
    + """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy'} end
local arrived, now = tonumber(ARGV[3]), tonumber(ARGV[4])
local resend, grace, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local list = load(KEYS[2], now, grace, ttl)
local match = nil
for _, e in ipairs(list) do
  if not e[5] or (e[5] - e[2] >= resend and arrived - e[2] >= resend
                  and arrived - e[5] < grace) then
    match = e
    break
  end
end
if match and match[4] then
  save(KEYS[2], list, grace, ttl)
  return {'dup', match[1], match[3], match[4]}
end
if match then
  match[3] = match[3] + 1
else
  local count = redis.call('INCR', KEYS[3])
  if count == 1 then redis.call('EXPIRE', KEYS[3], 120) end
  local limit = tonumber(ARGV[9])
  if count > limit then
    redis.call('DEL', KEYS[1])
    if count == limit + 1 then return {'limited', '1'} end
    return {'limited', '0'}
  end
  match = {ARGV[5], arrived, 1, false, false}
  table.insert(list, match)
end
save(KEYS[2], list, grace, ttl)
local stored = redis.call('HMGET', KEYS[4], 'v', 's')
return {'ok', match[1], match[3], stored[1] or '0', stored[2] or ''}
"""
)

_COMMIT = (
    _PRUNE
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('HGET', KEYS[2], 'v') or '0'
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'v', ARGV[3], 's', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local grace, ttl = tonumber(ARGV[9]), tonumber(ARGV[10])
local list = load(KEYS[3], tonumber(ARGV[8]), grace, ttl)
for _, e in ipairs(list) do if e[1] == ARGV[6] then e[4] = ARGV[7] end end
save(KEYS[3], list, grace, ttl)
return 1
"""
)

_FINISH = (
    _PRUNE
    + """
if ARGV[3] == '1' then
  local now, grace, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local list = load(KEYS[2], now, grace, ttl)
  for _, e in ipairs(list) do if e[1] == ARGV[2] then e[5] = now end end
  save(KEYS[2], list, grace, ttl)
end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
)


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
    """Sessions, locks, intake entries and rate counters in Redis under ``prefix``."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "smsmenu:",
        lock_ttl_s: float = 15.0,
        windows: Windows = DEFAULT_WINDOWS,
    ):
        self.client = client
        self.prefix = prefix
        self.lock_ttl_ms = int(lock_ttl_s * 1000)
        self.windows = windows
        self.pipeline = AutoPipeline(client)
        self._scripts = {"claim": _CLAIM, "commit": _COMMIT, "finish": _FINISH}
        self._sha: dict[str, str] = {}
        self._loading: asyncio.Future[None] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "smsmenu:",
        lock_ttl_s: float = 15.0,
        windows: Windows = DEFAULT_WINDOWS,
    ) -> RedisStore:
        return cls(redis.from_url(url), prefix, lock_ttl_s, windows)

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

    def _key(self, kind: str, phone: str, suffix: str = "") -> str:
        return f"{self.prefix}{kind}:{{{phone}}}{suffix}"

    def _windows(self) -> list[int]:
        w = self.windows
        return [w.resend_after_ms, w.ack_grace_ms, w.entry_ttl_ms]

    async def claim(
        self,
        phone: str,
        fingerprint: str,
        *,
        arrived_ms: int,
        now_ms: int,
        minute: int,
        limit: int,
    ) -> Claim:
        token = secrets.token_hex(8)
        result: list[Any] = await self._run(
            "claim",
            [
                self._key("lock", phone),
                self._key("in", phone, f":{fingerprint}"),
                self._key("rate", phone, f":{minute}"),
                self._key("session", phone),
            ],
            [
                token,
                self.lock_ttl_ms,
                arrived_ms,
                now_ms,
                secrets.token_hex(8),
                *self._windows(),
                limit,
            ],
        )
        status = ClaimStatus(_text(result[0]))
        if status is ClaimStatus.BUSY:
            return Claim(status)
        if status is ClaimStatus.LIMITED:
            return Claim(status, notify=_text(result[1]) == "1")
        message_id, attempts = _text(result[1]), int(result[2])
        if status is ClaimStatus.DUPLICATE:
            return Claim(status, message_id, attempts, token, reply=_text(result[3]))
        stored = _text(result[4]) or None
        return Claim(status, message_id, attempts, token, stored, int(result[3]))

    async def commit(
        self,
        phone: str,
        claim: Claim,
        *,
        fingerprint: str,
        session: str | None,
        version: int,
        session_ttl_s: float,
        reply: str,
        now_ms: int,
    ) -> bool:
        done = await self._run(
            "commit",
            [
                self._key("lock", phone),
                self._key("session", phone),
                self._key("in", phone, f":{fingerprint}"),
            ],
            [
                claim.token,
                claim.version,
                version,
                session or "",
                max(1, int(session_ttl_s * 1000)),
                claim.message_id,
                reply,
                now_ms,
                *self._windows()[1:],
            ],
        )
        return bool(done)

    async def finish(
        self, phone: str, claim: Claim, *, fingerprint: str, acked: bool, now_ms: int
    ) -> None:
        await self._run(
            "finish",
            [self._key("lock", phone), self._key("in", phone, f":{fingerprint}")],
            [claim.token, claim.message_id, "1" if acked else "0", now_ms, *self._windows()[1:]],
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
