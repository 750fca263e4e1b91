"""Lua scripts of groups with history or presence, and the keys they share.

Key layout
----------
Everything about such a group lives on the shard of the *group name* (``G`` below is that
shard's hash tag ``{<prefix>.<n>}``), so one script call sees the group's history, members and
presence together, also on a Redis Cluster:

* ``G:h:<group>`` -- stream of the kept messages; entry id ``<offset>-0``, fields ``t`` (send
  time, ms) and ``m`` (the serialized message as sent). ``XADD ... MAXLEN size`` keeps ``size``
  entries; entries older than the history ttl are trimmed (``XTRIM MINID``) before reads;
* ``G:hm:<group>`` -- hash ``e`` (epoch), ``o`` (newest offset). It expires together with the
  stream (history ttl after the last send) and vanishes with a flush or a restart without
  persistence; the next script call then starts a new epoch chosen by the caller;
* ``G:xn:<group>`` -- sorted set of normal-channel members ``"<home tag>|<capacity>|<channel>"``;
  ``G:xl:<group>`` the processes with local members ``"<home tag>|<non-local name>"``,
  ``G:xm:<group>:<non-local>`` their suffixes (scores: time of ``group_add``, for
  ``group_expiry``). The *home tag* says where the member's copies go: for a local channel
  the group's own tag (processes read their inboxes on every shard), for a normal channel the
  tag of the channel's shard, where its queue is read;
* ``G:pz:<group>`` -- sorted set ``channel -> presence expiry (ms)``; ``G:pi:<group>`` hash
  ``channel -> serialized presence.leave event`` (which carries the member's info, so a script
  that notices an expired member can send it as is), ``G:ph:<group>`` ``channel -> membership
  entry`` (for a local channel: its home tag). Counting is one ``ZCOUNT``.

Delivery
--------
A copy for a member whose home tag is ``G`` is pushed by the script itself. Copies for normal
channels homed on other shards are returned to the caller as ``home tag, key, capacity,
element`` and forwarded with one :data:`FORWARD` call per such shard (none with one server).

A delivered copy of a history message is an ordinary queue element (see
:mod:`headrace.layers.redis.scripts`) whose payload is ``\\0<epoch>:<offset>\\0<payload>``; the
serializer turns that prefix into the message's ``__position__`` key (a real payload never
starts with a zero byte).
"""

from __future__ import annotations

from headrace.layers.redis.scripts import _TRIM_EXPIRED

FRAME = ">dI"
"""The header of each entry in HISTORY's answer: offset (a double), payload length."""

__all__ = [
    "FORWARD",
    "FRAME",
    "HISTORY",
    "MEMBER_ADD",
    "MEMBER_DISCARD",
    "PRESENCE",
    "SEND",
    "SWEEP",
]

_FAN_OUT = (
    _TRIM_EXPIRED
    + """
-- Push element_head .. targets .. body to every member of the group; copies for members on
-- other shards go to the 'foreign' list. Returns the number of copies pushed here.
local function fan_out(base, group, now, cutoff, ttl, head, body, foreign)
  local pushed = 0
  local normal = base .. ':xn:' .. group
  redis.call('ZREMRANGEBYSCORE', normal, '-inf', cutoff)
  for _, member in ipairs(redis.call('ZRANGE', normal, 0, -1)) do
    local home, capacity, channel = string.match(member, '^([^|]*)|(%d+)|(.*)$')
    local queue = home .. ':c:' .. channel
    if home ~= base then
      table.insert(foreign, home); table.insert(foreign, queue)
      table.insert(foreign, capacity); table.insert(foreign, head .. body)
    else
      trim_expired(queue, now)
      if redis.call('LLEN', queue) < tonumber(capacity) then
        redis.call('RPUSH', queue, head .. body)
        redis.call('PEXPIRE', queue, ttl)
        pushed = pushed + 1
      end
    end
  end
  local processes = base .. ':xl:' .. group
  redis.call('ZREMRANGEBYSCORE', processes, '-inf', cutoff)
  for _, entry in ipairs(redis.call('ZRANGE', processes, 0, -1)) do
    local bar = string.find(entry, '|', 1, true)
    local home, nonlocal = string.sub(entry, 1, bar - 1), string.sub(entry, bar + 1)
    local members = base .. ':xm:' .. group .. ':' .. nonlocal
    redis.call('ZREMRANGEBYSCORE', members, '-inf', cutoff)
    local suffixes = redis.call('ZRANGE', members, 0, -1)
    if #suffixes == 0 then
      redis.call('ZREM', processes, entry)
    else
      local element = head .. '*' .. table.concat(suffixes, ',') .. body
      local inbox = home .. ':c:' .. nonlocal
      if home ~= base then
        table.insert(foreign, home); table.insert(foreign, inbox)
        table.insert(foreign, '0'); table.insert(foreign, element)
      else
        redis.call('RPUSH', inbox, element)
        redis.call('PEXPIRE', inbox, ttl)
        pushed = pushed + 1
      end
    end
  end
  return pushed
end
-- The server's clock in ms: presence expiry and history ttl use it, so the clocks of the
-- client machines do not matter.
local function server_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
-- Forget one member: 'entry' is its normal-member entry, or its home tag for a local channel.
local function drop_member(base, group, entry, channel)
  local bang = string.find(channel, '!', 1, true)
  if not bang then
    redis.call('ZREM', base .. ':xn:' .. group, entry)
    return
  end
  local nonlocal = string.sub(channel, 1, bang)
  local members = base .. ':xm:' .. group .. ':' .. nonlocal
  redis.call('ZREM', members, string.sub(channel, bang + 1))
  if redis.call('ZCARD', members) == 0 then
    redis.call('ZREM', base .. ':xl:' .. group, entry .. '|' .. nonlocal)
  end
end
-- The newest epoch of the group, starting a new one (offset 0) when history was lost.
local function current_epoch(stream, meta, candidate, ttl)
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    epoch = candidate
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'e', epoch, 'o', 0)
    redis.call('PEXPIRE', meta, ttl)
  end
  return epoch
end
"""
)

