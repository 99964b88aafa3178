"""The directory's Lua scripts: each one atomic step in Redis that checks the fencing epoch
(and the version, where it changes one) before it writes. Used by RedisDirectory only.
"""

# Fenced scripts get KEYS[1] = the epoch key, ARGV[1] = the caller's epoch, and answer {code, value}
# pairs: 1 ok (value = version), -1 stale epoch (current), -2 version mismatch (stored), -3 no entry,
# -4 missing payload, -5 entry exists.
_FENCE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < cur then return {-1, cur} end
"""
_REGISTER = _FENCE + """
if redis.call('EXISTS', KEYS[2]) == 1 then return {-5, 0} end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[3], ARGV[2])
return {1, 0}
"""
_COMMIT = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local out = {}
for i = 2, #KEYS do
  local code, value = 1, 0
  if tonumber(ARGV[1]) < cur then code, value = -1, cur
  elseif redis.call('EXISTS', KEYS[i]) == 0 then code = -3
  else
    value = tonumber(redis.call('HGET', KEYS[i], 'version'))
    if value ~= tonumber(ARGV[i]) then code = -2
    else value = value + 1; redis.call('HSET', KEYS[i], 'version', value, 'epoch', ARGV[1]) end
  end
  out[#out + 1] = code; out[#out + 1] = value
end
return out
"""
_MOVE = _FENCE + """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-3, 0} end
local v = tonumber(redis.call('HGET', KEYS[2], 'version'))
if ARGV[6] ~= '' and v ~= tonumber(ARGV[6]) then return {-2, v} end
if ARGV[5] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then return {-4, 0} end
redis.call('HSET', KEYS[2], 'worker_id', ARGV[2], 'slot', ARGV[3], 'tier', ARGV[4], 'payload_key', ARGV[5],
           'epoch', ARGV[1])
if ARGV[7] == '1' then   -- spill: payloads of lower versions are obsolete now
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[6])
  for _, k in ipairs(old) do redis.call('DEL', k) end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[6])
end
return {1, v}
"""
_REMOVE = _FENCE + """
for _, k in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do redis.call('DEL', k) end
local existed = redis.call('DEL', KEYS[2])
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('SREM', KEYS[3], ARGV[2])
return {1, existed}
"""
# NOTE: _REMOVE, _MOVE (spill), _ENTRIES and _LIVE touch keys they read from data, fine for one
# Redis (or Sentinel); Redis Cluster would need hash tags on the namespace.
_SESSION = _FENCE + """
if redis.call('EXISTS', KEYS[2]) == 0 then return {-3, 0} end
local v = tonumber(redis.call('HGET', KEYS[2], 'version'))
if ARGV[2] ~= '' then
  if tonumber(ARGV[2]) > v then return {-2, v} end
  v = tonumber(ARGV[2])
  redis.call('HSET', KEYS[2], 'version', v, 'epoch', ARGV[1])
end
redis.call('HSET', KEYS[2], 'request', ARGV[3])
redis.call('DEL', KEYS[3])
return {1, v}
"""
_RESYNC = _FENCE + """
redis.call('DEL', KEYS[2], KEYS[4])
redis.call('HSET', KEYS[2], unpack(ARGV, 4, 3 + 2 * tonumber(ARGV[3])))
redis.call('SADD', KEYS[3], ARGV[2])
if #ARGV > 3 + 2 * tonumber(ARGV[3]) then redis.call('RPUSH', KEYS[4], unpack(ARGV, 4 + 2 * tonumber(ARGV[3]))) end
return {1, 0}
"""
_ASSERT_EPOCH = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return cur
"""
_ENTRIES = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. id, unpack(ARGV, 2))
  if f[1] then out[#out + 1] = f end
end
return out
"""
_LIVE = """
local out = {}
for _, w in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. w) == 1 then out[#out + 1] = w end
end
return out
"""
