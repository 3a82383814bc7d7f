//! The Lua scripts that make a queue's state changes atomic and fenced. Each first checks
//! that the caller holds the entry on the delivery it names (`XPENDING` for that consumer,
//! its delivery count equal to the attempt), because `XACK` and `XCLAIM` alone do not.
//!
//! Keys are always passed as `KEYS` (one hash tag, so Redis Cluster can run them).

use super::Queue;

/// An invocation of a script that records outcomes, with its keys in the order such scripts
/// take them: tasks, results, stats, failures, and the dead letter for those that can
/// dead-letter ([`FAIL`], [`RECLAIM`]).
pub(crate) fn recording<'s>(
    script: &'s redis::Script,
    q: &Queue,
    dead_letter: bool,
) -> redis::ScriptInvocation<'s> {
    let mut invocation = script.key(q.tasks());
    invocation.key(q.results()).key(q.stats()).key(q.failures());
    if dead_letter {
        invocation.key(q.dead());
    }
    invocation
}

/// Renews leases: for each `id attempt` pair still held, resets its idle time without
/// counting a delivery. Returns the ids no longer held.
/// KEYS: tasks. ARGV: group, consumer, then id, attempt pairs.
pub(crate) const RENEW: &str = r#"
local lost = {}
for i = 3, #ARGV, 2 do
  local id, attempt = ARGV[i], tonumber(ARGV[i + 1])
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p == 1 and tonumber(p[1][4]) == attempt then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'RETRYCOUNT', attempt, 'JUSTID')
  else
    lost[#lost + 1] = id
  end
end
return lost
"#;

/// Records tasks' successes, once each, from their holder only: appends each result, then
/// acknowledges, deletes and counts the batch. One call per batch keeps a fast worker's
/// acknowledgements to one round trip. Returns, per task in order, 1, or 0 when the caller no
/// longer holds it (a late completion, rejected), or 2 when this call repeats one whose reply
/// was lost (`again` = 1) and the entry is gone: recorded the first time, not rejected.
/// KEYS: tasks, results, stats, failures. ARGV: group, consumer, again, then per task: id,
/// attempt, the number of result field/value items that follow, those items.
pub(crate) const COMPLETE: &str = r#"
local replies, acked, rejected = {}, {}, 0
-- What the caller holds from the batch's lowest id to its highest, in one XPENDING (one per
-- task was most of this script's time).
local function order(id)
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms) or 0, tonumber(n) or 0
end
local lo, hi
local i = 4
while i <= #ARGV do
  local id = ARGV[i]
  local ms, n = order(id)
  if not lo or ms < lo[2] or (ms == lo[2] and n < lo[3]) then lo = {id, ms, n} end
  if not hi or ms > hi[2] or (ms == hi[2] and n > hi[3]) then hi = {id, ms, n} end
  i = i + 3 + tonumber(ARGV[i + 2])
end
local held = {}
if lo then
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], lo[1], hi[1], 1000000, ARGV[2])) do
    held[p[1]] = tonumber(p[4])
  end