_SWEEP = """
-- Remove members whose presence expired; tell the others (events '1'). Returns their count.
local function sweep(base, group, now, cutoff, ttl, head, events, foreign)
  local expiry, infos = base .. ':pz:' .. group, base .. ':pi:' .. group
  local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', server_ms())
  for _, channel in ipairs(gone) do
    local info = redis.call('HGET', infos, channel) or ''
    redis.call('ZREM', expiry, channel)
    redis.call('HDEL', infos, channel)
    local entry = redis.call('HGET', base .. ':ph:' .. group, channel) or base
    redis.call('HDEL', base .. ':ph:' .. group, channel)
    drop_member(base, group, entry, channel)
    if events == '1' then
      local body = '\\0' .. info
      fan_out(base, group, now, cutoff, ttl, head, body, foreign)
    end
  end
  return #gone
end
"""

SEND = (
    _FAN_OUT
    + """
-- KEYS: stream, meta, dedupe marker, shard totals
-- ARGV: now ms, membership cutoff ms, queue ttl ms, expiry digits, payload, key base,
--       dedupe ttl ms, group, history size (0: no history), history ttl ms, candidate epoch
-- returns {position 'epoch:offset' or '', foreign copies}
local done = redis.call('GET', KEYS[3])
if done then return {done, {}} end
local now, base = tonumber(ARGV[1]), ARGV[6]
local position, body = '', '\\0' .. ARGV[5]
if ARGV[9] ~= '0' then
  local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[11], ARGV[10])
  local offset = redis.call('HINCRBY', KEYS[2], 'o', 1)
  local sent = server_ms()
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[9], offset .. '-0', 't', sent, 'm', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
  redis.call('PEXPIRE', KEYS[2], ARGV[10])
  position = epoch .. ':' .. offset
  body = '\\0\\0' .. position .. '\\0' .. ARGV[5]
end
redis.call('SET', KEYS[3], position, 'PX', ARGV[7])
local foreign = {}
local pushed = fan_out(base, ARGV[8], now, ARGV[2], ARGV[3], ARGV[4], body, foreign)
redis.call('HINCRBY', KEYS[4], 'count', pushed)
return {position, foreign}
"""
)

HISTORY = (
    _FAN_OUT
    + """
-- KEYS: stream, meta
-- ARGV: now ms, history ttl ms, candidate epoch, since epoch ('' for none), since offset,
--       limit ('' for none)
-- Not recovered (another epoch, or messages after 'since' already dropped): every kept one.
-- returns {epoch, newest offset, recovered 0/1, framed entries (see below)}
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[3], ARGV[2])
local newest = tonumber(redis.call('HGET', KEYS[2], 'o'))
-- drop entries older than the ttl (the oldest first: ids grow with time); each goes once
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local cutoff = server_ms() - ttl
while #head > 0 and tonumber(head[1][2][2]) <= cutoff do
  redis.call('XDEL', KEYS[1], head[1][1])
  head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
end
local oldest = newest + 1
if #head > 0 then oldest = tonumber(string.match(head[1][1], '^%d+')) end
local start, recovered = '-', 1
if ARGV[4] ~= '' then
  local since = tonumber(ARGV[5])
  if ARGV[4] ~= epoch or since > newest or since + 1 < oldest then
    recovered = 0
  elseif since >= newest then
    return {epoch, newest, recovered, ''}
  else
    start = (since + 1) .. '-0'
  end
end
if ARGV[6] == '0' then return {epoch, newest, recovered, ''} end
local entries
if ARGV[6] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[6])
else
  entries = redis.call('XRANGE', KEYS[1], start, '+')
end
-- one bulk string (cheap to parse): per entry a big-endian double offset, a 4-byte length, the
-- payload
local frames = {}
for _, entry in ipairs(entries) do
  local payload = entry[2][4]
  table.insert(frames, struct.pack('>dI4', tonumber(string.match(entry[1], '^%d+')), #payload))
  table.insert(frames, payload)
end
return {epoch, newest, recovered, table.concat(frames)}
"""
)

