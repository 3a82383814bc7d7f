//! The distributed mode: the same tasks on many machines through Redis Streams, with the
//! contracts of a local run — nothing lost, no task recorded complete twice, no orphans.
//!
//! A queue is one stream of tasks read by one consumer group. A task entry carries data only
//! (its submission, sequence number, retry budget and input values), never a command: a
//! worker runs the command it was started with. Quick tasks travel several to an entry (a
//! pack, sized by the submitter from its results' runtimes; see `scripts.rs` for how a pack
//! is recorded and what becomes of one that is given back or lost). Every key of a queue
//! shares the hash tag `{NAME}`, so a queue lives on one Redis Cluster slot.
//!
//! ```text
//!  muster submit ──XADD──▶ muster:{q}:tasks ──XREADGROUP (only free slots)──▶ muster worker × N
//!   (engine over a               ▲   │ XAUTOCLAIM after the lease (a holder that         │ engine over
//!    remote executor)            │   │ stopped renewing), dead letter past --retries     │ its command
//!        ▲                       │   ▼                                                   │
//!        └──XREAD── muster:{q}:results ◀──fenced ack (Lua: only the holder, only its attempt)┘
//! ```
//!
//! Leases: a worker renews what it holds every third of the lease (an owner-checked
//! `XCLAIM … JUSTID`), so long tasks are never re-run for being long; another worker
//! reclaims what was not renewed for a lease. Completion is fenced: a result is accepted only
//! from the consumer that holds the entry *and* on the delivery it holds it by, so a worker
//! frozen past its lease and resumed cannot record a result (its attempt is stopped instead).
//! Attempts are deliveries; after a task's retries it goes to the dead-letter stream with its
//! last error. Acknowledged entries are deleted (never trimmed by `MAXLEN`, which would drop
//! pending ones). A worker with `--persistent` runs the same protocol over long-lived
//! processes, recording successes in batches. `muster results` reads what detached
//! submissions left in the results stream.

mod connection;
pub mod results;
pub(crate) mod scripts;
pub mod status;
pub mod submit;
pub mod worker;

pub use connection::{redact, BrokerError, Connection};

use std::time::Duration;

/// The consumer group every worker of a queue reads through.
pub(crate) const GROUP: &str = "muster";

/// How long an unrenewed lease lasts by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// A queue's name and the keys that hold it.
#[derive(Clone, Debug)]
pub struct Queue {
    name: String,
}

impl Queue {
    /// A queue called `name`: letters, digits and `_ - . :`, at most 100 characters.
    pub fn new(name: &str) -> Result<Queue, BrokerError> {
        let valid = !name.is_empty()
            && name.len() <= 100
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if valid {
            Ok(Queue { name: name.to_owned() })
        } else {
            Err(BrokerError::Usage(format!(
                "invalid queue name '{name}': use 1-100 letters, digits, '_', '-', '.' or ':'"
            )))
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn key(&self, what: &str) -> String {
        format!("muster:{{{}}}:{what}", self.name)
    }

    /// The stream of tasks.
    pub(crate) fn tasks(&self) -> String {
        self.key("tasks")
    }
    /// The stream of results, read by submitters.
    pub(crate) fn results(&self) -> String {
        self.key("results")
    }
    /// Tasks that used up their attempts, with their last error.
    pub(crate) fn dead(&self) -> String {
        self.key("dead")
    }
    /// Counters: done, failed, dead, retried, rejected (late completions), queued (tasks on
    /// the queue, waiting or held: entries may carry packs).
    pub(crate) fn stats(&self) -> String {
        self.key("stats")
    }
    /// Failed attempts per entry id (`ID`), and the last one's error (`ID:error`).
    pub(crate) fn failures(&self) -> String {
        self.key("failures")
    }
    /// Workers' heartbeats: name → "unix-ms slots".
    /// A worker name's liveness record: its holder's token, expiring a lease after its last
    /// heartbeat (see `worker::claim_name`).
    pub(crate) fn alive(&self, name: &str) -> String {
        self.key(&format!("alive:{name}"))
    }
    pub(crate) fn workers(&self) -> String {
        self.key("workers")
    }
    /// Detached submissions (id → tasks): only their results are `muster results`'s to take.
    pub(crate) fn detached(&self) -> String {
        self.key("detached")
    }
    /// When the last drain was asked for (Redis time, ms): workers started before it stop.
    pub(crate) fn drain(&self) -> String {
        self.key("drain")
    }
}

/// A worker's last heartbeat: `at slots running [lease]` (times in Redis milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Beat {
    pub(crate) at: u64,
    pub(crate) slots: u64,
    pub(crate) running: u64,
    /// The worker's lease (heartbeats written before they carried it: the default's).
    pub(crate) lease_ms: u64,
}

impl Beat {
    pub(crate) fn parse(beat: &str) -> Beat {
        let mut fields = beat.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
        let (at, slots, running) =
            (fields.next().unwrap_or(0), fields.next().unwrap_or(0), fields.next().unwrap_or(0));
        // Heartbeats written before they carried the lease: the default of then, 30 s.
        let lease_ms = fields.next().filter(|&lease| lease > 0).unwrap_or(30_000);
        Beat { at, slots, running, lease_ms }
    }

