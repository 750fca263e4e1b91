"""Lua scripts of the core layer and the key layout they share.

Key layout
----------
Every key of shard ``n`` starts with the hash tag ``{<prefix>.<n>}``, so all keys one script or
pipeline touches hash to the same Redis Cluster slot. With plain servers the tag is just a
prefix. Below ``B`` is that tag:

* ``B:c:<channel>`` -- list of queued elements of a normal channel; for a process-local
  channel's non-local part (``B:c:specific.abc!``) the list is that process's *inbox*;
* ``B:n:<non-local>`` -- hash ``suffix -> pending count`` of one process's local channels
  (their capacity lives here: one inbox serves many local channels);
* ``B:g:<group>`` -- sorted set of the shard's normal-channel members ``"<capacity>|<channel>"``
  scored by the time of ``group_add`` (ms); ``B:gl:<group>`` the processes (non-local names)
  with local members, ``B:gm:<group>:<non-local>`` the suffixes of one process's members. A
  member lives on the shard of its channel, so a shard's ``group_send`` script reads the members
  and fills their queues in one round trip, joining each process's suffixes in C;
* ``B:sc:<hour>`` / ``B:sf:<hour>`` -- hashes ``channel -> messages accepted / refused`` in
  that hour (statistics; kept two hours), ``B:s`` the shard's totals ``count``/``full``;
  ``B:rsc:<second>`` / ``B:rsf:<second>`` the same counted per second (field ``*`` the shard's
  total, other fields channels; kept three seconds) for the per-second rates;
* ``B:d:<id>`` -- a short-lived marker that makes a retried send idempotent.

Elements
--------
``<13-digit expiry time in ms><targets>\\0<payload>``. ``targets`` is empty for a normal
channel; in an inbox it is the one local suffix of a direct send, or ``*`` and a
comma-separated list of local suffixes: one element carries a group message to every member
channel of one receiving process (collapsed fan-out). Direct sends to a local channel are
counted in ``B:n:`` (exact ``ChannelFull``); group copies are bounded by the receiving process,
which also reports their statistics back in batches (``SETTLE``).
"""

from __future__ import annotations

__all__ = [
    "GLOBAL_STATISTICS",
    "GROUP_ADD",
    "GROUP_ADD_LOCAL",
    "GROUP_DISCARD_LOCAL",
    "GROUP_SEND",
    "SEND",
    "SEND_LOCAL",
    "SETTLE",
    "STATISTICS",
    "format_element",
    "parse_element",
]

EXPIRY_DIGITS = 13

STATS_WINDOW_MS = 3_600_000

_TRIM_EXPIRED = """
local function trim_expired(key, now)
  while true do
    local head = redis.call('LINDEX', key, 0)
    if not head or tonumber(string.sub(head, 1, 13)) > now then return end
    redis.call('LPOP', key)
  end
end
-- Per-channel counters live in one hash per hour and shard ('B:sc:<hour>' accepted,
-- 'B:sf:<hour>' refused), kept two hours: one write per message, no key per channel.
local function stats_key(base, kind, now)
  local key = base .. ':' .. kind .. ':' .. math.floor(now / 3600000)
  return key
end
-- Per-second counters ('B:rsc:<second>' accepted, 'B:rsf:<second>' refused; field '*' the
-- shard's total, other fields channels), kept three seconds: the rates of the last second.
local function count_second(base, kind, now, field, amount)
  local key = base .. ':r' .. kind .. ':' .. math.floor(now / 1000)
  if redis.call('HINCRBY', key, field, amount) == amount then
    redis.call('PEXPIRE', key, 3000)
  end
end
local function count_channel(base, kind, now, channel, per_channel)
  count_second(base, kind, now, '*', 1)
  if per_channel == '1' then
    local key = stats_key(base, kind, now)
    if redis.call('HINCRBY', key, channel, 1) == 1 then
      redis.call('PEXPIRE', key, 7200000)
    end
    count_second(base, kind, now, channel, 1)
  end
end
"""

SEND = (
    _TRIM_EXPIRED
    + """
-- KEYS: queue, dedupe marker, shard totals
-- ARGV: now ms, element, capacity, queue ttl ms, dedupe ttl ms, key base, channel,
--       per-channel stats ('1'/'0')
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[5]) == false then return 1 end
local now = tonumber(ARGV[1])
trim_expired(KEYS[1], now)
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[2])
  redis.call('HINCRBY', KEYS[3], 'full', 1)
  count_channel(ARGV[6], 'sf', now, ARGV[7], ARGV[8])
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[3], 'count', 1)
count_channel(ARGV[6], 'sc', now, ARGV[7], ARGV[8])
return 1
"""
)

