"""Where the parts of a concatenated inbound message wait for each other (SPEC §11).

Theory of operation. A part is acknowledged as soon as it is stored, never held until the
other parts arrive: an SMSC that waits for each deliver_sm_resp before it sends the next part
would otherwise wait for ever, and a phone that sends part 1 of 2 over and over would pin a
window slot for minutes. The one exception is the part that completes its set: it carries the
whole message, which is handled like any message and acknowledged once taken in. If the worker
dies first, the SMSC resends that part, and it completes the set again (the set remembers which
part completed it and is forgotten only when the whole message was acknowledged, ``done``). Any
other copy of a part of a set already complete is acknowledged at once.

A set is keyed by (source, destination, reference kind, reference, total) — never by the
reference alone (aiosmpplib defect 4) — and joined in numeric order (defect 5). Caps keep a
flood within bounds: a set may claim at most ``max_parts`` parts, one sender may keep at most
``max_sender_bytes`` waiting, and at most ``max_sets`` sets wait in all; beyond them a part is
refused (``Refused``: for good past the first two, for now past the last). Sets expire
``timeout_s`` after their first part, each with a log line; expiry visits only the sets due
(kept in order of age), never all of them.

Two stores: ``InProcessParts`` (one worker) and ``RedisParts`` (any number of workers sharing a
Redis, so that the parts of one message arriving on different workers' binds are joined).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as redis

from smsmenu.smpp import pdu
from smsmenu.smpp.concat import Segment

log = logging.getLogger("smsmenu.smpp")

SetKey = tuple[str, str, str, int, int]


@dataclass(frozen=True)
class Part:
    source: str
    destination: str
    segment: Segment
    data_coding: int
    payload: bytes

    @property
    def set_key(self) -> SetKey:
        s = self.segment
        return (self.source, self.destination, s.kind, s.reference, s.total)


@dataclass(frozen=True)
class Held:
    """Stored (or a copy of a part stored before): acknowledge it now."""


@dataclass(frozen=True)
class Complete:
    """The set is whole: the joined payload (``data_coding`` of part 1). Acknowledge this part
    once the message was taken in, then call ``done``."""

    key: SetKey
    data_coding: int
    payload: bytes


@dataclass(frozen=True)
class Refused:
    """Over a cap: answer the part with ``status`` (permanent or temporary)."""

    reason: str
    status: int


Stored = Held | Complete | Refused

TOO_MANY_PARTS = Refused("a set of more parts than allowed", pdu.ESME_RX_R_APPN)
SENDER_FULL = Refused("the sender has too many parts waiting", pdu.ESME_RX_R_APPN)
ALL_FULL = Refused("too many sets waiting", pdu.ESME_RX_T_APPN)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 300.0
    max_parts: int = 16
    max_sender_bytes: int = 8192
    max_sets: int = 10_000


DEFAULT_LIMITS = Limits()


class PartStore(Protocol):
    limits: Limits

    async def add(self, part: Part) -> Stored: ...

    async def done(self, key: SetKey) -> None:
        """The whole message of ``key`` was acknowledged: forget the set."""
        ...

    async def expire(self) -> int:
        """Forget the sets past their time (one log line each); how many."""
        ...


def _join(parts: dict[int, bytes]) -> bytes:
    return b"".join(parts[seq] for seq in sorted(parts))


def _describe(key: SetKey) -> str:
    source, destination, kind, reference, total = key
    return f"source={source} destination={destination} ref={kind}:{reference} total={total}"


@dataclass
class _Set:
    first_seen: float
    data_coding: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)
    completed_by: int | None = None

    @property
    def size(self) -> int:
        return sum(len(payload) for payload in self.parts.values())


class InProcessParts:
    """Sets in this process's memory, in order of age."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._sets: OrderedDict[SetKey, _Set] = OrderedDict()
        self._bytes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def sender_bytes(self, source: str) -> int:
        return self._bytes.get(source, 0)

    async def add(self, part: Part) -> Stored:
        lim, key, seq = self.limits, part.set_key, part.segment.seq
        if part.segment.total > lim.max_parts:
            return TOO_MANY_PARTS
        found = self._sets.get(key)
        if found is not None and found.completed_by is not None:
            if seq != found.completed_by:
                return Held()
            return Complete(key, found.data_coding, _join(found.parts))
        if found is not None and seq in found.parts:
            return Held()  # a copy of a part stored before
        size = len(part.payload)
        if self._bytes.get(part.source, 0) + size > lim.max_sender_bytes:
            return SENDER_FULL
        if found is None:
            if len(self._sets) >= lim.max_sets:
                return ALL_FULL
            found = self._sets[key] = _Set(time.monotonic())
        found.parts[seq] = part.payload
        if seq == 1:
            found.data_coding = part.data_coding
        self._bytes[part.source] = self._bytes.get(part.source, 0) + size
        if len(found.parts) < part.segment.total:
            return Held()
        found.completed_by = seq
        return Complete(key, found.data_coding, _join(found.parts))

    def _forget(self, key: SetKey) -> _Set | None:
        found = self._sets.pop(key, None)
        if found is not None:
            left = self._bytes.get(key[0], 0) - found.size
            if left > 0:
                self._bytes[key[0]] = left
            else:
                self._bytes.pop(key[0], None)
        return found

    async def done(self, key: SetKey) -> None:
        self._forget(key)

    async def expire(self) -> int:
        deadline = time.monotonic() - self.limits.timeout_s
        count = 0
        while self._sets:
            key, oldest = next(iter(self._sets.items()))
            if oldest.first_seen > deadline:
                break
            self._forget(key)
            count += 1
            _log_expired(key, len(oldest.parts), oldest.completed_by, self.limits.timeout_s)
        return count