    /// True when written within the worker's lease before `now`: alive as far as anyone can tell.
    pub(crate) fn alive(&self, now: u64) -> bool {
        now.saturating_sub(self.at) <= self.lease_ms.max(1000)
    }
}

/// Makes sure the queue's stream and consumer group exist (the group reads from the start,
/// so tasks submitted before any worker came are delivered).
pub(crate) fn ensure_group(
    link: &mut Connection,
    queue: &Queue,
    shutdown: Option<&crate::Shutdown>,
) -> Result<(), BrokerError> {
    let tasks = queue.tasks();
    // Looked at first: a Redis that is full (maxmemory) refuses XGROUP CREATE even when the
    // group is there, and then nothing needs creating.
    let groups: Result<Vec<std::collections::HashMap<String, redis::Value>>, BrokerError> =
        link.call(shutdown, |c| redis::cmd("XINFO").arg("GROUPS").arg(&tasks).query(c));
    let exists = groups.is_ok_and(|groups| {
        groups.iter().any(|group| group.get("name").and_then(bytes) == Some(GROUP.as_bytes()))
    });
    if exists {
        return Ok(());
    }
    match link.call(shutdown, |c| {
        redis::cmd("XGROUP").arg("CREATE").arg(&tasks).arg(GROUP).arg("0").arg("MKSTREAM").query::<()>(c)
    }) {
        Err(BrokerError::Redis(message)) if message.contains("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// The XADD that puts a task on the queue: data only (submission, number, retry budget and
/// input values), never a command.
pub(crate) fn task_entry(
    queue: &Queue,
    job: &str,
    seq: crate::task::Seq,
    retries: u32,
    values: &[Vec<u8>],
) -> redis::Cmd {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(queue.tasks()).arg("*").arg("job").arg(job).arg("seq").arg(seq);
    xadd.arg("retries").arg(retries).arg("values").arg(encode_values(values));
    xadd
}

/// Most tasks one entry carries (see [`pack_entry`]).
pub(crate) const PACK_MOST: usize = 256;

/// The XADD that puts several tasks on the queue as one entry (a pack, see
/// [`scripts`]): delivered, leased and fenced as one, recorded task by task. The pack is
/// netstrings of each task's number and encoded values.
pub(crate) fn pack_entry<'v>(
    queue: &Queue,
    job: &str,
    retries: u32,
    tasks: impl ExactSizeIterator<Item = (crate::task::Seq, &'v [Vec<u8>])>,
) -> redis::Cmd {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(queue.tasks())
        .arg("*")
        .arg("job")
        .arg(job)
        .arg("retries")
        .arg(retries)
        .arg("n")
        .arg(tasks.len());
    let mut pack = Vec::new();
    for (seq, values) in tasks {
        push_netstring(&mut pack, seq.to_string().as_bytes());
        push_netstring(&mut pack, &encode_values(values));
    }
    xadd.arg("pack").arg(pack);
    xadd
}

/// A task of a pack: its number (as written) and its input's values.
pub(crate) type PackedTask = (Vec<u8>, Vec<Vec<u8>>);

/// A pack's tasks; `None` when the bytes are not a pack.
pub(crate) fn decode_pack(bytes: &[u8]) -> Option<Vec<PackedTask>> {
    let items = decode_values(bytes)?;
    if items.len() % 2 != 0 {
        return None;
    }
    let mut items = items.into_iter();
    let mut tasks = Vec::with_capacity(items.len() / 2);
    while let (Some(seq), Some(values)) = (items.next(), items.next()) {
        tasks.push((seq, decode_values(&values)?));
    }
    Some(tasks)
}

/// Appends `value` as a netstring (`3:abc,`).
pub(crate) fn push_netstring(out: &mut Vec<u8>, value: &[u8]) {
    // The length's digits by hand: formatting machinery was a tenth of a worker's time.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut len = value.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (len % 10) as u8;
        len /= 10;
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.push(b':');
    out.extend_from_slice(value);
    out.push(b',');
}

/// The first netstring of `bytes` and what follows it; `None` when it is malformed.
fn split_netstring(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = bytes.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&bytes[..colon]).ok()?.parse().ok()?;
    let rest = &bytes[colon + 1..];
    (rest.len() > len && rest[len] == b',').then(|| (&rest[..len], &rest[len + 1..]))
}

/// The netstrings one after another in `bytes`, borrowed; ends at the first malformed one
/// (see [`decode_values`] to tell).
pub(crate) fn netstrings(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (value, rest) = split_netstring(bytes)?;
        bytes = rest;
        Some(value)
    })
}

/// Encodes input values as netstrings (`3:abc,`), so any bytes (NUL included) survive.
pub(crate) fn encode_values(values: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.iter().map(|v| v.len() + 8).sum());
    for value in values {
        push_netstring(&mut out, value);
    }
    out
}