SEND_LOCAL = (
    _TRIM_EXPIRED
    + """
-- KEYS: inbox, pending counts, dedupe marker, shard totals
-- ARGV: now ms, suffix, element, capacity, queue ttl ms, dedupe ttl ms, key base, channel,
--       per-channel stats ('1'/'0')
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[6]) == false then return 1 end
local now = tonumber(ARGV[1])
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) > tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
  redis.call('DEL', KEYS[3])
  redis.call('HINCRBY', KEYS[4], 'full', 1)
  count_channel(ARGV[7], 'sf', now, ARGV[8], ARGV[9])
  return 0
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('HINCRBY', KEYS[4], 'count', 1)
count_channel(ARGV[7], 'sc', now, ARGV[8], ARGV[9])
return 1
"""
)

GROUP_SEND = (
    _TRIM_EXPIRED
    + """
-- KEYS: normal members, dedupe marker, shard totals, processes with local members
-- ARGV: now ms, membership cutoff ms, queue ttl ms, expiry digits, payload, key base,
--       dedupe ttl ms, per-channel stats ('1'/'0'), group name
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[7]) == false then return {0, 0, 0} end
local now, ttl, base, per_channel = tonumber(ARGV[1]), ARGV[3], ARGV[6], ARGV[8]
local cutoff = ARGV[2]
local accepted_key, refused_key = stats_key(base, 'sc', now), stats_key(base, 'sf', now)
local sent, full, inboxes = 0, 0, 0
-- normal channels: one queue push per member, capacity enforced here
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local plain = ARGV[4] .. '\0' .. ARGV[5]
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local bar = string.find(member, '|', 1, true)
  local capacity = tonumber(string.sub(member, 1, bar - 1))
  local channel = string.sub(member, bar + 1)
  local queue = base .. ':c:' .. channel
  trim_expired(queue, now)
  local field_key = refused_key
  if redis.call('LLEN', queue) < capacity then
    redis.call('RPUSH', queue, plain)
    redis.call('PEXPIRE', queue, ttl)
    sent = sent + 1
    field_key = accepted_key
  else
    full = full + 1
  end
  if per_channel == '1' then
    redis.call('HINCRBY', field_key, channel, 1)
    if field_key == accepted_key then count_second(base, 'sc', now, channel, 1)
    else count_second(base, 'sf', now, channel, 1) end
  end
end
-- process-local channels: one inbox element per process naming all its member channels
-- (capacity and statistics of these are the receiving process's job)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', cutoff)
for _, nonlocal in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local members = base .. ':gm:' .. ARGV[9] .. ':' .. nonlocal
  redis.call('ZREMRANGEBYSCORE', members, '-inf', cutoff)
  local suffixes = redis.call('ZRANGE', members, 0, -1)
  if #suffixes == 0 then
    redis.call('ZREM', KEYS[4], nonlocal)
  else
    local inbox = base .. ':c:' .. nonlocal
    local targets = '*' .. table.concat(suffixes, ',')
    redis.call('RPUSH', inbox, ARGV[4] .. targets .. '\0' .. ARGV[5])
    redis.call('PEXPIRE', inbox, ttl)
    inboxes = inboxes + 1
  end
end
if per_channel == '1' then
  if sent > 0 then redis.call('PEXPIRE', accepted_key, 7200000) end
  if full > 0 then redis.call('PEXPIRE', refused_key, 7200000) end
end
if sent > 0 then
  redis.call('HINCRBY', KEYS[3], 'count', sent)
  count_second(base, 'sc', now, '*', sent)
end
if full > 0 then
  redis.call('HINCRBY', KEYS[3], 'full', full)
  count_second(base, 'sf', now, '*', full)
end
return {sent, full, inboxes}
"""
)

GROUP_ADD = """
-- KEYS: normal members; ARGV: score (ms), member, ttl ms
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""

GROUP_ADD_LOCAL = """
-- KEYS: processes with local members, this process's members
-- ARGV: score (ms), suffix, process (non-local name), ttl ms
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""

GROUP_DISCARD_LOCAL = """
-- KEYS: processes with local members, this process's members; ARGV: suffix, process
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[2]) end
return 0
"""

