#!lua name=imagegen_v1
--
-- imagegen queue library, version 1. Every state change of a job is one of these functions,
-- and the function that changes state also appends the event to the queue's stream.
--
-- Calling convention (any language, any Redis client):
--   FCALL imagegen_v1_<name> 1 <queue key> <ARGV...>
-- The single KEY is the queue's key prefix, `imagegen:{<queue>}`. Every key of the queue lives
-- under that prefix and shares its hash tag, so Redis Cluster routes the call to the one slot
-- that holds the whole queue; the per-job and per-tier keys are derived from it here.
--
-- Keys (P = the prefix):
--   P:config             HASH   queue settings (retention, caps, weights); defaults below
--   P:seq                STRING job id counter
--   P:fence              STRING fencing token counter
--   P:job:<id>           HASH   one job: spec JSON, state, lease, result      (TTL: retention)
--   P:idem:<key>         STRING idempotency key -> job id                       (TTL: retention)
--   P:t:<tier>:q:<user>  LIST   a user's queued jobs of a tier, next first (revisions before 16 kept
--                               them in one ZSET per tier, P:t:<tier>:jobs, moved over on first use)
--   P:t:<tier>:ring      ZSET   users of a tier with queued jobs, by turn      (round robin)
--   P:t:<tier>:parked    ZSET   users of a tier with queued jobs at their in-flight cap
--   P:sched              HASH   turn counters and smooth weighted round-robin state
--   P:inflight           HASH   user -> jobs active now, counted while the per-user cap is on
--   P:active             ZSET   job id -> lease deadline (ms)
--   P:delayed            ZSET   job id -> due time (ms)
--   P:workers            ZSET   worker id -> last heartbeat (ms)
--   P:gcra               HASH   backend budgets: theoretical arrival time (ms) of requests and images
--   P:throttle           HASH   the backend's shared state: pause, quota breaker, adaptive factor
--   P:u:<user>:rate      STRING the user's request budget: theoretical arrival time (ms)  (TTL: its own)
--   P:u:<user>:jobs      ZSET   a user's jobs, job id -> created (ms): history and purge    (TTL: retention)
--   P:dead               ZSET   job id -> time it died (ms), capped
--   P:events             STREAM lifecycle events, trimmed by age
--   P:wake               LIST   wake-up tokens for workers blocked in BLPOP
--   P:wh:<job id>        HASH   the job's webhook delivery: message id, URL, payload fields, attempts,
--                               lease token, status                                    (TTL: retention)
--   P:wh:due             ZSET   job id -> when its delivery is due (ms); while claimed, its lease deadline
--   P:wh:disabled        HASH   endpoint URL -> when it answered 410 Gone (ms)             (TTL: retention)
--   P:wh:default_url     STRING the deployment's default webhook URL (no user content)
--   P:wh:wake            LIST   wake-up tokens for webhook dispatchers blocked in BLPOP
--   P:blob:<key>         STRING the Redis blob store: uploads, and outputs (output:<job id>:<i>), which
--                               complete_stored writes with the completion             (TTL: their own)
-- Channels: P:nudge (event published: "<type> <job id>"), P:cancel (job id of a canceled
-- running job).
--
-- Every key that holds user content (job records, idempotency keys, queue structures that name
-- users, events, the dead set) carries a TTL no longer than the retention.

-- Raised with every change to this file. Clients load the library when the server's revision is
-- older than theirs (or missing), never when it is newer, so a rolling upgrade cannot go back.
local REVISION = 21

local TIERS = { 'pro', 'standard', 'free' }
local TIER_SET = { pro = true, standard = true, free = true }
-- Field names by tier, made once (the claim loop uses them for every job).
local WEIGHT_FIELD = { pro = 'weight_pro', standard = 'weight_standard', free = 'weight_free' }
local CW_FIELD = { pro = 'cw:pro', standard = 'cw:standard', free = 'cw:free' }
local TURN_FIELD = { pro = 'turn:pro', standard = 'turn:standard', free = 'turn:free' }
local STATES_TERMINAL = { succeeded = true, failed = true, canceled = true, dead = true }

local DEFAULTS = {
  retention_ms = 14 * 24 * 3600 * 1000,
  events_max_age_ms = 24 * 3600 * 1000,
  dead_max = 10000,
  max_attempts = 5,
  max_recoveries = 3,
  max_payload_bytes = 65536,
  lease_ms = 30000,
  user_inflight_cap = 4,
  global_inflight_cap = 0,
  worker_timeout_ms = 15000,
  requests_per_minute = 0,
  images_per_minute = 0,
  burst = 4,
  -- The backend budgets count over a minute this much longer than 60 s, so that calls reaching
  -- the provider a little earlier or later than admitted never crowd a minute of its own.
  window_margin_ms = 500,
  -- Tokens per minute (0: no budget). A job is charged tokens_per_image per image when claimed;
  -- the worker reports the provider's usage after the call (usage), which corrects the charge.
  tokens_per_minute = 0,
  tokens_per_image = 1100,
  -- Per-user request budget (GCRA), 0 for none, and the calls a user may start back to back.
  user_requests_per_minute = 0,
  user_burst = 2,
  -- The shared pause after a rate-limit 429 or a 503: Retry-After (capped), else the default,
  -- plus up to pause_jitter_ms.
  pause_default_ms = 2000,
  pause_max_ms = 120000,
  pause_jitter_ms = 500,
  -- How long claiming stops after a quota 429 before one probe job may go (half-open).
  quota_breaker_ms = 300000,
  -- Every rate-limit 429 (one per pause) multiplies the budgets by adaptive_shrink, down to
  -- adaptive_floor; every adaptive_period_ms without one adds adaptive_recovery, up to 1.
  adaptive_shrink = 0.8,
  adaptive_floor = 0.25,
  adaptive_recovery = 0.05,
  adaptive_period_ms = 60000,
  wake_max = 1024,
  weight_pro = 6,
  weight_standard = 3,
  weight_free = 1,
}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fail(code, message)
  return redis.error_reply('IMAGEGEN ' .. code .. ' ' .. message)
end

-- State that lives for one function call. Functions never run concurrently, and every registered
-- function goes through `entry`, which resets it and then writes what was deferred:
--   TOUCHED  keys to give the retention TTL, once per call however often they were written;
--   SCHED    the P:sched hash (turn counters, round-robin weights), read once, written once;
--   PARKED   whether any tier has parked users (one EXISTS per call).
--   IN_RING  users put in a ring during this call (enqueue_many meets the same users again).
local TOUCHED, SCHED, PARKED, IN_RING = {}, {}, {}, {}

-- Settings by queue prefix, with the config revision they were read at. `configure` and
-- `webhook_default` raise the revision (field `rev` of P:config), so one HGET per call tells
-- whether the cached table still holds; settings change only through those two functions.
local CONFIGS, CONFIG_COUNT = {}, 0

-- Moves queued jobs kept by revisions before 16 (one ZSET per tier, members "<user>\t<id>" in
-- order) into the users' lists, in order, ahead of anything queued since. Runs with every settings
-- load (once per queue after the library loads); finds nothing after the first time.
local function migrate_queues(P, c)
  for _, tier in ipairs(TIERS) do
    local old = P .. ':t:' .. tier .. ':jobs'
    local members = redis.call('ZRANGE', old, 0, -1)
    for i = #members, 1, -1 do
      local member = members[i]
      local tab = string.find(member, '\t', 1, true)
      if tab then
        local user, id = string.sub(member, 1, tab - 1), string.sub(member, tab + 1)
        local list = P .. ':t:' .. tier .. ':q:' .. user
        redis.call('LPUSH', list, id)
        redis.call('PEXPIRE', list, c.retention_ms)
      end
    end
    if #members > 0 then redis.call('DEL', old) end
  end
end

local function config(P)
  local rev = redis.call('HGET', P .. ':config', 'rev') or ''
  local cached = CONFIGS[P]
  if cached and cached.rev == rev then return cached.c end
  local c = {}
  for k, v in pairs(DEFAULTS) do c[k] = v end
  local raw = redis.call('HGETALL', P .. ':config')
  for i = 1, #raw, 2 do
    local v = tonumber(raw[i + 1])
    if v ~= nil and DEFAULTS[raw[i]] ~= nil then c[raw[i]] = v end
  end
  if c.events_max_age_ms > c.retention_ms then c.events_max_age_ms = c.retention_ms end
  c.retention_ms_s = string.format('%d', c.retention_ms)
  c.default_url = redis.call('GET', P .. ':wh:default_url') or false
  migrate_queues(P, c)
  if CONFIG_COUNT >= 256 then CONFIGS, CONFIG_COUNT = {}, 0 end
  if not cached then CONFIG_COUNT = CONFIG_COUNT + 1 end
  CONFIGS[P] = { rev = rev, c = c }
  return c
end

-- The per-tier keys of a queue (ring, jobs, parked), made once per queue.
local TIER_KEYS, TIER_KEYS_COUNT = {}, 0

local function tier_keys(P, tier)
  local k = TIER_KEYS[P]
  if not k then
    k = {}
    for _, t in ipairs(TIERS) do
      k[t] = { ring = P .. ':t:' .. t .. ':ring', queue = P .. ':t:' .. t .. ':q:', parked = P .. ':t:' .. t .. ':parked' }
    end
    if TIER_KEYS_COUNT >= 256 then TIER_KEYS, TIER_KEYS_COUNT = {}, 0 end
    TIER_KEYS_COUNT = TIER_KEYS_COUNT + 1
    TIER_KEYS[P] = k
  end
  return k[tier]