/// Decodes [`encode_values`]; `None` when the bytes are not netstrings.
pub(crate) fn decode_values(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let (value, rest) = split_netstring(bytes)?;
        values.push(value.to_vec());
        bytes = rest;
    }
    Some(values)
}

/// Where a `moved` notice (see [`scripts`]) says tasks went: (task number, new entry id) each.
pub(crate) fn moved(notice: &impl Fielded) -> Vec<(crate::task::Seq, String)> {
    let Some(moved) = notice.get("moved") else { return Vec::new() };
    let mut items = netstrings(moved);
    let mut list = Vec::new();
    while let (Some(seq), Some(entry)) = (items.next(), items.next()) {
        if let Some(seq) = std::str::from_utf8(seq).ok().and_then(|seq| seq.parse().ok()) {
            list.push((seq, String::from_utf8_lossy(entry).into_owned()));
        }
    }
    list
}

/// A stream entry: its id and field/value pairs.
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Named fields, read the same way whoever holds them: absent reads as empty or zero.
pub(crate) trait Fielded {
    fn get(&self, field: &str) -> Option<&[u8]>;

    fn text(&self, field: &str) -> String {
        self.get(field).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
    }

    fn number<T: std::str::FromStr + Default>(&self, field: &str) -> T {
        self.get(field)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }
}

impl Fielded for Entry {
    fn get(&self, field: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(name, _)| name == field.as_bytes()).map(|(_, value)| value.as_slice())
    }
}

/// Field/value pairs borrowed from the reply that carried them: a stream entry's, or one
/// result of a results pack (a results entry is read without copying its pack).
pub(crate) struct Fields<'a>(Vec<(&'a [u8], &'a [u8])>);