def _log_expired(key: SetKey, got: int, completed_by: int | None, timeout_s: float) -> None:
    if completed_by is None:
        log.warning(
            "mo parts %s: %d of %d arrived, expired after %gs",
            _describe(key),
            got,
            key[4],
            timeout_s,
        )
    else:
        log.warning(
            "mo parts %s: whole but never taken in, expired after %gs", _describe(key), timeout_s
        )


# A set in Redis is a hash: field "<seq>" -> one octet of data_coding + the payload, and
# "joined" -> the seq that completed it. Per sender, the bytes waiting; for all, an index of
# set keys by deadline (the sweep and the total cap). Keys of one sender share its hash tag.
_ADD = """
local seq = ARGV[1]
local joined = redis.call('HGET', KEYS[1], 'joined')
if joined then
  if joined ~= seq then return {'held'} end
  return {'complete', redis.call('HGETALL', KEYS[1])}
end
if redis.call('HEXISTS', KEYS[1], seq) == 1 then return {'held'} end
local size = string.len(ARGV[2]) - 1
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used + size > tonumber(ARGV[4]) then return {'refused', 'sender'} end
local new = redis.call('EXISTS', KEYS[1]) == 0
if new and ARGV[6] == '1' then return {'refused', 'all'} end
redis.call('INCRBY', KEYS[2], size)
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[1], seq, ARGV[2])
if new then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
if redis.call('HLEN', KEYS[1]) < tonumber(ARGV[3]) then
  if new then return {'new'} end
  return {'held'}
end
redis.call('HSET', KEYS[1], 'joined', seq)
return {'complete', redis.call('HGETALL', KEYS[1])}
"""

_FORGET = """
local fields = redis.call('HGETALL', KEYS[1])
local size, got, joined = 0, 0, ''
for i = 1, #fields, 2 do
  if fields[i] == 'joined' then joined = fields[i + 1]
  else size = size + string.len(fields[i + 1]) - 1; got = got + 1 end
end
redis.call('DEL', KEYS[1])
if size > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('DECRBY', KEYS[2], size) <= 0 then redis.call('DEL', KEYS[2]) end
end
return {got, joined}
"""


class RedisParts:
    """Sets in Redis under ``prefix``, shared by every worker."""

    def __init__(self, client: redis.Redis, prefix: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.client = client
        self.prefix = prefix
        self.limits = limits
        self.index = f"{prefix}parts:due"
        self._add = client.register_script(_ADD)
        self._forget = client.register_script(_FORGET)

    def _set_name(self, key: SetKey) -> str:
        source, destination, kind, reference, total = key
        return f"{self.prefix}parts:{{{source}}}:{destination}:{kind}:{reference}:{total}"

    def _bytes_name(self, source: str) -> str:
        return f"{self.prefix}partbytes:{{{source}}}"

    @staticmethod
    def _key_of(name: str, prefix: str) -> SetKey:
        rest = name.removeprefix(f"{prefix}parts:")
        tagged, destination, kind, reference, total = rest.split(":")
        return (tagged.strip("{}"), destination, kind, int(reference), int(total))

    async def add(self, part: Part) -> Stored:
        lim, key = self.limits, part.set_key
        if part.segment.total > lim.max_parts:
            return TOO_MANY_PARTS
        name = self._set_name(key)
        full = await self.client.zcard(self.index) >= lim.max_sets
        ttl_ms = int(lim.timeout_s * 1000) + 60_000  # outlives its deadline: the sweep logs it
        result = await self._add(
            keys=[name, self._bytes_name(part.source)],
            args=[
                part.segment.seq,
                bytes([part.data_coding & 0xFF]) + part.payload,
                part.segment.total,
                lim.max_sender_bytes,
                ttl_ms,
                "1" if full else "0",
            ],
        )
        outcome = _text(result[0])
        if outcome == "new":
            await self.client.zadd(self.index, {name: time.time() + lim.timeout_s})
            return Held()
        if outcome == "held":
            return Held()
        if outcome == "refused":
            return SENDER_FULL if _text(result[1]) == "sender" else ALL_FULL
        fields = result[1]
        parts = {
            int(_text(fields[i])): bytes(fields[i + 1])
            for i in range(0, len(fields), 2)
            if _text(fields[i]) != "joined"
        }
        coding = parts[1][0] if 1 in parts else 0
        payload = b"".join(parts[seq][1:] for seq in sorted(parts))
        return Complete(key, coding, payload)

    async def done(self, key: SetKey) -> None:
        name = self._set_name(key)
        await self._forget(keys=[name, self._bytes_name(key[0])], args=[])
        await self.client.zrem(self.index, name)

    async def expire(self) -> int:
        due = await self.client.zrangebyscore(self.index, "-inf", time.time(), start=0, num=200)
        count = 0
        for raw in due:
            name = _text(raw)
            if not await self.client.zrem(self.index, name):
                continue  # another worker took it
            key = self._key_of(name, self.prefix)
            got, joined = await self._forget(keys=[name, self._bytes_name(key[0])], args=[])
            count += 1
            completed_by = int(_text(joined)) if _text(joined) else None
            _log_expired(key, int(got), completed_by, self.limits.timeout_s)
        return count

    async def aclose(self) -> None:
        await self.client.aclose()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