MEMBER_ADD = (
    _FAN_OUT
    + _SWEEP
    + """
-- KEYS: none used directly (all keys are built from the group's tag)
-- ARGV: now ms, membership ttl ms, key base, group, home tag, channel, capacity,
--       presence ttl ms (0: no presence), serialized leave event (kept as the member's info),
--       events ('1'/'0'), membership cutoff ms, queue ttl ms, expiry digits,
--       serialized join event
-- returns the foreign copies of any events
local now, base, group, home, channel = tonumber(ARGV[1]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local bang = string.find(channel, '!', 1, true)
local entry = home
if not bang then
  entry = home .. '|' .. ARGV[7] .. '|' .. channel
  redis.call('ZADD', base .. ':xn:' .. group, now, entry)
  redis.call('PEXPIRE', base .. ':xn:' .. group, ARGV[2])
else
  local nonlocal = string.sub(channel, 1, bang)
  local members = base .. ':xm:' .. group .. ':' .. nonlocal
  redis.call('ZADD', members, now, string.sub(channel, bang + 1))
  redis.call('PEXPIRE', members, ARGV[2])
  redis.call('ZADD', base .. ':xl:' .. group, now, home .. '|' .. nonlocal)
  redis.call('PEXPIRE', base .. ':xl:' .. group, ARGV[2])
end
local foreign = {}
if ARGV[8] == '0' then return foreign end
sweep(base, group, now, ARGV[11], ARGV[12], ARGV[13], ARGV[10], foreign)
local expiry, infos = base .. ':pz:' .. group, base .. ':pi:' .. group
local joined = redis.call('ZADD', expiry, server_ms() + tonumber(ARGV[8]), channel)
redis.call('HSET', infos, channel, ARGV[9])
redis.call('HSET', base .. ':ph:' .. group, channel, entry)
for _, key in ipairs({expiry, infos, base .. ':ph:' .. group}) do
  redis.call('PEXPIRE', key, ARGV[2])
end
if joined == 1 and ARGV[10] == '1' then
  local body = '\\0' .. ARGV[14]
  fan_out(base, group, now, ARGV[11], ARGV[12], ARGV[13], body, foreign)
end
return foreign
"""
)

MEMBER_DISCARD = (
    _FAN_OUT
    + """
-- ARGV: now ms, key base, group, membership entry (normal channel) or home tag (local
--       channel), channel, events ('1'/'0'), membership cutoff ms,
--       queue ttl ms, expiry digits
-- returns the foreign copies of the leave event
local now, base, group, channel = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[5]
drop_member(base, group, ARGV[4], channel)
local foreign = {}
local info = redis.call('HGET', base .. ':pi:' .. group, channel)
if not info then return foreign end
redis.call('ZREM', base .. ':pz:' .. group, channel)
redis.call('HDEL', base .. ':pi:' .. group, channel)
redis.call('HDEL', base .. ':ph:' .. group, channel)
if ARGV[6] == '1' then
  local body = '\\0' .. info
  fan_out(base, group, now, ARGV[7], ARGV[8], ARGV[9], body, foreign)
end
return foreign
"""
)

SWEEP = (
    _FAN_OUT
    + _SWEEP
    + """
-- Heartbeat and expiry check of one group.
-- ARGV: now ms, key base, group, presence ttl ms, events, membership cutoff ms, queue ttl ms,
--       expiry digits, (unused), channels to refresh...
-- returns {foreign copies of leave events}
local now, base, group = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local expiry = base .. ':pz:' .. group
local until_ms = server_ms() + tonumber(ARGV[4])
for index = 10, #ARGV do
  redis.call('ZADD', expiry, 'XX', until_ms, ARGV[index])
end
local foreign = {}
sweep(base, group, now, ARGV[6], ARGV[7], ARGV[8], ARGV[5], foreign)
return foreign
"""
)

PRESENCE = (
    _FAN_OUT
    + _SWEEP
    + """
-- ARGV: now ms, key base, group, count only ('1'/'0'), events, membership cutoff ms,
--       queue ttl ms, expiry digits
-- returns {count or {channel, info, ...}, foreign copies of leave events}
local now, base, group = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local foreign = {}
sweep(base, group, now, ARGV[6], ARGV[7], ARGV[8], ARGV[5], foreign)
if ARGV[4] == '1' then
  return {redis.call('ZCOUNT', base .. ':pz:' .. group, '(' .. server_ms(), '+inf'), foreign}
end
return {redis.call('HGETALL', base .. ':pi:' .. group), foreign}
"""
)

FORWARD = (
    _TRIM_EXPIRED
    + """
-- Copies of a history or presence group's message for members homed on this shard.
-- ARGV: now ms, queue ttl ms, then triples key, capacity (0: an inbox), element
local now = tonumber(ARGV[1])
for index = 3, #ARGV, 3 do
  local key, capacity = ARGV[index], tonumber(ARGV[index + 1])
  if capacity == 0 then
    redis.call('RPUSH', key, ARGV[index + 2])
    redis.call('PEXPIRE', key, ARGV[2])
  else
    trim_expired(key, now)
    if redis.call('LLEN', key) < capacity then
      redis.call('RPUSH', key, ARGV[index + 2])
      redis.call('PEXPIRE', key, ARGV[2])
    end
  end
end
return 0
"""
)