impl<'a> Fields<'a> {
    /// A stream entry, `[id, [field, value, …]]`: its id and fields.
    pub(crate) fn of_entry(value: &'a redis::Value) -> Option<(&'a [u8], Fields<'a>)> {
        let redis::Value::Array(parts) = value else { return None };
        let id = bytes(parts.first()?)?;
        let pairs = match parts.get(1)? {
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|pair| Some((bytes(pair.first()?)?, bytes(pair.get(1)?)?)))
                .collect(),
            _ => Vec::new(),
        };
        Some((id, Fields(pairs)))
    }

    /// The results a results entry carries: its own fields, or each of its pack's (named by
    /// the entry's submission). A `moved` notice carries none.
    pub(crate) fn results(&self) -> Vec<Fields<'a>> {
        let Some(pack) = self.get_borrowed("pack") else {
            return if self.get("moved").is_some() { Vec::new() } else { vec![Fields(self.0.clone())] };
        };
        let job = self.get_borrowed("job").unwrap_or_default();
        netstrings(pack)
            .map(|result| {
                let mut items = netstrings(result);
                let mut pairs = vec![(&b"job"[..], job)];
                while let (Some(field), Some(value)) = (items.next(), items.next()) {
                    pairs.push((field, value));
                }
                Fields(pairs)
            })
            .collect()
    }

    fn get_borrowed(&self, field: &str) -> Option<&'a [u8]> {
        self.0.iter().find(|(name, _)| *name == field.as_bytes()).map(|(_, value)| *value)
    }
}

impl Fielded for Fields<'_> {
    fn get(&self, field: &str) -> Option<&[u8]> {
        self.get_borrowed(field)
    }
}

impl Entry {
    /// The results a results entry carries (see [`Fields::results`]), owned.
    #[cfg(test)]
    pub(crate) fn results(&self) -> Vec<Entry> {
        let fields = Fields(self.fields.iter().map(|(f, v)| (f.as_slice(), v.as_slice())).collect());
        let owned = |result: &Fields<'_>| Entry {
            id: self.id.clone(),
            fields: result.0.iter().map(|(field, value)| (field.to_vec(), value.to_vec())).collect(),
        };
        fields.results().iter().map(owned).collect()
    }

    /// Parses `[id, [field, value, …]]`.
    pub(crate) fn parse(value: &redis::Value) -> Option<Entry> {
        let redis::Value::Array(parts) = value else { return None };
        let id = bytes(parts.first()?).map(|b| String::from_utf8_lossy(b).into_owned())?;
        let fields = match parts.get(1)? {
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|pair| Some((bytes(pair.first()?)?.to_vec(), bytes(pair.get(1)?)?.to_vec())))
                .collect(),
            _ => Vec::new(),
        };
        Some(Entry { id, fields })
    }

    /// Parses an array of entries.
    pub(crate) fn parse_all(value: &redis::Value) -> Vec<Entry> {
        match value {
            redis::Value::Array(items) => items.iter().filter_map(Entry::parse).collect(),
            _ => Vec::new(),
        }
    }
}

/// The bytes of a string-like reply.
pub(crate) fn bytes(value: &redis::Value) -> Option<&[u8]> {
    match value {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// An integer-like reply.
pub(crate) fn integer(value: &redis::Value) -> Option<i64> {
    match value {
        redis::Value::Int(n) => Some(*n),
        other => bytes(other).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
    }
}

/// This machine's name, for worker names and joblogs.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_encoding_whatever_their_bytes() {
        let values = vec![b"a,b:c".to_vec(), Vec::new(), vec![0, 255, b'\n'], b"12:x,".to_vec()];
        assert_eq!(decode_values(&encode_values(&values)), Some(values));
        assert_eq!(decode_values(b""), Some(vec![]));
        assert_eq!(decode_values(b"3:ab,"), None);
        assert_eq!(decode_values(b"x:ab,"), None);
    }

    #[test]
    fn queue_names_are_checked_and_keys_share_a_hash_tag() {
        let queue = Queue::new("jobs-1").expect("valid");
        assert_eq!(queue.tasks(), "muster:{jobs-1}:tasks");
        assert_eq!(queue.results(), "muster:{jobs-1}:results");
        assert!(Queue::new("").is_err());
        assert!(Queue::new("a b").is_err());
        assert!(Queue::new("a}b").is_err());
    }
}

#[cfg(test)]
mod scripts_tests;