end

-- Marks a key for the retention TTL (set once, when the call ends).
local function touch(P, c, key)
  TOUCHED[key] = c.retention_ms_s
end

-- The P:sched hash, loaded on first use in a call.
local function sched(P)
  local s = SCHED[P]
  if s then return s end
  s = { values = {}, dirty = {} }
  local raw = redis.call('HGETALL', P .. ':sched')
  for i = 1, #raw, 2 do s.values[raw[i]] = tonumber(raw[i + 1]) or 0 end
  SCHED[P] = s
  return s
end

local function sched_get(P, field)
  return sched(P).values[field] or 0
end

local function sched_set(P, field, value)
  local s = sched(P)
  s.values[field] = value
  s.dirty[field] = true
end

-- The next turn of a tier's round robin: from the call's copy of P:sched when it has one, else
-- counted on the server (one enqueue needs one turn at most).
local function next_turn(P, tier)
  local field = TURN_FIELD[tier]
  if not SCHED[P] then return redis.call('HINCRBY', P .. ':sched', field, 1) end
  local turn = sched_get(P, field) + 1
  sched_set(P, field, turn)
  return turn
end

-- Whether any tier of the queue may have parked users (false skips every parked lookup).
local function any_parked(P)
  local any = PARKED[P]
  if any == nil then
    any = redis.call('EXISTS', P .. ':t:pro:parked', P .. ':t:standard:parked', P .. ':t:free:parked') > 0
    PARKED[P] = any
  end
  return any
end

-- A number as Redis would store it: integers without an exponent or a fraction. Numbers on the hot
-- paths go to redis.call as such strings: Lua's own conversion runs the C library's float printer
-- ('%.14g'), which cost about a microsecond of Redis time per job.
local function number_string(v)
  if v == math.floor(v) and v > -1e15 and v < 1e15 then return string.format('%d', v) end
  return string.format('%.17g', v)
end