SETTLE = (
    _TRIM_EXPIRED
    + """
-- What a receiving process reports back in one batch for one of its inboxes.
-- KEYS: pending counts, shard totals
-- ARGV: taken direct-send suffixes (csv; lowers pending counts), key base, now ms, inbox
--       name, group messages accepted (csv suffixes), refused (csv suffixes), stats on ('1'/'0')
local function each(csv, fn)
  if csv == '' then return end
  local seen = {}
  for suffix in string.gmatch(csv .. ',', '([^,]*),') do seen[suffix] = (seen[suffix] or 0) + 1 end
  for suffix, amount in pairs(seen) do fn(suffix, amount) end
end
each(ARGV[1], function(suffix, amount)
  if redis.call('HINCRBY', KEYS[1], suffix, -amount) <= 0 then
    redis.call('HDEL', KEYS[1], suffix)
  end
end)
if ARGV[7] == '1' then
  local hour = math.floor(tonumber(ARGV[3]) / 3600000)
  for kind, csv in pairs({sc = ARGV[5], sf = ARGV[6]}) do
    local key = ARGV[2] .. ':' .. kind .. ':' .. hour
    each(csv, function(suffix, amount)
      redis.call('HINCRBY', key, ARGV[4] .. suffix, amount)
      count_second(ARGV[2], kind, tonumber(ARGV[3]), ARGV[4] .. suffix, amount)
    end)
    if csv ~= '' then redis.call('PEXPIRE', key, 7200000) end
  end
end
for field, csv in pairs({count = ARGV[5], full = ARGV[6]}) do
  if csv ~= '' then
    local _, commas = string.gsub(csv, ',', '')
    redis.call('HINCRBY', KEYS[2], field, commas + 1)
    local kind = 'sc'
    if field == 'full' then kind = 'sf' end
    count_second(ARGV[2], kind, tonumber(ARGV[3]), '*', commas + 1)
  end
end
return 0
"""
)

STATISTICS = (
    _TRIM_EXPIRED
    + """
-- KEYS: queue (normal channel or inbox), pending counts (unused for a normal channel)
-- ARGV: now ms, suffix ('' for a normal channel), key base, channel, scan limit
-- returns {accepted, refused, pending, oldest element expiry ms or -1}
local now, base, channel = tonumber(ARGV[1]), ARGV[3], ARGV[4]
local function window_sum(kind)
  local total = 0
  for back = 0, 1 do
    local key = base .. ':' .. kind .. ':' .. (math.floor(now / 3600000) - back)
    total = total + tonumber(redis.call('HGET', key, channel) or '0')
  end
  return total
end
local accepted, refused = window_sum('sc'), window_sum('sf')
local last_second = math.floor(now / 1000) - 1
local function last_second_of(kind)
  return tonumber(redis.call('HGET', base .. ':r' .. kind .. ':' .. last_second, channel) or '0')
end
local per_second = {last_second_of('sc'), last_second_of('sf')}
if ARGV[2] == '' and not string.find(channel, '!', 1, true) then
  trim_expired(KEYS[1], now)
  local head = redis.call('LINDEX', KEYS[1], 0)
  local oldest = -1
  if head then oldest = tonumber(string.sub(head, 1, 13)) end
  return {accepted, refused, redis.call('LLEN', KEYS[1]), oldest, per_second[1], per_second[2]}
end
local pending = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local oldest = -1
local needle = ',' .. ARGV[2] .. ','
for _, element in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[5]))) do
  local zero = string.find(element, '\0', 14, true)
  if string.find(',' .. string.sub(element, 14, zero - 1) .. ',', needle, 1, true) then
    oldest = tonumber(string.sub(element, 1, 13))
    break
  end
end
return {accepted, refused, pending, oldest, per_second[1], per_second[2]}
"""
)

GLOBAL_STATISTICS = """
-- KEYS: shard totals
-- ARGV: key base, now ms
-- returns {accepted, refused, accepted last second, refused last second}
local last_second = math.floor(tonumber(ARGV[2]) / 1000) - 1
local function last_second_of(kind)
  return tonumber(redis.call('HGET', ARGV[1] .. ':r' .. kind .. ':' .. last_second, '*') or '0')
end
local totals = redis.call('HMGET', KEYS[1], 'count', 'full')
return {tonumber(totals[1] or '0'), tonumber(totals[2] or '0'), last_second_of('sc'),
  last_second_of('sf')}
"""


def format_element(expires_ms: int, payload: bytes, targets: str = "") -> bytes:
    """Build a queue element (see the module docstring)."""
    return b"%013d%s\0%s" % (expires_ms, targets.encode(), payload)


def parse_element(element: bytes) -> tuple[int, str, bytes]:
    """Split an element into (expiry ms, comma-separated local target suffixes, payload)."""
    zero = element.index(b"\0", EXPIRY_DIGITS)
    return int(element[:EXPIRY_DIGITS]), element[EXPIRY_DIGITS:zero].decode(), element[zero + 1 :]