end
i = 4
while i <= #ARGV do
  local id, attempt, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if held[id] ~= attempt then
    if ARGV[3] == '1' and #redis.call('XRANGE', KEYS[1], id, id) == 0 then
      replies[#replies + 1] = 2
    else
      replies[#replies + 1] = 0
      rejected = rejected + 1
    end
  else
    held[id] = nil
    local fields = {}
    for j = i + 3, i + 2 + n do fields[#fields + 1] = ARGV[j] end
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    acked[#acked + 1] = id
    replies[#replies + 1] = 1
  end
  i = i + 3 + n
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(acked))
  redis.call('XDEL', KEYS[1], unpack(acked))
  -- Errors of earlier attempts, kept only while a task has failed.
  if redis.call('EXISTS', KEYS[4]) == 1 then
    local errors = {}
    for _, id in ipairs(acked) do
      errors[#errors + 1] = id
      errors[#errors + 1] = id .. ':error'
      errors[#errors + 1] = id .. ':attempt'
    end
    redis.call('HDEL', KEYS[4], unpack(errors))
  end
  redis.call('HINCRBY', KEYS[3], 'done', #acked)
end
if rejected > 0 then redis.call('HINCRBY', KEYS[3], 'rejected', rejected) end
return replies
"#;

/// Most tasks in one [`COMPLETE`] call (Lua's `unpack` has a limit of a few thousand).
pub(crate) const COMPLETE_BATCH: usize = 256;

/// Records a failed attempt from its holder: while the task has retries left it goes back
/// for any worker to take at once (its error kept); after them it is dead-lettered with its
/// input and last error, and its result recorded failed. Returns 1 (retried), 2 (dead
/// letter), 0 when the caller no longer holds it, or 3 when this call repeats one whose reply
/// was lost (`again` = 1) and the entry is gone (dead-lettered the first time). A repeat for
/// an attempt already recorded as retried counts nothing twice.
/// KEYS: tasks, results, stats, failures, dead. ARGV: group, id, consumer, attempt, retries,
/// error, again, then result field/value pairs.
pub(crate) const FAIL: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #p == 0 or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then
  if ARGV[7] == '1' and #redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2]) == 0 then return 3 end
  redis.call('HINCRBY', KEYS[3], 'rejected', 1)
  return 0
end
if redis.call('HGET', KEYS[4], ARGV[2] .. ':attempt') == ARGV[4] then return 1 end
local failures = redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
if failures <= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[4], ARGV[2] .. ':error', ARGV[6], ARGV[2] .. ':attempt', ARGV[4])
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', 100000000000, 'RETRYCOUNT', ARGV[4], 'JUSTID')
  redis.call('HINCRBY', KEYS[3], 'retried', 1)
  return 1
end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local dead = {'task', ARGV[2], 'attempts', ARGV[4], 'error', ARGV[6]}
if #e == 1 then
  for i = 1, #e[1][2] do dead[#dead + 1] = e[1][2][i] end
end
redis.call('XADD', KEYS[5], '*', unpack(dead))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2], ARGV[2] .. ':error', ARGV[2] .. ':attempt')
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('HINCRBY', KEYS[3], 'failed', 1)
redis.call('HINCRBY', KEYS[3], 'dead', 1)
return 2
"#;

/// Gives a held entry back, uncounted, for any worker to take at once (this worker stops
/// before running it). Returns 1, or 0 when the caller no longer holds it.
/// KEYS: tasks. ARGV: group, id, consumer, attempt.
pub(crate) const GIVE_BACK: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #p == 0 or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', 100000000000,
  'RETRYCOUNT', tonumber(ARGV[4]) - 1, 'JUSTID')
return 1
"#;

/// Takes over entries whose holder stopped renewing for a lease (`XAUTOCLAIM`, which counts
/// a delivery). An entry lost by [`LOST_HOLDERS`] holders is dead-lettered instead (result
/// `dead`), so a task that kills its worker every time cannot take them all down.
/// Returns {next cursor, {{id, attempt, fields}, …}}.
/// KEYS: tasks, results, stats, failures, dead. ARGV: group, consumer, lease ms, cursor,
/// count, lost holders allowed.
pub(crate) const RECLAIM: &str = r#"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local live = {}
for _, e in ipairs(r[2]) do
  local id, f = e[1], e[2]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local n = tonumber(p[1][4])
  local failures = tonumber(redis.call('HGET', KEYS[4], id) or '0')
  if n - 1 - failures >= tonumber(ARGV[6]) then
    local h = {}
    for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
    local err = 'its holder stopped renewing the lease ' .. (n - 1 - failures) .. ' times (worker killed, frozen or cut off)'
    local dead = {'task', id, 'attempts', tostring(n - 1), 'error', err}
    for i = 1, #f do dead[#dead + 1] = f[i] end
    redis.call('XADD', KEYS[5], '*', unpack(dead))
    redis.call('XADD', KEYS[2], '*', 'job', h['job'] or '', 'seq', h['seq'] or '0', 'outcome', 'dead',
      'attempt', tostring(n - 1), 'error', err, 'worker', '', 'exit', '-1', 'signal', '0')
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[4], id, id .. ':error', id .. ':attempt')
    redis.call('HINCRBY', KEYS[3], 'dead', 1)
    redis.call('HINCRBY', KEYS[3], 'failed', 1)
  else
    live[#live + 1] = {id, n, f}
  end
end
return {r[1], live}
"#;

/// Adopts entries this consumer holds but its worker does not know of (the reply that
/// delivered them was lost with a connection, or an earlier worker of the same name stopped):
/// for each `id attempt` pair still held by the consumer on that delivery, claims it again
/// (counting a delivery) and returns it. Returns {{id, attempt, fields}, …}.
/// KEYS: tasks. ARGV: group, consumer, then id, attempt pairs.
pub(crate) const ADOPT: &str = r#"
local adopted = {}
for i = 3, #ARGV, 2 do
  local id, attempt = ARGV[i], tonumber(ARGV[i + 1])
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p == 1 and tonumber(p[1][4]) == attempt then
    local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
    if #c == 1 and c[1] and c[1][2] then
      adopted[#adopted + 1] = {id, attempt + 1, c[1][2]}
    end
  end
end
return adopted
"#;

/// Holders that may lose a task (stop renewing its lease) before it is dead-lettered.
pub(crate) const LOST_HOLDERS: u32 = 3;

/// Cancels an entry nobody has taken yet (a submitter stopped): deletes it when it is not
/// pending. Returns 1 when cancelled, 0 when a worker holds it (or it is gone).
/// KEYS: tasks. ARGV: group, id.
pub(crate) const CANCEL: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p > 0 then return 0 end
return redis.call('XDEL', KEYS[1], ARGV[2])
"#;

/// Claims (or renews) a worker name's liveness record for `token`, for `ms`: returns the
/// token of another live holder instead, claiming nothing. KEYS: alive. ARGV: token, ms.
pub(crate) const CLAIM_NAME: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"#;

/// Lets a worker name's liveness record go (in a millisecond: a user with `+set` and no
/// `+del` may do it) if `token` holds it. KEYS: alive. ARGV: token.
pub(crate) const RELEASE_NAME: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', 1) end
return 1
"#;
