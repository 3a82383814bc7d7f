//! The Lua scripts that make a queue's state changes atomic and fenced. Each first checks
//! that the caller holds the entry on the delivery it names (`XPENDING` for that consumer,
//! its delivery count equal to the attempt), because `XACK` and `XCLAIM` alone do not.
//!
//! An entry holds one task, or several (a *pack*: fields `job retries n pack`, the pack being
//! netstrings of each task's number and values). A pack is the unit of delivery, lease and
//! fencing; its tasks are recorded one by one (which are, in the failures hash as `ID:done`),
//! and it is acknowledged with its last. A pack never goes back to the queue as it is: what is
//! left of it is put back as new entries (a new pack when given back or adopted; one entry per
//! task when its holder was lost, so a task that kills its worker is found alone), and a
//! waiting submitter is told where its tasks went (a `moved` entry in the results stream).
//! Successes are recorded as packs of results too: one results entry per call and submission.
//!
//! Keys are always passed as `KEYS` (one hash tag, so Redis Cluster can run them).

use std::sync::LazyLock;

use super::Queue;

/// An invocation of a script that records outcomes, with the keys such scripts take, in
/// order: tasks, results, stats, failures, dead letters, detached submissions.
pub(crate) fn recording<'s>(script: &'s redis::Script, q: &Queue) -> redis::ScriptInvocation<'s> {
    let mut invocation = script.key(q.tasks());
    invocation.key(q.results()).key(q.stats()).key(q.failures()).key(q.dead()).key(q.detached());
    invocation
}