-- Wraps a function: fresh per-call state, then the deferred writes.
local function entry(fn)
  return function(keys, args)
    TOUCHED, SCHED, PARKED, IN_RING = {}, {}, {}, {}
    local reply = fn(keys, args)
    for P, s in pairs(SCHED) do
      local out = {}
      for field in pairs(s.dirty) do
        out[#out + 1] = field
        out[#out + 1] = number_string(s.values[field])
      end
      if #out > 0 then redis.call('HSET', P .. ':sched', unpack(out)) end
    end
    for key, ms in pairs(TOUCHED) do redis.call('PEXPIRE', key, ms) end
    TOUCHED, SCHED, PARKED, IN_RING = {}, {}, {}, {}
    return reply
  end
end

-- Event fields that stay the same through a call: the time and the stream's trim point.
local EMIT_NOW, EMIT_C, EMIT_AT, EMIT_MINID = nil, nil, '', ''

-- Appends an event and publishes the nudge. `extra` is a flat list of field, value.
local function emit(P, c, now, kind, id, user, tier, extra)
  if now ~= EMIT_NOW or c ~= EMIT_C then
    EMIT_NOW, EMIT_C = now, c
    EMIT_AT, EMIT_MINID = string.format('%d', now), string.format('%d', now - c.events_max_age_ms)
  end
  local events = P .. ':events'
  local n = extra and #extra or 0
  local eid
  -- The usual shapes go straight to the call; others through a list.
  if n == 2 then
    eid = redis.call('XADD', events, 'MINID', '~', EMIT_MINID, '*', 'type', kind, 'job', id, 'user', user or '',
      'tier', tier or '', 'at', EMIT_AT, extra[1], extra[2])
  elseif n == 4 then
    eid = redis.call('XADD', events, 'MINID', '~', EMIT_MINID, '*', 'type', kind, 'job', id, 'user', user or '',
      'tier', tier or '', 'at', EMIT_AT, extra[1], extra[2], extra[3], extra[4])
  else
    local args = { events, 'MINID', '~', EMIT_MINID, '*',
      'type', kind, 'job', id, 'user', user or '', 'tier', tier or '', 'at', EMIT_AT }
    for i = 1, n do args[#args + 1] = tostring(extra[i]) end
    eid = redis.call('XADD', unpack(args))
  end
  touch(P, c, events)
  redis.call('PUBLISH', P .. ':nudge', kind .. ' ' .. id)
  return eid
end

local function wake(P, c, count)
  if count <= 0 then return end
  local tokens = {}
  for i = 1, math.min(count, c.wake_max) do tokens[i] = '1' end
  if redis.call('RPUSH', P .. ':wake', unpack(tokens)) > c.wake_max then
    redis.call('LTRIM', P .. ':wake', -c.wake_max, -1)
  end
end

-- Records the webhook delivery of a job that just reached terminal state `kind`, in the same
-- step as the state and its event `eid`: to the job's `webhook_url`, else the deployment's
-- default URL, unless there is neither or the endpoint was disabled (410). The payload fields are
-- references only: no prompt. `code` is the error code or dead reason, `result` the result JSON.
-- `hook` is the job's `hook` field ('1': the spec names a URL, '0': it does not), read here when nil;
-- jobs enqueued before the field existed have none and are looked at in full.
local function record_webhook(P, c, now, id, kind, eid, user, code, result, hook)
  local jk = P .. ':job:' .. id
  if hook == nil then hook = redis.call('HGET', jk, 'hook') end
  if hook == '0' and not c.default_url then return end
  local spec_json = redis.call('HGET', jk, 'spec') or ''
  if not string.find(spec_json, 'webhook_url', 1, true) and not c.default_url then return end
  local url, metadata = nil, '{}'
  local ok, spec = pcall(cjson.decode, spec_json)
  if ok and type(spec) == 'table' then
    if type(spec.webhook_url) == 'string' and spec.webhook_url ~= '' then url = spec.webhook_url end
    if type(spec.metadata) == 'table' and next(spec.metadata) ~= nil then metadata = cjson.encode(spec.metadata) end
  end
  url = url or c.default_url
  if not url or url == '' then return end
  if redis.call('HEXISTS', P .. ':wh:disabled', url) == 1 then return end
  local wk = P .. ':wh:' .. id
  redis.call('DEL', wk)
  redis.call('HSET', wk, 'msg', 'msg_' .. id .. '_' .. eid, 'job', id, 'url', url, 'state', kind, 'user', user,
    'at', now, 'code', code or '', 'result', result or '', 'metadata', metadata, 'attempts', 0, 'claims', 0,
    'token', '', 'status', 'pending', 'updated_ms', now)
  touch(P, c, wk)
  redis.call('ZADD', P .. ':wh:due', now, id)
  touch(P, c, P .. ':wh:due')
  redis.call('RPUSH', P .. ':wh:wake', '1')
  redis.call('LTRIM', P .. ':wh:wake', -64, -1)
  touch(P, c, P .. ':wh:wake')
end

-- Puts a job (state already set to queued) into its user's queue of its tier (at the back, or at
-- the front for a job handed back after it started) and its user into the ring.
local function push_ready(P, c, id, user, tier, front)
  local k = tier_keys(P, tier)
  local list, ring = k.queue .. user, k.ring
  redis.call(front and 'LPUSH' or 'RPUSH', list, id)
  touch(P, c, list)
  if IN_RING[ring .. '\t' .. user] then return end
  if not any_parked(P) or not redis.call('ZSCORE', k.parked, user) then
    redis.call('ZADD', ring, 'NX', number_string(next_turn(P, tier)), user)
    touch(P, c, ring)
    IN_RING[ring .. '\t' .. user] = true
  end
end

-- Moves a user's parked entries back to the rings (after one of its jobs stopped running).
-- Returns true when it moved any.
local function unpark(P, c, user)
  if not any_parked(P) then return false end
  local moved = false
  for _, tier in ipairs(TIERS) do
    local k = tier_keys(P, tier)
    local parked = k.parked
    local turn = redis.call('ZSCORE', parked, user)
    if turn then
      redis.call('ZREM', parked, user)
      local ring = k.ring
      redis.call('ZADD', ring, 'NX', turn, user)
      touch(P, c, ring)
      moved = true
    end
  end
  return moved
end

-- Ends a job's time as active: lease, in-flight count (when the job was counted: its `counted`
-- field is '0' when it was claimed while the per-user cap was off), parking. Returns true when a
-- parked user went back to a ring (a job became claimable).
local function leave_active(P, c, id, user, counted)
  redis.call('ZREM', P .. ':active', id)
  if counted ~= '0' then
    local left = redis.call('HINCRBY', P .. ':inflight', user, -1)
    if left <= 0 then redis.call('HDEL', P .. ':inflight', user) end
  end
  return unpark(P, c, user)
end

local function bury(P, c, now, id, user, tier, reason, message)
  local jk = P .. ':job:' .. id
  redis.call('HSET', jk, 'state', 'dead', 'dead_reason', reason, 'error_message', message or '',
    'token', '', 'updated_ms', now, 'finished_ms', now)
  redis.call('ZADD', P .. ':dead', now, id)
  touch(P, c, P .. ':dead')
  local excess = redis.call('ZCARD', P .. ':dead') - c.dead_max
  if excess > 0 then
    local old = redis.call('ZPOPMIN', P .. ':dead', excess)
    for i = 1, #old, 2 do
      redis.call('DEL', P .. ':job:' .. old[i], P .. ':wh:' .. old[i])
      redis.call('ZREM', P .. ':wh:due', old[i])
    end
  end
  local eid = emit(P, c, now, 'dead', id, user, tier, { 'reason', reason })
  record_webhook(P, c, now, id, 'dead', eid, user, reason, '')
end

-- A job whose worker vanished (lease expired or worker heartbeat gone) goes back to the queue,
-- or dies as poisoned after too many such recoveries. Not counted as an attempt.
local function recover(P, c, now, id, why)
  local jk = P .. ':job:' .. id
  local job = redis.call('HMGET', jk, 'state', 'user', 'tier', 'counted')
  if job[1] ~= 'active' then
    redis.call('ZREM', P .. ':active', id)
    return
  end
  local user, tier = job[2], job[3]
  leave_active(P, c, id, user, job[4])
  local recoveries = redis.call('HINCRBY', jk, 'recoveries', 1)
  if recoveries > c.max_recoveries then
    bury(P, c, now, id, user, tier, 'poisoned', 'the job was running on a worker that died ' .. recoveries .. ' times')
    return
  end
  redis.call('HSET', jk, 'state', 'queued', 'token', '', 'worker', '', 'updated_ms', now)
  push_ready(P, c, id, user, tier, true)
  emit(P, c, now, 'queued', id, user, tier, { 'reason', why, 'recoveries', recoveries })
  wake(P, c, 1)
end

local function recover_expired(P, c, now)
  local expired = redis.call('ZRANGEBYSCORE', P .. ':active', '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(expired) do recover(P, c, now, id, 'lease_expired') end
  local gone = redis.call('ZRANGEBYSCORE', P .. ':workers', '-inf', now - c.worker_timeout_ms, 'LIMIT', 0, 10)
  if #gone > 0 then
    local lost = {}
    for _, w in ipairs(gone) do
      redis.call('ZREM', P .. ':workers', w)
      lost[w] = true
    end
    for _, id in ipairs(redis.call('ZRANGE', P .. ':active', 0, -1)) do
      local w = redis.call('HGET', P .. ':job:' .. id, 'worker')
      if w and lost[w] then recover(P, c, now, id, 'worker_lost') end
    end
  end
end

local function promote_due(P, c, now)
  local due = redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', now, 'LIMIT', 0, 200)
  for _, id in ipairs(due) do
    redis.call('ZREM', P .. ':delayed', id)
    local jk = P .. ':job:' .. id
    local job = redis.call('HMGET', jk, 'state', 'user', 'tier')
    if job[1] == 'delayed' then
      redis.call('HSET', jk, 'state', 'queued', 'updated_ms', now)
      push_ready(P, c, id, job[2], job[3])
      emit(P, c, now, 'queued', id, job[2], job[3], { 'reason', 'due' })
    end
  end
end

local function validate(spec)
  if type(spec) ~= 'table' then return 'the job must be a JSON object' end
  if spec.version ~= 1 then return 'version: must be 1' end
  if type(spec.user) ~= 'string' or #spec.user < 1 or #spec.user > 128 or not string.match(spec.user, '^[%w%._@:%-]+$') then
    return 'user: 1-128 characters of letters, digits and . _ @ : -'
  end
  if not TIER_SET[spec.tier] then return 'tier: must be one of pro, standard, free' end
  if spec.kind ~= 'generate' and spec.kind ~= 'edit' then return 'kind: must be generate or edit' end
  if type(spec.prompt) ~= 'string' or #spec.prompt < 1 or #spec.prompt > 32000 then
    return 'prompt: 1 to 32000 bytes of text'
  end
  if spec.n ~= nil and (type(spec.n) ~= 'number' or spec.n < 1 or spec.n > 10 or spec.n % 1 ~= 0) then
    return 'n: a whole number from 1 to 10'
  end
  if spec.size ~= nil and (type(spec.size) ~= 'string' or not (spec.size == 'auto' or string.match(spec.size, '^%d+x%d+$'))) then
    return 'size: WIDTHxHEIGHT or auto'
  end
  if spec.inputs ~= nil and type(spec.inputs) ~= 'table' then return 'inputs: an array of upload ids' end
  if spec.kind == 'edit' and (spec.inputs == nil or #spec.inputs < 1) then return 'inputs: an edit needs at least one image' end
  if spec.inputs ~= nil and #spec.inputs > 16 then return 'inputs: at most 16 images' end
  return nil
end

-- Enqueues one job for enqueue and enqueue_many. `next_id` gives the next job id.
-- Returns the reply ({ id, 1 | 0 } or an error reply) and whether the job was queued now.
local function enqueue_one(P, c, now, json, idem, delay, next_id)
  if #json > c.max_payload_bytes then
    return fail('payload_too_large', 'the job is ' .. #json .. ' bytes; the limit is ' .. c.max_payload_bytes), false
  end
  if #idem > 256 then return fail('invalid_job', 'idempotency key: at most 256 bytes'), false end
  if idem ~= '' then
    local existing = redis.call('GET', P .. ':idem:' .. idem)
    if existing then return { existing, 0 }, false end
  end
  local ok, spec = pcall(cjson.decode, json)
  if not ok then return fail('invalid_job', 'the job is not valid JSON'), false end
  local problem = validate(spec)
  if problem then return fail('invalid_job', problem), false end
  local id = next_id()
  local jk = P .. ':job:' .. id
  local state = delay > 0 and 'delayed' or 'queued'
  local hook = (type(spec.webhook_url) == 'string' and spec.webhook_url ~= '') and '1' or '0'
  local at = string.format('%d', now)
  redis.call('HSET', jk, 'id', id, 'spec', json, 'user', spec.user, 'tier', spec.tier, 'kind', spec.kind,
    'state', state, 'attempts', '0', 'recoveries', '0', 'max_attempts', number_string(c.max_attempts),
    'cost', number_string(spec.n or 1),
    'created_ms', at, 'updated_ms', at, 'idem', idem, 'hook', hook)
  touch(P, c, jk)
  if idem ~= '' then redis.call('SET', P .. ':idem:' .. idem, id, 'PX', c.retention_ms) end
  local history = P .. ':u:' .. spec.user .. ':jobs'
  redis.call('ZADD', history, at, id)
  touch(P, c, history)
  if delay > 0 then
    redis.call('ZADD', P .. ':delayed', now + delay, id)
    touch(P, c, P .. ':delayed')
    emit(P, c, now, 'queued', id, spec.user, spec.tier, { 'reason', 'delayed', 'due_ms', now + delay })
    return { id, 1 }, false
  end
  push_ready(P, c, id, spec.user, spec.tier)
  emit(P, c, now, 'queued', id, spec.user, spec.tier, { 'reason', 'enqueued' })
  return { id, 1 }, true
end

-- enqueue: ARGV = job JSON, idempotency key ('' for none), delay ms ('' or 0 for none)
-- Reply: { job id, 1 if created / 0 if the idempotency key already named a job }
local function enqueue(keys, args)
  local P = keys[1]
  local c = config(P)
  local now = now_ms()
  local reply, queued = enqueue_one(P, c, now, args[1], args[2] or '', tonumber(args[3] or '0') or 0, function()
    return string.format('%012d', redis.call('INCR', P .. ':seq'))
  end)
  if queued then wake(P, c, 1) end
  return reply
end

-- enqueue_many: ARGV = job JSON, idempotency key, delay ms; repeated for every job (at most 1000).
-- Each job is enqueued exactly as enqueue would; one refused job does not affect the others.
-- Reply: per job, in order, enqueue's reply: { job id, 1 | 0 } or the IMAGEGEN error.
local function enqueue_many(keys, args)
  local P = keys[1]
  local c = config(P)
  local count = math.floor(#args / 3)
  if count > 1000 then return fail('invalid_job', 'at most 1000 jobs per call') end
  local now = now_ms()
  sched(P) -- many jobs: the turns are counted in the call's copy, written once
  local last = count > 0 and redis.call('INCRBY', P .. ':seq', count) or 0
  local next_seq = last - count + 1
  local next_id = function()
    local id = string.format('%012d', next_seq)
    next_seq = next_seq + 1
    return id
  end
  local reply, queued = {}, 0
  for i = 1, count * 3, 3 do
    local one, now_queued = enqueue_one(P, c, now, args[i], args[i + 1] or '', tonumber(args[i + 2] or '0') or 0, next_id)
    reply[#reply + 1] = one
    if now_queued then queued = queued + 1 end
  end
  wake(P, c, queued)
  return reply
end

-- Picks the tier to serve next by smooth weighted round robin among `eligible` tiers.
local function pick_tier(P, c, eligible)
  local total, best, best_cw = 0, nil, nil
  local cws = {}
  for _, tier in ipairs(TIERS) do
    if eligible[tier] then
      local w = c[WEIGHT_FIELD[tier]]
      local cw = sched_get(P, CW_FIELD[tier]) + w
      cws[tier] = cw
      total = total + w
      if best_cw == nil or cw > best_cw then best, best_cw = tier, cw end
    end
  end
  if best == nil then return nil end
  for tier, cw in pairs(cws) do
    if tier == best then cw = cw - total end
    sched_set(P, CW_FIELD[tier], cw)
  end
  return best
end

-- The backend's shared state (P:throttle) as a table of strings.
local function throttle_state(P)
  local s = {}
  local raw = redis.call('HGETALL', P .. ':throttle')
  for i = 1, #raw, 2 do s[raw[i]] = raw[i + 1] end
  return s
end

-- The adaptive factor (0 < f <= 1) after the clean periods since its last change, which it
-- records: every adaptive_period_ms without a rate-limit 429 adds adaptive_recovery.
local function adaptive_factor(P, c, now, s)
  local f = tonumber(s.factor or '1') or 1
  if f >= 1 then return 1 end
  local at = tonumber(s.factor_at or '') or now
  local periods = math.floor((now - at) / math.max(1, c.adaptive_period_ms))
  if periods >= 1 then
    f = math.min(1, f + periods * c.adaptive_recovery)
    if f >= 1 then
      redis.call('HDEL', P .. ':throttle', 'factor', 'factor_at')
      f = 1
    else
      redis.call('HSET', P .. ':throttle', 'factor', string.format('%.4f', f),
        'factor_at', at + periods * c.adaptive_period_ms)
    end
  end
  s.factor = tostring(f)
  return f
end

-- The emission interval (ms per unit) and the tolerance (ms) of a GCRA budget of `rate` units per
-- minute such that no sliding window of 60 s + `margin` ms ever holds more than `rate` units,
-- bursts included (a provider counting over a sliding minute never sees more): `burst` calls of
-- `unit` units each may go back to back, paid for by spacing the rest a little more.
local function gcra_interval(rate, burst, margin, unit)
  unit = unit or 1
  local extra = math.max(0, math.min(burst - 1, math.floor(rate / unit) - 1)) * unit
  local interval = (60000 + margin) / math.max(1, rate - extra)
  return interval, extra * interval
end

-- Global backend admission (GCRA on the server clock): requests per minute, and images per minute
-- where a job costs its image count, both times the adaptive factor. `burst` calls may go back to
-- back. Returns true and records the spend, or false and how many ms until the job would be admitted.
local function admit(P, c, now, cost, factor)
  local budgets = {}
  if c.requests_per_minute > 0 then
    budgets[#budgets + 1] = { 'requests', c.requests_per_minute * factor, 1 }
  end
  if c.images_per_minute > 0 then
    budgets[#budgets + 1] = { 'images', c.images_per_minute * factor, cost }
  end
  if c.tokens_per_minute > 0 then
    budgets[#budgets + 1] = { 'tokens', c.tokens_per_minute * factor, cost * c.tokens_per_image, c.tokens_per_image }
  end
  local wait = 0
  local next_tat = {}
  for i, budget in ipairs(budgets) do
    local interval, tolerance = gcra_interval(budget[2], c.burst, c.window_margin_ms, budget[4])
    local tat = math.max(now, tonumber(redis.call('HGET', P .. ':gcra', budget[1]) or '0'))
    if tat - now > tolerance + 0.01 then wait = math.max(wait, tat - now - tolerance) end
    next_tat[i] = tat + budget[3] * interval
  end
  if wait > 0 then return false, math.ceil(wait) end
  for i, budget in ipairs(budgets) do
    redis.call('HSET', P .. ':gcra', budget[1], string.format('%.3f', next_tat[i]))
  end
  return true, 0
end

-- The user's own request budget (GCRA). Returns true and the new theoretical arrival time to
-- record once the job is taken (nil without a budget), or false and ms until the user may start.
local function user_admit(P, c, now, user)
  if c.user_requests_per_minute <= 0 then return true, nil end
  local interval, tolerance = gcra_interval(c.user_requests_per_minute, c.user_burst, 0)
  local tat = math.max(now, tonumber(redis.call('GET', P .. ':u:' .. user .. ':rate') or '0'))
  if tat - now > tolerance + 0.01 then return false, math.ceil(tat - now - tolerance) end
  return true, tat + interval
end

-- Records a user's spend; the key expires once it no longer limits anything.
local function user_spend(P, now, user, tat)
  if tat == nil then return end
  redis.call('SET', P .. ':u:' .. user .. ':rate', string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
end

-- Whether claiming is open: nil, or ms to wait while a pause or the quota breaker holds.
-- `probe` is true when the breaker is half-open and this claim may take one probe job.
local function backend_gate(P, c, now, s)
  if s.breaker == 'open' then
    local until_ms = tonumber(s.breaker_until or '0') or 0
    if now < until_ms then return until_ms - now, false end
    redis.call('HSET', P .. ':throttle', 'breaker', 'half_open')
    redis.call('HDEL', P .. ':throttle', 'probe')
    s.breaker, s.probe = 'half_open', nil
  end
  if s.breaker == 'half_open' and s.probe ~= nil then
    -- The probe went out. A quota answer reopens the breaker (throttle); any other end closes it.
    local deadline = redis.call('ZSCORE', P .. ':active', s.probe)
    if deadline and redis.call('HGET', P .. ':job:' .. s.probe, 'state') == 'active' then
      return math.max(100, math.min(1000, tonumber(deadline) - now)), false
    end
    redis.call('HDEL', P .. ':throttle', 'breaker', 'breaker_until', 'probe')
    s.breaker = nil
  end
  local pause = tonumber(s.pause_until or '0') or 0
  if now < pause then return pause - now, false end
  return nil, s.breaker == 'half_open'
end

-- Takes the next job of `tier`, fairly across its users, if the backend budgets admit it.
-- Users over their own request budget keep their place and are passed over; `skip[tier]` counts
-- them (they stay at the head of the ring for the rest of this claim).
-- Returns the job id, user and fields (state, cost, attempts, recoveries, spec); or nil, 'budget',
-- ms when a backend budget said not yet; or nil, 'empty', ms or nil when the tier has nothing to
-- give (ms: when a passed-over user may start).
local function take_from_tier(P, c, now, tier, factor, skip, heads, batch)
  local k = tier_keys(P, tier)
  local ring, parked = k.ring, k.parked
  local user_wait = nil
  for _ = 1, 1000 do
    -- The ring's head users are read `batch` at a time: each one handled leaves the head (taken
    -- to the back, parked, removed, or passed over with skip), so the next of the batch is the
    -- next head, and users sent to the back come round again only after the batch.
    local read = heads[tier]
    if read == nil or read.pos > #read.list then
      read = { list = redis.call('ZRANGE', ring, skip[tier], skip[tier] + batch - 1, 'WITHSCORES'), pos = 1 }
      heads[tier] = read
    end
    if #read.list == 0 then return nil, 'empty', user_wait end
    local user, turn = read.list[read.pos], read.list[read.pos + 1]
    read.pos = read.pos + 2
    local list = k.queue .. user
    local at_cap = false
    if c.user_inflight_cap > 0 then
      at_cap = tonumber(redis.call('HGET', P .. ':inflight', user) or '0') >= c.user_inflight_cap
    end
    if at_cap then
      redis.call('ZREM', ring, user)
      IN_RING[ring .. '\t' .. user] = nil
      redis.call('ZADD', parked, turn, user)
      PARKED[P] = true
      touch(P, c, parked)
    else
      local user_ok, user_tat = user_admit(P, c, now, user)
      if not user_ok then
        skip[tier] = skip[tier] + 1
        if user_wait == nil or user_tat < user_wait then user_wait = user_tat end
      else
        local id = redis.call('LPOP', list)
        if not id then
          redis.call('ZREM', ring, user)
          IN_RING[ring .. '\t' .. user] = nil
        else
          local job = redis.call('HMGET', P .. ':job:' .. id, 'state', 'cost', 'attempts', 'recoveries', 'spec')
          if job[1] == 'queued' then
            local admitted, wait = admit(P, c, now, tonumber(job[2] or '1') or 1, factor)
            if not admitted then
              -- The job keeps its place.
              redis.call('LPUSH', list, id)
              return nil, 'budget', wait
            end
            user_spend(P, now, user, user_tat)
          end
          -- The user goes to the back of the ring, or leaves it when it has nothing more queued.
          if redis.call('LLEN', list) > 0 then
            redis.call('ZADD', ring, number_string(next_turn(P, tier)), user)
          else
            redis.call('ZREM', ring, user)
            IN_RING[ring .. '\t' .. user] = nil
          end
          if job[1] == 'queued' then return id, user, job end
          -- An expired or otherwise settled job: skip it.
        end
      end
    end
  end
  return nil, 'empty', user_wait
end

-- claim: ARGV = worker id, how many jobs at most (up to 1000)
-- Reply: { wait hint ms, then for each job: id, token, attempt, recoveries, spec JSON }
--   The wait hint says when a delayed job or a lease falls due, when the backend budgets or a
--   user's budget admit the next job, or when a pause or the quota breaker ends (-1: nothing
--   pending). While the backend is paused, or its quota breaker open, nothing is claimed; when the
--   breaker is half-open one job goes out as its probe.
local function claim_jobs(P, c, now, worker, want)
  redis.call('ZADD', P .. ':workers', string.format('%d', now), worker)
  touch(P, c, P .. ':workers')
  recover_expired(P, c, now)
  promote_due(P, c, now)
  if c.global_inflight_cap > 0 then
    want = math.min(want, c.global_inflight_cap - redis.call('ZCARD', P .. ':active'))
  end
  local state = throttle_state(P)
  local gate_wait, probe = backend_gate(P, c, now, state)
  local factor = adaptive_factor(P, c, now, state)
  if gate_wait ~= nil then want = 0 end
  if probe then want = math.min(want, 1) end
  local reply = { -1 }
  local eligible = {}
  if want > 0 then
    for _, tier in ipairs(TIERS) do
      eligible[tier] = redis.call('ZCARD', tier_keys(P, tier).ring) > 0
    end
  end
  local claimed = 0
  local admission_wait = gate_wait
  local skip = { pro = 0, standard = 0, free = 0 }
  local heads = {}
  local now_s = string.format('%d', now)
  local lease_s = string.format('%d', now + c.lease_ms)
  local active = {}
  local token_next, token_last = 1, 0
  while claimed < want do
    local tier = pick_tier(P, c, eligible)
    if tier == nil then break end
    local id, user, job = take_from_tier(P, c, now, tier, factor, skip, heads, want - claimed)
    if id == nil and user == 'budget' then
      -- A backend budget is spent: nothing more this call, whatever the tier.
      admission_wait = job
      break
    elseif id == nil then
      eligible[tier] = false
      if job ~= nil and (admission_wait == nil or job < admission_wait) then admission_wait = job end
    else
      if probe then redis.call('HSET', P .. ':throttle', 'probe', id) end
      if token_next > token_last then
        -- Fencing tokens for the rest of this claim, reserved at once.
        token_last = redis.call('INCRBY', P .. ':fence', want - claimed)
        token_next = token_last - (want - claimed) + 1
      end
      local token = string.format('%d', token_next)
      token_next = token_next + 1
      local attempt = (tonumber(job[3]) or 0) + 1
      -- Jobs running per user are counted only while the per-user cap is on (nothing else reads
      -- them); the job remembers whether it was, so its end undoes exactly what its claim did.
      local counted = c.user_inflight_cap > 0 and '1' or '0'
      redis.call('HSET', P .. ':job:' .. id, 'state', 'active', 'token', token, 'worker', worker,
        'lease_until', lease_s, 'started_ms', now_s, 'updated_ms', now_s, 'stage', '', 'counted', counted)
      active[#active + 1] = lease_s
      active[#active + 1] = id
      if counted == '1' then
        redis.call('HINCRBY', P .. ':inflight', user, 1)
        touch(P, c, P .. ':inflight')
      end
      emit(P, c, now, 'started', id, user, tier, { 'worker', worker, 'attempt', string.format('%d', attempt) })
      reply[#reply + 1] = id
      reply[#reply + 1] = token
      reply[#reply + 1] = attempt
      reply[#reply + 1] = tonumber(job[4]) or 0
      reply[#reply + 1] = job[5]
      claimed = claimed + 1
    end
  end
  if #active > 0 then
    redis.call('ZADD', P .. ':active', unpack(active))
    touch(P, c, P .. ':active')
  end
  if claimed < want then
    -- Nothing more is claimable now: wake-up tokens left so far are stale. Any later change that
    -- makes a job claimable pushes a fresh one.
    redis.call('DEL', P .. ':wake')
  end
  if claimed == 0 and gate_wait == nil then
    local nexts = {}
    local d = redis.call('ZRANGE', P .. ':delayed', 0, 0, 'WITHSCORES')
    if #d > 0 then nexts[#nexts + 1] = tonumber(d[2]) end
    local a = redis.call('ZRANGE', P .. ':active', 0, 0, 'WITHSCORES')
    if #a > 0 then nexts[#nexts + 1] = tonumber(a[2]) end
    if #nexts > 0 then reply[1] = math.max(0, math.min(unpack(nexts)) - now) end
  end
  if admission_wait ~= nil and (reply[1] < 0 or admission_wait < reply[1]) then reply[1] = admission_wait end
  return reply
end

local function claim(keys, args)
  local P = keys[1]
  return claim_jobs(P, config(P), now_ms(), args[1], math.min(1000, tonumber(args[2]) or 1))
end

-- Loads a job for a state change by its lease holder. Returns the fields or an error reply.
local function fenced(P, id, token)
  local jk = P .. ':job:' .. id
  local job = redis.call('HMGET', jk, 'state', 'token', 'user', 'tier', 'hook', 'counted')
  if job[1] ~= 'active' or job[2] ~= token then
    return nil, fail('fenced', 'job ' .. id .. ' is not held by this lease (state ' .. tostring(job[1] or 'missing') .. ')')
  end
  return { jk = jk, user = job[3], tier = job[4], hook = job[5], counted = job[6] }
end

-- heartbeat: ARGV = worker id, then job id, token pairs
-- Reply: the job ids whose lease this worker no longer holds (stop working on them).
local function heartbeat(keys, args)
  local P = keys[1]
  local c = config(P)
  local now = now_ms()
  redis.call('ZADD', P .. ':workers', now, args[1])
  touch(P, c, P .. ':workers')
  local lost = {}
  for i = 2, #args - 1, 2 do
    local id, token = args[i], args[i + 1]
    local job = fenced(P, id, token)
    if job then
      redis.call('HSET', job.jk, 'lease_until', now + c.lease_ms)
      redis.call('ZADD', P .. ':active', 'XX', now + c.lease_ms, id)
    else
      lost[#lost + 1] = id
    end
  end
  return lost
end

-- progress: ARGV = job id, token, stage, detail ('' for none)
local function progress(keys, args)
  local P = keys[1]
  local c = config(P)
  local job, err = fenced(P, args[1], args[2])
  if not job then return err end
  local now = now_ms()
  redis.call('HSET', job.jk, 'stage', args[3], 'updated_ms', now)
  emit(P, c, now, 'progress', args[1], job.user, job.tier, { 'stage', args[3], 'detail', args[4] or '' })
  return 1
end

-- Corrects the token budget by what the provider billed for job `id` (`used` tokens) against the
-- estimate charged at claim (its cost times tokens_per_image). Returns the difference.
local function correct_tokens(P, c, now, id, used)
  local cost = tonumber(redis.call('HGET', P .. ':job:' .. id, 'cost') or '1') or 1
  local delta = math.floor(used - cost * c.tokens_per_image)
  local factor = adaptive_factor(P, c, now, throttle_state(P))
  local interval = gcra_interval(c.tokens_per_minute * factor, c.burst, c.window_margin_ms, c.tokens_per_image)
  local tat = tonumber(redis.call('HGET', P .. ':gcra', 'tokens') or '0') or 0
  redis.call('HSET', P .. ':gcra', 'tokens', string.format('%.3f', math.max(now, tat) + delta * interval))
  return delta
end

-- Completes one job for complete, complete_many and complete_stored. Returns the reply (1 or the
-- error reply) and whether the job's end made another job claimable (a parked user went back to
-- its ring). `outputs` (optional): { ttl = ms, key, bytes, key, bytes, ... }, written only when
-- the lease holds.
local function complete_one(P, c, now, id, token, result, outputs)
  local job, err = fenced(P, id, token)
  if not job then return err, false end
  if outputs then
    for i = 1, #outputs, 2 do
      redis.call('SET', P .. ':blob:' .. outputs[i], outputs[i + 1], 'PX', outputs.ttl)
    end
  end
  if c.tokens_per_minute > 0 then
    local ok, decoded = pcall(cjson.decode, result)
    if ok and type(decoded) == 'table' and type(decoded.usage) == 'table'
        and (decoded.usage.input_tokens ~= nil or decoded.usage.output_tokens ~= nil) then
      local used = (tonumber(decoded.usage.input_tokens) or 0) + (tonumber(decoded.usage.output_tokens) or 0)
      correct_tokens(P, c, now, id, math.max(0, used))
    end
  end
  local at = now == EMIT_NOW and EMIT_AT or string.format('%d', now)
  redis.call('HSET', job.jk, 'state', 'succeeded', 'result', result, 'token', '', 'updated_ms', at, 'finished_ms', at)
  touch(P, c, job.jk)
  local unparked = leave_active(P, c, id, job.user, job.counted)
  local eid = emit(P, c, now, 'succeeded', id, job.user, job.tier, { 'result', result })
  record_webhook(P, c, now, id, 'succeeded', eid, job.user, '', result, job.hook or false)
  return 1, unparked
end

-- complete: ARGV = job id, token, result JSON (output references, usage, durations);
-- with a token budget, the usage in the result corrects it (no separate call)
local function complete(keys, args)
  local P = keys[1]
  local c = config(P)
  local reply, unparked = complete_one(P, c, now_ms(), args[1], args[2], args[3])
  -- A freed slot matters to waiting workers only through a user's or the queue's in-flight cap.
  if unparked or c.global_inflight_cap > 0 then wake(P, c, 1) end
  return reply
end

-- Completes a batch ({ id, token, result, claim, outputs } each) and claims, in the same step, the
-- jobs the completed ones asked for. Reply: complete_many's.
local function complete_batch(P, c, worker, jobs)
  local now = now_ms()
  local results, wakes, want = {}, 0, 0
  for _, job in ipairs(jobs) do
    local one, unparked = complete_one(P, c, now, job[1], job[2], job[3], job[5])
    results[#results + 1] = one
    if one == 1 then want = want + (tonumber(job[4]) or 0) end
    if unparked or c.global_inflight_cap > 0 then wakes = wakes + 1 end
  end
  local claimed = { -1 }
  if want > 0 and worker ~= '' then
    want = math.min(want, 1000)
    claimed = claim_jobs(P, c, now, worker, want)
    -- The claim took what it could; a wake-up is for jobs it left behind.
    if #claimed < 1 + 5 * want then wakes = 0 end
  end
  wake(P, c, wakes)
  return { results, claimed }
end

-- complete_many: ARGV = worker id ('' to claim nothing), then for every job (at most 1000): job id,
-- token, result JSON, how many jobs to claim once it is complete (0: none). Each job is completed
-- exactly as complete would; then, in the same step, the jobs to claim for those that completed are
-- claimed for the worker exactly as claim would (the slots the completed jobs free take their next
-- jobs without another round trip).
-- Reply: { per job, in order, 1 or the IMAGEGEN error; claim's reply ({ -1 } when none was asked) }
local function complete_many(keys, args)
  local count = math.floor((#args - 1) / 4)
  if count > 1000 then return fail('invalid_job', 'at most 1000 jobs per call') end
  local jobs = {}
  for i = 2, 1 + count * 4, 4 do jobs[#jobs + 1] = { args[i], args[i + 1], args[i + 2], args[i + 3] } end
  return complete_batch(keys[1], config(keys[1]), args[1], jobs)
end

-- complete_stored: complete_many whose jobs bring their outputs, written in the same step.
-- ARGV = worker id, then for every job (at most 1000): job id, token, result JSON, jobs to claim,
-- the outputs' time to live in ms, the number of outputs n (0-10), then n pairs of blob key and
-- bytes. Output i (from 0) must be the blob key output:<job id>:<i>, the key purge_user and
-- delete_job remove; it is stored at P:blob:<key> only when the job's lease holds, so a fenced
-- completion leaves nothing behind. Reply: complete_many's.
local function complete_stored(keys, args)
  local jobs, i = {}, 2
  while i <= #args do
    if #jobs == 1000 then return fail('invalid_job', 'at most 1000 jobs per call') end
    local id, n, ttl = args[i], tonumber(args[i + 5]), tonumber(args[i + 4])
    if not n or n < 0 or n > 10 or n % 1 ~= 0 or not ttl or ttl < 1 or i + 5 + 2 * n > #args then
      return fail('invalid_job', 'complete_stored: job ' .. tostring(id) .. ' has a malformed output list')
    end
    local outputs = { ttl = string.format('%d', math.floor(ttl)) }
    for k = 0, n - 1 do
      local key = args[i + 6 + 2 * k]
      if key ~= 'output:' .. id .. ':' .. k then
        return fail('invalid_job', 'complete_stored: output ' .. k .. ' of job ' .. id .. ' must be output:' .. id .. ':' .. k)
      end
      outputs[#outputs + 1] = key
      outputs[#outputs + 1] = args[i + 7 + 2 * k]
    end
    jobs[#jobs + 1] = { id, args[i + 1], args[i + 2], args[i + 3], outputs }
    i = i + 6 + 2 * n
  end
  return complete_batch(keys[1], config(keys[1]), args[1], jobs)
end

-- fail: ARGV = job id, token, error code, message, mode ('retry' | 'terminal'),
--             retry delay ms, spend attempt ('1' | '0'), moderation categories (comma-separated,
--             optional: added to the 'failed' event as 'categories')
-- Reply: the job's new state: 'delayed', 'failed' or 'dead'.
local function fail_job(keys, args)
  local P = keys[1]
  local c = config(P)
  local id, code, message, mode = args[1], args[3], args[4], args[5]
  local delay, spend = tonumber(args[6]) or 0, args[7] ~= '0'
  local job, err = fenced(P, id, args[2])
  if not job then return err end
  local now = now_ms()
  leave_active(P, c, id, job.user, job.counted)
  local attempts = tonumber(redis.call('HGET', job.jk, 'attempts') or '0')
  if spend then attempts = redis.call('HINCRBY', job.jk, 'attempts', 1) end
  redis.call('HSET', job.jk, 'token', '', 'error_code', code, 'error_message', message, 'updated_ms', now)
  wake(P, c, 1)
  if mode == 'retry' then
    local max = tonumber(redis.call('HGET', job.jk, 'max_attempts') or c.max_attempts)
    if attempts >= max then
      bury(P, c, now, id, job.user, job.tier, 'max_attempts', message)
      return 'dead'
    end
    redis.call('HSET', job.jk, 'state', 'delayed')
    redis.call('ZADD', P .. ':delayed', now + delay, id)
    touch(P, c, P .. ':delayed')
    emit(P, c, now, 'retrying', id, job.user, job.tier,
      { 'code', code, 'message', message, 'attempts', attempts, 'due_ms', now + delay })
    return 'delayed'
  end
  redis.call('HSET', job.jk, 'state', 'failed', 'finished_ms', now)
  local extra = { 'code', code, 'message', message }
  if args[8] and args[8] ~= '' then
    extra[#extra + 1] = 'categories'
    extra[#extra + 1] = args[8]
  end
  local eid = emit(P, c, now, 'failed', id, job.user, job.tier, extra)
  record_webhook(P, c, now, id, 'failed', eid, job.user, code, '', job.hook or false)
  return 'failed'
end

-- release: ARGV = job id, token. Hands a job back untouched (graceful shutdown): no attempt spent.
local function release(keys, args)
  local P = keys[1]
  local c = config(P)
  local id = args[1]
  local job, err = fenced(P, id, args[2])
  if not job then return err end
  local now = now_ms()
  leave_active(P, c, id, job.user, job.counted)
  redis.call('HSET', job.jk, 'state', 'queued', 'token', '', 'worker', '', 'updated_ms', now)
  push_ready(P, c, id, job.user, job.tier, true)
  emit(P, c, now, 'queued', id, job.user, job.tier, { 'reason', 'released' })
  wake(P, c, 1)
  return 1
end

-- cancel: ARGV = job id. Reply: the state the job was in ('queued', 'delayed', 'active'),
-- or 'already_<state>' when it had finished, or 'missing'.
local function cancel(keys, args)
  local P = keys[1]
  local c = config(P)
  local id = args[1]
  local jk = P .. ':job:' .. id
  local job = redis.call('HMGET', jk, 'state', 'user', 'tier', 'counted')
  local state, user, tier = job[1], job[2], job[3]
  if not state then return 'missing' end
  if STATES_TERMINAL[state] then return 'already_' .. state end
  local now = now_ms()
  if state == 'queued' then
    redis.call('LREM', tier_keys(P, tier).queue .. user, 1, id)
  elseif state == 'delayed' then
    redis.call('ZREM', P .. ':delayed', id)
  elseif state == 'active' then
    leave_active(P, c, id, user, job[4])
    redis.call('PUBLISH', P .. ':cancel', id)
    wake(P, c, 1)
  end
  redis.call('HSET', jk, 'state', 'canceled', 'token', '', 'updated_ms', now, 'finished_ms', now)
  local eid = emit(P, c, now, 'canceled', id, user, tier, { 'was', state })
  record_webhook(P, c, now, id, 'canceled', eid, user, '', '')
  return state
end

-- dlq_requeue: ARGV = job id. Gives a dead job a fresh set of attempts. Reply 1, or 0 if not dead.
local function dlq_requeue(keys, args)
  local P = keys[1]
  local c = config(P)
  local id = args[1]
  local jk = P .. ':job:' .. id
  local job = redis.call('HMGET', jk, 'state', 'user', 'tier')
  if job[1] ~= 'dead' then
    redis.call('ZREM', P .. ':dead', id)
    return 0
  end
  local now = now_ms()
  redis.call('ZREM', P .. ':dead', id)
  redis.call('HSET', jk, 'state', 'queued', 'attempts', 0, 'recoveries', 0, 'updated_ms', now)
  redis.call('HDEL', jk, 'dead_reason', 'finished_ms')
  push_ready(P, c, id, job[2], job[3])
  emit(P, c, now, 'queued', id, job[2], job[3], { 'reason', 'requeued' })
  wake(P, c, 1)
  return 1
end

-- dlq_delete: ARGV = job id. Removes a dead job and its record. Reply 1, or 0 if not dead.
local function dlq_delete(keys, args)
  local P = keys[1]
  local id = args[1]
  local removed = redis.call('ZREM', P .. ':dead', id)
  if redis.call('HGET', P .. ':job:' .. id, 'state') == 'dead' then
    redis.call('DEL', P .. ':job:' .. id)
    return 1
  end
  return removed
end

-- Removes every trace of one job: its place in the queue structures, its lease (a running worker
-- is fenced out and told to stop), its record, idempotency key, uploads, outputs and webhook delivery.
-- Returns the number of keys deleted, or -1 when the job does not exist.
local function erase_job(P, c, now, id)
  local jk = P .. ':job:' .. id
  local job = redis.call('HMGET', jk, 'state', 'user', 'tier', 'idem', 'spec', 'counted')
  local state, user, tier = job[1], job[2], job[3]
  if not state then return -1 end
  if state == 'queued' then
    if TIER_SET[tier] then redis.call('LREM', tier_keys(P, tier).queue .. user, 1, id) end
  elseif state == 'delayed' then
    redis.call('ZREM', P .. ':delayed', id)
  elseif state == 'active' then
    leave_active(P, c, id, user, job[6])
    redis.call('PUBLISH', P .. ':cancel', id)
  elseif state == 'dead' then
    redis.call('ZREM', P .. ':dead', id)
  end
  local doomed = { jk, P .. ':wh:' .. id }
  redis.call('ZREM', P .. ':wh:due', id)
  if job[4] and job[4] ~= '' then doomed[#doomed + 1] = P .. ':idem:' .. job[4] end
  local ok, spec = pcall(cjson.decode, job[5] or '')
  if ok and type(spec) == 'table' then
    if type(spec.inputs) == 'table' then
      for _, key in ipairs(spec.inputs) do
        if type(key) == 'string' then doomed[#doomed + 1] = P .. ':blob:' .. key end
      end
    end
    if type(spec.mask) == 'string' then doomed[#doomed + 1] = P .. ':blob:' .. spec.mask end
  end
  for index = 0, 9 do doomed[#doomed + 1] = P .. ':blob:output:' .. id .. ':' .. index end
  redis.call('ZREM', P .. ':u:' .. user .. ':jobs', id)
  return redis.call('UNLINK', unpack(doomed))
end

-- Deletes the user's events from the stream, scanning at most `budget` entries after `cursor`.
-- Returns the count deleted and the cursor to continue from ('' when the scan is complete).
local function erase_events(P, user, cursor, budget)
  local deleted, scanned = 0, 0
  local start = cursor == '' and '-' or ('(' .. cursor)
  while scanned < budget do
    local entries = redis.call('XRANGE', P .. ':events', start, '+', 'COUNT', 500)
    if #entries == 0 then return deleted, '' end
    local doomed = {}
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      for i = 1, #fields - 1, 2 do
        if fields[i] == 'user' then
          if fields[i + 1] == user then doomed[#doomed + 1] = entry[1] end
          break
        end
      end
      start = '(' .. entry[1]
    end
    scanned = scanned + #entries
    if #doomed > 0 then deleted = deleted + redis.call('XDEL', P .. ':events', unpack(doomed)) end
  end
  return deleted, string.sub(start, 2)
end

-- purge_user: ARGV = user, event cursor ('' to start), event scan budget
-- Deletes all of a user's data: queued, delayed, running, finished and dead jobs, their uploads,
-- outputs and idempotency keys, the user's history and queue entries, and their events.
-- Reply: { jobs deleted, keys deleted, events deleted, event cursor ('' when done) }.
-- Idempotent; call again with the cursor until it is ''.
local function purge_user(keys, args)
  local P = keys[1]
  local c = config(P)
  local user, cursor, budget = args[1], args[2] or '', tonumber(args[3] or '20000') or 20000
  local now = now_ms()
  local history = P .. ':u:' .. user .. ':jobs'
  local ids = redis.call('ZRANGE', history, 0, -1)
  -- Queued jobs not in the history (written before it existed) are found through the tiers.
  for _, tier in ipairs(TIERS) do
    local k = tier_keys(P, tier)
    local list = k.queue .. user
    for _, id in ipairs(redis.call('LRANGE', list, 0, -1)) do ids[#ids + 1] = id end
    redis.call('DEL', list)
    redis.call('ZREM', k.ring, user)
    redis.call('ZREM', k.parked, user)
  end
  local jobs_deleted, keys_deleted = 0, 0
  local seen = {}
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      local n = erase_job(P, c, now, id)
      if n >= 0 then
        jobs_deleted = jobs_deleted + 1
        keys_deleted = keys_deleted + n
      end
    end
  end
  redis.call('HDEL', P .. ':inflight', user)
  keys_deleted = keys_deleted + redis.call('UNLINK', history)
  local events_deleted, next_cursor = erase_events(P, user, cursor, budget)
  return { jobs_deleted, keys_deleted, events_deleted, next_cursor }
end

-- delete_job: ARGV = job id. Deletes one job like purge_user does (not its events, which expire
-- with the stream). Reply: keys deleted, or -1 when the job does not exist.
local function delete_job(keys, args)
  local P = keys[1]
  local c = config(P)
  return erase_job(P, c, now_ms(), args[1])
end

-- throttle: ARGV = signal, retry-after ms ('' or -1 when the provider said nothing), then
--   optionally job id, token, error code, message.
-- Records what the backend said, for every worker's claim to obey:
--   'rate_limit'  (429 rate_limit_exceeded, slow_down): a shared pause until Retry-After (capped at
--                 pause_max_ms; pause_default_ms when absent) plus jitter; the first 429 of a pause
--                 shrinks the adaptive factor;
--   'unavailable' (503): the same pause, without shrinking;
--   'quota'       (429 insufficient_quota, billing): the quota breaker opens for quota_breaker_ms
--                 (or Retry-After, if longer); then one probe job is claimed (half-open), and the
--                 breaker closes when that probe ends any other way than another quota answer.
-- With a job, the job goes back to its queue without spending an attempt, at the head of its
-- user's jobs and with its user first in line (it keeps its place), and a 'queued' event says why.
-- Reply: { pause until ms (0: none), breaker ('closed' | 'open' | 'half_open'), factor } or
--   IMAGEGEN fenced (the signal is recorded all the same) or IMAGEGEN invalid_signal.
local function throttle(keys, args)
  local P = keys[1]
  local c = config(P)
  local signal, retry = args[1], tonumber(args[2] or '') or -1
  if signal ~= 'rate_limit' and signal ~= 'unavailable' and signal ~= 'quota' then
    return fail('invalid_signal', 'signal: rate_limit, unavailable or quota')
  end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local TK = P .. ':throttle'
  local s = throttle_state(P)
  local factor = adaptive_factor(P, c, now, s)
  local pause = tonumber(s.pause_until or '0') or 0
  if signal == 'quota' then
    local open_until = now + math.max(c.quota_breaker_ms, retry)
    redis.call('HSET', TK, 'breaker', 'open', 'breaker_until', open_until)
    redis.call('HDEL', TK, 'probe')
    redis.call('HINCRBY', TK, 'quota_count', 1)
    s.breaker = 'open'
  else
    if signal == 'rate_limit' then
      if now >= pause then
        factor = math.max(c.adaptive_floor, factor * c.adaptive_shrink)
        redis.call('HSET', TK, 'factor', string.format('%.4f', factor), 'factor_at', now)
      end
      redis.call('HINCRBY', TK, 'rate_limit_count', 1)
    else
      redis.call('HINCRBY', TK, 'unavailable_count', 1)
    end
    local wait = retry >= 0 and math.min(retry, c.pause_max_ms) or c.pause_default_ms
    local jitter = c.pause_jitter_ms > 0 and (tonumber(t[2]) % (c.pause_jitter_ms + 1)) or 0
    if now + wait + jitter > pause then
      pause = now + wait + jitter
      redis.call('HSET', TK, 'pause_until', pause)
    end
  end
  local out = { now < pause and pause or 0, s.breaker or 'closed', string.format('%.4f', factor) }
  local id = args[3]
  if id == nil or id == '' then return out end
  local job, err = fenced(P, id, args[4] or '')
  if not job then return err end
  leave_active(P, c, id, job.user, job.counted)
  redis.call('HSET', job.jk, 'state', 'queued', 'token', '', 'worker', '', 'updated_ms', now,
    'error_code', args[5] or '', 'error_message', args[6] or '')
  local tier = job.tier
  local k = tier_keys(P, tier)
  local list = k.queue .. job.user
  redis.call('LPUSH', list, id)
  touch(P, c, list)
  if not redis.call('ZSCORE', k.parked, job.user) then
    local ring = k.ring
    local head = redis.call('ZRANGE', ring, 0, 0, 'WITHSCORES')
    local turn = #head > 0 and tonumber(head[2]) - 1 or next_turn(P, tier)
    redis.call('ZADD', ring, 'LT', turn, job.user)
    touch(P, c, ring)
  end
  emit(P, c, now, 'queued', id, job.user, tier, { 'reason', signal, 'code', args[5] or '' })
  wake(P, c, 1)
  return out
end

-- usage: ARGV = job id, tokens the provider billed for it. Corrects the token budget: the job was
-- charged tokens_per_image per image when claimed; the difference moves the budget's theoretical
-- arrival time. Reply: the correction in tokens (0 without a token budget).
local function usage(keys, args)
  local P = keys[1]
  local c = config(P)
  if c.tokens_per_minute <= 0 then return 0 end
  local used = tonumber(args[2] or '')
  if used == nil or used < 0 then return fail('invalid_usage', 'tokens: a number, at least 0') end
  return correct_tokens(P, c, now_ms(), args[1], used)
end

-- backend_state: no ARGV. Reply: flat field, value list: pause_remaining_ms, breaker,
-- breaker_remaining_ms, probe, factor, rate_limit_count, unavailable_count, quota_count.
local function backend_state(keys, args)
  local P = keys[1]
  local c = config(P)
  local now = now_ms()
  local s = throttle_state(P)
  local factor = adaptive_factor(P, c, now, s)
  local breaker = s.breaker or 'closed'
  local breaker_left = 0
  if breaker == 'open' then
    breaker_left = math.max(0, (tonumber(s.breaker_until or '0') or 0) - now)
    if breaker_left == 0 then breaker = 'half_open' end
  end
  return { 'pause_remaining_ms', math.max(0, (tonumber(s.pause_until or '0') or 0) - now),
    'breaker', breaker, 'breaker_remaining_ms', breaker_left, 'probe', s.probe or '',
    'factor', string.format('%.4f', factor), 'rate_limit_count', tonumber(s.rate_limit_count or '0'),
    'unavailable_count', tonumber(s.unavailable_count or '0'), 'quota_count', tonumber(s.quota_count or '0') }
end

-- webhook_claim: ARGV = dispatcher id, max deliveries, lease ms
-- Leases due deliveries: each gets a fresh fencing token and its due time moves to the lease's end,
-- so a dispatcher that dies leaves it to be claimed again (same message id, same attempt).
-- Reply: { wait hint ms (when fewer than asked were claimed: until the earliest due time or lease
--          end; -1: nothing scheduled), then per delivery: job id, token, attempt, message id, url,
--          state, user, at ms, code, result JSON, metadata JSON }
local function webhook_claim(keys, args)
  local P = keys[1]
  local c = config(P)
  local now = now_ms()
  local want, lease = tonumber(args[2]) or 1, tonumber(args[3]) or 60000
  local due_key = P .. ':wh:due'
  local reply = { -1 }
  local claimed = 0
  local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, want)
  for _, id in ipairs(due) do
    local wk = P .. ':wh:' .. id
    local d = redis.call('HMGET', wk, 'status', 'url', 'attempts', 'claims', 'msg', 'state', 'user', 'at', 'code',
      'result', 'metadata')
    local attempts, claims = tonumber(d[3] or '0') or 0, tonumber(d[4] or '0') or 0
    if d[1] ~= 'pending' then
      redis.call('ZREM', due_key, id)
    elseif redis.call('HEXISTS', P .. ':wh:disabled', d[2]) == 1 then
      redis.call('HSET', wk, 'status', 'disabled', 'token', '', 'updated_ms', now)
      redis.call('ZREM', due_key, id)
    elseif claims - attempts >= 5 then
      -- Dispatchers kept dying on this one without reporting: give it up.
      redis.call('HSET', wk, 'status', 'failed', 'token', '', 'last_error', 'abandoned', 'updated_ms', now)
      redis.call('ZREM', due_key, id)
    else
      local token = tostring(redis.call('INCR', P .. ':fence'))
      redis.call('HSET', wk, 'token', token, 'claims', claims + 1, 'dispatcher', args[1], 'updated_ms', now)
      redis.call('ZADD', due_key, 'XX', now + lease, id)
      for _, v in ipairs({ id, token, attempts + 1, d[5], d[2], d[6], d[7], d[8], d[9], d[10], d[11] }) do
        reply[#reply + 1] = v
      end
      claimed = claimed + 1
    end
  end
  if claimed < want then
    -- Stale wake-ups go; the hint says when the earliest delivery (or lease) falls due.
    redis.call('DEL', P .. ':wh:wake')
    local head = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
    if #head > 0 then reply[1] = math.max(0, tonumber(head[2]) - now) end
  end
  return reply
end

-- webhook_report: ARGV = job id, token, outcome ('delivered' | 'retry' | 'failed' | 'disabled' |
--                        'refused'), retry delay ms, HTTP status (0: none), reason
-- Records one attempt. 'retry' schedules the next (and wakes a dispatcher to wait for it);
-- 'disabled' also stops every later delivery to the URL. Reply 1, or IMAGEGEN fenced when the lease is no longer the caller's.
local function webhook_report(keys, args)
  local P = keys[1]
  local c = config(P)
  local id, token, outcome = args[1], args[2], args[3]
  local wk = P .. ':wh:' .. id
  local d = redis.call('HMGET', wk, 'status', 'token', 'url')
  if d[1] ~= 'pending' or d[2] ~= token or token == '' then
    return fail('fenced', 'webhook delivery ' .. id .. ' is not held by this lease')
  end
  local now = now_ms()
  redis.call('HINCRBY', wk, 'attempts', 1)
  redis.call('HSET', wk, 'token', '', 'last_status', args[5] or '0', 'last_error', args[6] or '', 'updated_ms', now)
  if outcome == 'retry' then
    redis.call('ZADD', P .. ':wh:due', now + (tonumber(args[4]) or 0), id)
    -- Wake a waiting dispatcher so that its next wait ends when this retry falls due.
    redis.call('RPUSH', P .. ':wh:wake', '1')
    redis.call('LTRIM', P .. ':wh:wake', -64, -1)
    touch(P, c, P .. ':wh:wake')
  else
    redis.call('ZREM', P .. ':wh:due', id)
    redis.call('HSET', wk, 'status', outcome)
    if outcome == 'disabled' then
      redis.call('HSET', P .. ':wh:disabled', d[3], now)
      touch(P, c, P .. ':wh:disabled')
    end
  end
  touch(P, c, wk)
  touch(P, c, P .. ':wh:due')
  return 1
end

-- webhook_default: ARGV = URL ('' removes it). The deployment's webhook URL for jobs without one.
local function webhook_default(keys, args)
  local P = keys[1]
  if (args[1] or '') == '' then
    redis.call('DEL', P .. ':wh:default_url')
  else
    redis.call('SET', P .. ':wh:default_url', args[1])
  end
  -- Cached with the settings: a new revision makes every call read it again.
  redis.call('HINCRBY', P .. ':config', 'rev', 1)
  return 1
end

-- configure: ARGV = field, value pairs (see DEFAULTS). Reply: the effective settings.
local function configure(keys, args)
  local P = keys[1]
  for i = 1, #args - 1, 2 do
    if DEFAULTS[args[i]] == nil then return fail('invalid_config', 'unknown setting ' .. args[i]) end
    if tonumber(args[i + 1]) == nil then return fail('invalid_config', args[i] .. ' must be a number') end
    redis.call('HSET', P .. ':config', args[i], args[i + 1])
  end
  redis.call('HINCRBY', P .. ':config', 'rev', 1)
  local c = config(P)
  local out = {}
  for k in pairs(DEFAULTS) do
    out[#out + 1] = k
    out[#out + 1] = tostring(c[k])
  end
  return out
end

-- stats: no ARGV. Reply: flat field, value list.
local function stats(keys, args)
  local P = keys[1]
  local c = config(P)
  local now = now_ms()
  local out = {}
  local oldest = nil
  -- Queued jobs per tier: the lengths of the queues of the users in its ring or parked (one LLEN
  -- per user with queued jobs).
  for _, tier in ipairs(TIERS) do
    local k = tier_keys(P, tier)
    local queued = 0
    for _, set in ipairs({ k.ring, k.parked }) do
      for _, user in ipairs(redis.call('ZRANGE', set, 0, -1)) do queued = queued + redis.call('LLEN', k.queue .. user) end
    end
    out[#out + 1] = 'queued_' .. tier
    out[#out + 1] = queued
  end
  out[#out + 1] = 'delayed'
  out[#out + 1] = redis.call('ZCARD', P .. ':delayed')
  out[#out + 1] = 'active'
  out[#out + 1] = redis.call('ZCARD', P .. ':active')
  out[#out + 1] = 'dead'
  out[#out + 1] = redis.call('ZCARD', P .. ':dead')
  out[#out + 1] = 'workers'
  out[#out + 1] = redis.call('ZCOUNT', P .. ':workers', now - c.worker_timeout_ms, '+inf')
  -- The oldest queued job: the oldest first job of each tier's head users.
  for _, tier in ipairs(TIERS) do
    local k = tier_keys(P, tier)
    for _, user in ipairs(redis.call('ZRANGE', k.ring, 0, 20)) do
      local first = redis.call('LINDEX', k.queue .. user, 0)
      if first then
        local created = tonumber(redis.call('HGET', P .. ':job:' .. first, 'created_ms') or now)
        if oldest == nil or created < oldest then oldest = created end
      end
    end
  end
  out[#out + 1] = 'oldest_queued_age_ms'
  out[#out + 1] = oldest and (now - oldest) or 0
  return out
end

redis.register_function{ function_name = 'imagegen_v1_revision', callback = function() return REVISION end,
  flags = { 'no-writes' } }
redis.register_function('imagegen_v1_enqueue', entry(enqueue))
redis.register_function('imagegen_v1_enqueue_many', entry(enqueue_many))
redis.register_function('imagegen_v1_claim', entry(claim))
redis.register_function('imagegen_v1_heartbeat', entry(heartbeat))
redis.register_function('imagegen_v1_progress', entry(progress))
redis.register_function('imagegen_v1_complete', entry(complete))
redis.register_function('imagegen_v1_complete_many', entry(complete_many))
redis.register_function('imagegen_v1_complete_stored', entry(complete_stored))
redis.register_function('imagegen_v1_fail', entry(fail_job))
redis.register_function('imagegen_v1_release', entry(release))
redis.register_function('imagegen_v1_cancel', entry(cancel))
redis.register_function('imagegen_v1_dlq_requeue', entry(dlq_requeue))
redis.register_function('imagegen_v1_dlq_delete', entry(dlq_delete))
redis.register_function('imagegen_v1_configure', entry(configure))
redis.register_function('imagegen_v1_purge_user', entry(purge_user))
redis.register_function('imagegen_v1_delete_job', entry(delete_job))
redis.register_function('imagegen_v1_stats', entry(stats))
redis.register_function('imagegen_v1_throttle', entry(throttle))
redis.register_function('imagegen_v1_backend_state', entry(backend_state))
redis.register_function('imagegen_v1_usage', entry(usage))
redis.register_function('imagegen_v1_webhook_claim', entry(webhook_claim))
redis.register_function('imagegen_v1_webhook_report', entry(webhook_report))
redis.register_function('imagegen_v1_webhook_default', entry(webhook_default))