/// What the scripts that handle packs share (prepended to them).
const PACKS: &str = r#"
-- Netstrings (`3:abc,`) one after another, as a list.
local function netstrings(s)
  local out, pos = {}, 1
  while pos <= #s do
    local colon = string.find(s, ':', pos, true)
    if not colon then break end
    local len = tonumber(string.sub(s, pos, colon - 1))
    if not len then break end
    out[#out + 1] = string.sub(s, colon + 1, colon + len)
    pos = colon + len + 2
  end
  return out
end
local function netstring(s) return #s .. ':' .. s .. ',' end
-- A task entry's fields by name, or nil when it is gone.
local function entry_fields(id)
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if #e == 0 then return nil end
  local h = {}
  for i = 1, #e[1][2], 2 do h[e[1][2][i]] = e[1][2][i + 1] end
  return h
end
-- Which of a pack's `n` tasks are recorded: one '0' or '1' per task.
local function done_of(id, n)
  return redis.call('HGET', KEYS[4], id .. ':done') or string.rep('0', n)
end
-- Acknowledges and deletes an entry, with what the failures hash kept for it.
local function finish(id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[4], id, id .. ':error', id .. ':attempt', id .. ':done')
end
-- Tells a waiting submitter where tasks went (netstrings: number, new entry, ...); one that
-- finds a task's entry gone would take it for lost and send it again.
local function moved(job, list)
  if #list > 0 and redis.call('HEXISTS', KEYS[6], job) == 0 then
    redis.call('XADD', KEYS[2], '*', 'job', job, 'moved', table.concat(list))
  end
end
-- Puts a pack's unrecorded tasks back on the queue for anyone to take at once, as one new
-- pack or (`singly`) one entry each, carrying the holders lost so far; deletes the pack.
-- Returns how many tasks went back.
local function requeue(id, h, singly, lost)
  local items = netstrings(h['pack'] or '')
  local done = done_of(id, #items / 2)
  local job, retries = h['job'] or '', h['retries'] or '0'
  local notice, rest, seqs = {}, {}, {}
  for i = 1, #items - 1, 2 do
    local place = (i + 1) / 2
    if string.sub(done, place, place) ~= '1' then
      if singly then
        local new = redis.call('XADD', KEYS[1], '*', 'job', job, 'seq', items[i], 'retries', retries,
          'values', items[i + 1], 'lost', tostring(lost))
        notice[#notice + 1] = netstring(items[i]) .. netstring(new)
      else
        rest[#rest + 1] = netstring(items[i]) .. netstring(items[i + 1])
        seqs[#seqs + 1] = items[i]
      end
    end
  end
  if #rest > 0 then
    local new = redis.call('XADD', KEYS[1], '*', 'job', job, 'retries', retries, 'n', tostring(#rest),
      'lost', tostring(lost), 'pack', table.concat(rest))
    for _, seq in ipairs(seqs) do notice[#notice + 1] = netstring(seq) .. netstring(new) end
  end
  finish(id)
  moved(job, notice)
  return #notice
end
"#;

/// A script with [`PACKS`]'s functions before its body.
fn with_packs(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PACKS}{body}"))
}

/// Renews leases: for each `id attempt` pair still held, resets its idle time without
/// counting a delivery. Returns the ids no longer held.
/// KEYS: tasks. ARGV: group, consumer, then id, attempt pairs.
pub(crate) static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
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
"#,
    )
});

/// Records tasks' successes, once each, from their holder only: appends the results (one
/// results entry per submission, its `pack` the results' netstrings), then acknowledges and
/// deletes every entry whose tasks are all recorded, and counts. One call per batch keeps a
/// fast worker's acknowledgements to one round trip. Returns, per task in order, 1, or 0 when
/// the caller no longer holds it (a late completion, rejected), or 2 when it was recorded
/// before (this call repeats one whose reply was lost, `again` = 1).
/// KEYS: [`recording`]'s. ARGV: group, consumer, again, then per task: entry id, place in its
/// pack, the pack's size (0: the entry is this task alone), attempt, submission, result (a
/// netstring of the result's field/value netstrings).
pub(crate) static COMPLETE: LazyLock<redis::Script> = LazyLock::new(|| {
    with_packs(
        r#"
local replies, acked, rejected, recorded = {}, {}, 0, 0
-- What the caller holds from the batch's lowest id to its highest, in one XPENDING (one per
-- task was most of this script's time).
local function order(id)
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms) or 0, tonumber(n) or 0
end
local lo, hi
for i = 4, #ARGV, 6 do
  local id = ARGV[i]
  local ms, n = order(id)
  if not lo or ms < lo[2] or (ms == lo[2] and n < lo[3]) then lo = {id, ms, n} end
  if not hi or ms > hi[2] or (ms == hi[2] and n > hi[3]) then hi = {id, ms, n} end
end
local held = {}
if lo then
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], lo[1], hi[1], 1000000, ARGV[2])) do
    held[p[1]] = tonumber(p[4])
  end
end
local results, jobs, packs, pack_ids = {}, {}, {}, {}
local function record(job, result)
  if not results[job] then
    results[job] = {}
    jobs[#jobs + 1] = job
  end
  local list = results[job]
  list[#list + 1] = result
  recorded = recorded + 1
end
for i = 4, #ARGV, 6 do
  local id, place, size, attempt = ARGV[i], tonumber(ARGV[i + 1]) + 1, tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  if held[id] ~= attempt then
    local before = ARGV[3] == '1' and (#redis.call('XRANGE', KEYS[1], id, id) == 0
      or (size > 0 and string.sub(done_of(id, size), place, place) == '1'))
    if before then
      replies[#replies + 1] = 2
    else
      replies[#replies + 1] = 0
      rejected = rejected + 1
    end
  elseif size == 0 then
    held[id] = nil
    record(ARGV[i + 4], ARGV[i + 5])
    acked[#acked + 1] = id
    replies[#replies + 1] = 1
  else
    local pack = packs[id]
    if not pack then
      local done, marks, left = done_of(id, size), {}, 0
      for c = 1, size do
        marks[c] = string.sub(done, c, c)
        if marks[c] ~= '1' then left = left + 1 end
      end
      pack = {marks = marks, left = left}
      packs[id] = pack
      pack_ids[#pack_ids + 1] = id
    end
    if pack.marks[place] == '1' then
      replies[#replies + 1] = 2
    else
      pack.marks[place] = '1'
      pack.left = pack.left - 1
      record(ARGV[i + 4], ARGV[i + 5])
      replies[#replies + 1] = 1
    end
  end
end
for _, id in ipairs(pack_ids) do
  if packs[id].left <= 0 then
    acked[#acked + 1] = id
  else
    redis.call('HSET', KEYS[4], id .. ':done', table.concat(packs[id].marks))
  end
end
for _, job in ipairs(jobs) do
  redis.call('XADD', KEYS[2], '*', 'job', job, 'pack', table.concat(results[job]))
end
if #acked > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(acked))
  redis.call('XDEL', KEYS[1], unpack(acked))
  -- Errors of earlier attempts and packs' marks, kept only while a task has failed.
  if redis.call('EXISTS', KEYS[4]) == 1 then
    local kept = {}
    for _, id in ipairs(acked) do
      kept[#kept + 1] = id
      kept[#kept + 1] = id .. ':error'
      kept[#kept + 1] = id .. ':attempt'
      kept[#kept + 1] = id .. ':done'
    end
    redis.call('HDEL', KEYS[4], unpack(kept))
  end
end
if recorded > 0 then
  redis.call('HINCRBY', KEYS[3], 'done', recorded)
  redis.call('HINCRBY', KEYS[3], 'queued', -recorded)
end
if rejected > 0 then redis.call('HINCRBY', KEYS[3], 'rejected', rejected) end
return replies
"#,
    )
});

/// Most tasks in one [`COMPLETE`] call (Lua's `unpack` has a limit of a few thousand).
pub(crate) const COMPLETE_BATCH: usize = 256;

/// Records a failed attempt from its holder: while the task has retries left it goes back
/// for any worker to take at once (its error kept; a task of a pack goes back as an entry of
/// its own); after them it is dead-lettered with its input and last error, and its result
/// recorded failed. Returns 1 (retried), 2 (dead letter), 0 when the caller no longer holds
/// it, or 3 when this call repeats one whose reply was lost (`again` = 1) and the task is
/// recorded. A repeat for an attempt already recorded as retried counts nothing twice.
/// KEYS: [`recording`]'s. ARGV: group, id, consumer, attempt, retries, error, again, place in
/// the pack, the pack's size (0: the entry is this task alone), then result field/value pairs.
pub(crate) static FAIL: LazyLock<redis::Script> = LazyLock::new(|| {
    with_packs(
        r#"
local id, attempt, retries = ARGV[2], tonumber(ARGV[4]), tonumber(ARGV[5])
local place, size = tonumber(ARGV[8]) + 1, tonumber(ARGV[9])
local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[3])
if #p == 0 or tonumber(p[1][4]) ~= attempt then
  if ARGV[7] == '1' and (#redis.call('XRANGE', KEYS[1], id, id) == 0
      or (size > 0 and string.sub(done_of(id, size), place, place) == '1')) then
    return 3
  end
  redis.call('HINCRBY', KEYS[3], 'rejected', 1)
  return 0
end
local h = entry_fields(id) or {}
local earlier = (tonumber(h['failed']) or 0) + (tonumber(h['lost']) or 0)
local result = {}
for i = 10, #ARGV do result[#result + 1] = ARGV[i] end
local function dead_letter(task, seq_fields)
  local dead = {'task', task, 'attempts', tostring(attempt + earlier), 'error', ARGV[6]}
  for i = 1, #seq_fields do dead[#dead + 1] = seq_fields[i] end
  redis.call('XADD', KEYS[5], '*', unpack(dead))
  if #result > 0 then redis.call('XADD', KEYS[2], '*', unpack(result)) end
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
  redis.call('HINCRBY', KEYS[3], 'dead', 1)
  redis.call('HINCRBY', KEYS[3], 'queued', -1)
end
if size > 0 then
  local done = done_of(id, size)
  if string.sub(done, place, place) == '1' then return 3 end
  local items = netstrings(h['pack'] or '')
  local seq, values = items[place * 2 - 1] or '', items[place * 2] or ''
  local job = h['job'] or ''
  local outcome
  if retries >= 1 then
    local new = redis.call('XADD', KEYS[1], '*', 'job', job, 'seq', seq, 'retries', h['retries'] or '0',
      'values', values, 'failed', '1', 'lost', h['lost'] or '0')
    redis.call('HSET', KEYS[4], new .. ':error', ARGV[6])
    moved(job, {netstring(seq) .. netstring(new)})
    redis.call('HINCRBY', KEYS[3], 'retried', 1)
    outcome = 1
  else
    dead_letter(id .. '/' .. (place - 1), {'job', job, 'seq', seq, 'retries', h['retries'] or '0', 'values', values})
    outcome = 2
  end
  done = string.sub(done, 1, place - 1) .. '1' .. string.sub(done, place + 1)
  if string.find(done, '0', 1, true) then
    redis.call('HSET', KEYS[4], id .. ':done', done)
  else
    finish(id)
  end
  return outcome
end
if redis.call('HGET', KEYS[4], id .. ':attempt') == ARGV[4] then return 1 end
local failures = redis.call('HINCRBY', KEYS[4], id, 1) + (tonumber(h['failed']) or 0)
if failures <= retries then
  redis.call('HSET', KEYS[4], id .. ':error', ARGV[6], id .. ':attempt', ARGV[4])
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, id, 'IDLE', 100000000000, 'RETRYCOUNT', ARGV[4], 'JUSTID')
  redis.call('HINCRBY', KEYS[3], 'retried', 1)
  return 1
end
local fields = {}
local e = redis.call('XRANGE', KEYS[1], id, id)
if #e == 1 then fields = e[1][2] end
dead_letter(id, fields)
finish(id)
return 2
"#,
    )
});

/// Gives a held entry back, uncounted, for any worker to take at once (this worker stops
/// before running it; a pack goes back as a new one of its unrecorded tasks). Returns 1, or
/// 0 when the caller no longer holds it.
/// KEYS: [`recording`]'s. ARGV: group, id, consumer, attempt.
pub(crate) static GIVE_BACK: LazyLock<redis::Script> = LazyLock::new(|| {
    with_packs(
        r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3])
if #p == 0 or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end
local h = entry_fields(ARGV[2])
if h and h['pack'] then
  requeue(ARGV[2], h, false, tonumber(h['lost']) or 0)
  return 1
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', 100000000000,
  'RETRYCOUNT', tonumber(ARGV[4]) - 1, 'JUSTID')
return 1
"#,
    )
});

/// Takes over entries whose holder stopped renewing for a lease (`XAUTOCLAIM`, which counts
/// a delivery). A task whose entry was lost by [`LOST_HOLDERS`] holders is dead-lettered
/// instead (result `dead`), so a task that kills its worker every time cannot take them all
/// down; a pack's tasks go back to the queue one entry each (found alone, a killer cannot
/// take innocent tasks with it). Returns {next cursor, {{id, attempt, fields}, …}, tasks put
/// back}.
/// KEYS: [`recording`]'s. ARGV: group, consumer, lease ms, cursor, count, lost holders allowed.
pub(crate) static RECLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    with_packs(
        r#"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local live, requeued = {}, 0
for _, e in ipairs(r[2]) do
  local id, f = e[1], e[2]
  if f then
    local h = {}
    for i = 1, #f, 2 do h[f[i]] = f[i + 1] end
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local n = tonumber(p[1][4])
    local lost_before = tonumber(h['lost']) or 0
    if h['pack'] then
      requeued = requeued + requeue(id, h, true, lost_before + n - 1)
    else
      local failures = tonumber(redis.call('HGET', KEYS[4], id) or '0')
      local lost = n - 1 - failures + lost_before
      if lost >= tonumber(ARGV[6]) then
        local err = 'its holder stopped renewing the lease ' .. lost .. ' times (worker killed, frozen or cut off)'
        local attempts = n - 1 + lost_before + (tonumber(h['failed']) or 0)
        local dead = {'task', id, 'attempts', tostring(attempts), 'error', err}
        for i = 1, #f do dead[#dead + 1] = f[i] end
        redis.call('XADD', KEYS[5], '*', unpack(dead))
        redis.call('XADD', KEYS[2], '*', 'job', h['job'] or '', 'seq', h['seq'] or '0', 'outcome', 'dead',
          'attempt', tostring(attempts), 'error', err, 'worker', '', 'exit', '-1', 'signal', '0')
        finish(id)
        redis.call('HINCRBY', KEYS[3], 'dead', 1)
        redis.call('HINCRBY', KEYS[3], 'failed', 1)
        redis.call('HINCRBY', KEYS[3], 'queued', -1)
      else
        live[#live + 1] = {id, n, f}
      end
    end
  end
end
return {r[1], live, requeued}
"#,
    )
});

/// Adopts entries this consumer holds but its worker does not know of (the reply that
/// delivered them was lost with a connection, or an earlier worker of the same name stopped):
/// for each `id attempt` pair still held by the consumer on that delivery, claims it again
/// (counting a delivery) and returns it; a pack goes back to the queue as a new one instead.
/// Returns {{id, attempt, fields}, …}.
/// KEYS: [`recording`]'s. ARGV: group, consumer, then id, attempt pairs.
pub(crate) static ADOPT: LazyLock<redis::Script> = LazyLock::new(|| {
    with_packs(
        r#"
local adopted = {}
for i = 3, #ARGV, 2 do
  local id, attempt = ARGV[i], tonumber(ARGV[i + 1])
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1, ARGV[2])
  if #p == 1 and tonumber(p[1][4]) == attempt then
    local h = entry_fields(id)
    if h and h['pack'] then
      requeue(id, h, false, tonumber(h['lost']) or 0)
    else
      local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
      if #c == 1 and c[1] and c[1][2] then
        adopted[#adopted + 1] = {id, attempt + 1, c[1][2]}
      end
    end
  end
end
return adopted
"#,
    )
});

/// Holders that may lose a task (stop renewing its lease) before it is dead-lettered.
pub(crate) const LOST_HOLDERS: u32 = 3;

/// Cancels an entry nobody has taken yet (a submitter stopped): deletes it when it is not
/// pending. Returns 1 when cancelled, 0 when a worker holds it (or it is gone).
/// KEYS: [`recording`]'s. ARGV: group, id.
pub(crate) static CANCEL: LazyLock<redis::Script> = LazyLock::new(|| {
    with_packs(
        r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p > 0 then return 0 end
local h = entry_fields(ARGV[2])
if not h then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'queued', -(tonumber(h['n']) or 1))
return 1
"#,
    )
});

/// Claims (or renews) a worker name's liveness record for `token`, for `ms`: returns the
/// token of another live holder instead, claiming nothing. KEYS: alive. ARGV: token, ms.
pub(crate) static CLAIM_NAME: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"#,
    )
});

/// Lets a worker name's liveness record go (in a millisecond: a user with `+set` and no
/// `+del` may do it) if `token` holds it. KEYS: alive. ARGV: token.
pub(crate) static RELEASE_NAME: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', 1) end
return 1
"#,
    )
});
