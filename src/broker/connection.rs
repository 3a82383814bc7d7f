//! One connection to Redis that outlives Redis restarts: a call that fails for a lost
//! connection reconnects and tries again with backoff until it succeeds or a stop-now comes;
//! anything else (a script error, a refused command) is an error at once. The first connect
//! checks the server once: version, eviction policy, persistence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;

/// Why a broker command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Bad flags or names.
    #[error("{0}")]
    Usage(String),
    /// Redis could not be reached, or refused what muster needs.
    #[error("{0}")]
    Redis(String),
    /// The server is set up so that tasks could be lost.
    #[error("{0}")]
    Unsafe(String),
    /// Stopped by a stop-now while waiting for Redis.
    #[error("stopped while waiting for Redis at {0}")]
    Stopped(String),
}

/// A Redis connection that reconnects.
pub struct Connection {
    client: redis::Client,
    connection: Option<redis::Connection>,
    /// `host:port/db`, without credentials, for messages.
    shown: String,
    /// A lost connection was reported and not yet recovered.
    complained: bool,
    /// Connections lost and opened again: a reply may have been lost with each.
    reconnects: u64,
    /// It speaks TLS (`rediss://`).
    tls: bool,
}

/// The longest a command may take to send.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// AOF-off warnings are printed once per process.
static WARNED_DURABILITY: AtomicBool = AtomicBool::new(false);

/// `url` as messages show it: the password (between the user's `:` and the last `@`) is
/// `***`, however malformed the rest is.
pub fn redact(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Where `url`'s password lies, if it has one.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let at = url.rfind('@').filter(|&at| at >= authority_start)?;
    let colon = url[authority_start..at].find(':')? + authority_start;
    (colon + 1 < at).then_some((colon + 1, at))
}

/// `text` with `url`'s password, wherever it appears, replaced by `***` (a library's error
/// may quote the URL it was given).
fn without_password(url: &str, text: &str) -> String {
    match password_span(url) {
        Some((start, end)) => text.replace(&url[start..end], "***"),
        None => text.to_owned(),
    }
}

impl Connection {
    /// Commands that only look (status, results, drain) do not repeat the warning that Redis
    /// keeps nothing across a restart: it is said where it matters, by workers and submitters.
    pub fn no_durability_warning() {
        WARNED_DURABILITY.store(true, Ordering::SeqCst);
    }

    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS,
    /// the server's certificate checked against the system's roots or `SSL_CERT_FILE`) and
    /// checks the server:
    /// Redis 7 or later, `maxmemory-policy noeviction`, and the commands muster uses allowed.
    /// Warns (once) when results are not kept across a restart (`appendonly no`).
    pub fn connect(url: &str) -> Result<Connection, BrokerError> {
        let tls = url.starts_with("rediss://");
        let shown_url = redact(url);
        if !tls
            && !url.starts_with("redis://")
            && !url.starts_with("redis+unix://")
            && !url.starts_with("unix://")
        {
            return Err(BrokerError::Usage(format!(
                "--broker {shown_url}: expected redis://[user:password@]host[:port][/db] (or rediss:// for TLS)"
            )));
        }
        if tls {
            // Once per process; a provider installed already (by us, earlier) is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let bad_url = |err: redis::RedisError| {
            // The library's words, without its error-kind name ("… - InvalidClientConfig").
            let why = err.to_string();
            let why = why.split(" - ").next().unwrap_or(&why).to_owned();
            BrokerError::Usage(without_password(
                url,
                &format!(
                    "--broker {shown_url}: not a Redis URL muster can use ({why}); expected \
                     redis://[user:password@]host[:port][/db], or rediss://… for TLS"
                ),
            ))
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(bad_url)?;
        // Small commands, one at a time: without NODELAY each waits out a delayed ACK.
        let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(bad_url)?;
        let info = client.get_connection_info();
        let shown = format!("{}/{}", info.addr(), info.redis_settings().db());
        let mut link = Connection { client, connection: None, shown, complained: false, reconnects: 0, tls };
        let connection = link.open().map_err(|err| link.explain(&err))?;
        link.connection = Some(connection);
        link.check_server()?;
        Ok(link)
    }

    /// How many times the connection was lost and opened again. A command whose reply was
    /// lost may still have been carried out: a caller that must know compares this before
    /// and after.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Where it connects, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn open(&self) -> redis::RedisResult<redis::Connection> {
        let connection = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        // No read timeout: a socket read with one is not restarted after any signal (EINTR,
        // signal(7)), and a reply cut off that way loses what the command did. A dead server
        // closes the connection; blocking reads ask Redis for their own limit.
        connection.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(connection)
    }

    /// A message for an error, naming the server.
    fn explain(&self, err: &redis::RedisError) -> BrokerError {
        let at = &self.shown;
        let text = err.to_string();
        if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
            return BrokerError::Redis(format!(
                "Redis at {at}: its TLS certificate is not trusted ({err}); \
                 set SSL_CERT_FILE to the certificate authority that signed it"
            ));
        }
        if err.is_connection_refusal() || err.is_io_error() || err.is_timeout() {
            if self.tls && !err.is_connection_refusal() {
                // A plain Redis never answers a TLS handshake: the read just times out.
                return BrokerError::Redis(format!(
                    "cannot reach Redis at {at} over TLS (rediss://): no TLS handshake came back — \
                     if that port speaks plain Redis, use redis:// ({err})"
                ));
            }
            return BrokerError::Redis(format!("cannot reach Redis at {at}: {err}"));
        }
        if err.kind() == redis::ErrorKind::AuthenticationFailed {
            return BrokerError::Redis(format!(
                "Redis at {at} refused the user name or password in the URL: {err}"
            ));
        }
        match err.code() {
            Some("NOPERM") if err.to_string().contains("access one of the keys") || err.to_string().contains("access a key") => BrokerError::Redis(format!(
                "the Redis user at {at} may not use the queue's keys (it needs the key pattern ~muster:*; \
                 see README 'Many machines'): {err}"
            )),
            Some("NOPERM") => BrokerError::Redis(format!(
                "the Redis user at {at} lacks a command muster needs \
                 (+@stream +@hash +get +set +@scripting +info +time on ~muster:*; see README 'Many machines'): {err}"
            )),
            Some("NOAUTH") | Some("WRONGPASS") => {
                BrokerError::Redis(format!("Redis at {at} refused the credentials: {err}"))
            }
            _ => BrokerError::Redis(format!("Redis at {at}: {err}")),
        }
    }

    /// Runs `f` once on the connection; reconnects first if the last call lost it.
    fn once<T>(
        &mut self,
        f: &mut impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let connection = self.open()?;
                self.reconnects += 1;
                connection
            }
        };
        let result = f(&mut connection);
        // A lost connection is dropped; the next call opens a new one.
        if !matches!(&result, Err(err) if lost_connection(err)) {
            self.connection = Some(connection);
        }
        result
    }

    /// Runs `f`, reconnecting and trying again while the connection is lost, until it
    /// succeeds, fails for another reason, or `shutdown` (when given) is told to stop now.
    /// Without a shutdown it gives up after a minute.
    pub fn call<T>(
        &mut self,
        shutdown: Option<&Shutdown>,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BrokerError> {
        let began = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.once(&mut f) {
                Ok(value) => {
                    if self.complained {
                        self.complained = false;
                        eprintln!("muster: reached Redis at {} again", self.shown);
                    }
                    return Ok(value);
                }
                Err(err) if lost_connection(&err) || err.code() == Some("LOADING") => {
                    if !self.complained {
                        self.complained = true;
                        eprintln!("muster: lost Redis at {} ({err}); trying again", self.shown);
                    }
                    let gave_up = match shutdown {
                        Some(shutdown) => shutdown.is_stopping_now(),
                        None => began.elapsed() > Duration::from_secs(60),
                    };
                    if gave_up {
                        return Err(match shutdown {
                            Some(_) => BrokerError::Stopped(self.shown.clone()),
                            None => self.explain(&err),
                        });
                    }
                    match shutdown {
                        Some(shutdown) => {
                            shutdown.wait_stop_now_timeout(backoff);
                        }
                        None => std::thread::sleep(backoff),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(err) => return Err(self.explain(&err)),
            }
        }
    }

    /// Redis's clock, in ms since the epoch (every machine compares times on it).
    pub fn time_ms(&mut self, shutdown: Option<&Shutdown>) -> Result<u64, BrokerError> {
        let (seconds, micros): (u64, u64) = self.call(shutdown, |c| redis::cmd("TIME").query(c))?;
        Ok(seconds * 1000 + micros / 1000)
    }

    fn check_server(&mut self) -> Result<(), BrokerError> {
        let info: String = self.call(None, |c| redis::cmd("INFO").query(c))?;
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
                .map(str::trim)
                .unwrap_or("")
                .to_owned()
        };
        let version = field("redis_version");
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        if major < 7 {
            return Err(BrokerError::Redis(format!(
                "Redis at {} is version {version}; muster needs 7.0 or later (XAUTOCLAIM's deleted ids)",
                self.shown
            )));
        }
        let policy = field("maxmemory_policy");
        if !policy.is_empty() && policy != "noeviction" {
            return Err(BrokerError::Unsafe(format!(
                "Redis at {} has maxmemory-policy {policy}: under memory pressure it would evict queued \
                 tasks; set maxmemory-policy noeviction",
                self.shown
            )));
        }
        if field("aof_enabled") != "1" && !WARNED_DURABILITY.swap(true, Ordering::SeqCst) {
            eprintln!(
                "muster: warning: Redis at {} has appendonly no: a Redis restart loses queued tasks and \
                 results (set appendonly yes; appendfsync everysec risks the last second, always none)",
                self.shown
            );
        }
        Ok(())
    }
}

/// True when the error means the connection is gone (Redis restarted, network cut).
fn lost_connection(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() || err.is_timeout()
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    /// The URLs of issue 20: malformed in every way, each with a password.
    const MALFORMED: [&str; 8] = [
        "redis://user:PASSWORD@host:notaport",
        "redis://user:PASSWORD@host/abc",
        "redis://user:PASSWORD@[::1:6379",
        "redis//user:PASSWORD@host",
        "redis://:PASSWORD@host:99999",
        "rediss://user:PASSWORD@host:x/0",
        "redis://user:PASSWORD@/",
        "redis://user:PASS@WORD@host:1a",
    ];

    #[test]
    fn no_password_is_in_any_message_about_a_malformed_url() {
        for url in MALFORMED {
            let Err(err) = Connection::connect(url) else { panic!("{url} connected") };
            let message = err.to_string();
            assert!(!message.contains("PASSWORD") && !message.contains("WORD@"), "{url}: {message}");
            assert!(message.contains("***"), "{url}: {message}");
            assert!(!message.contains("InvalidClientConfig"), "{url}: {message}");
        }
    }

    #[test]
    fn redaction_keeps_everything_but_the_password() {
        assert_eq!(redact("redis://alice:s3cret@host:6379/2"), "redis://alice:***@host:6379/2");
        assert_eq!(redact("redis://:s3cret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://alice@host"), "redis://alice@host");
        assert_eq!(redact("redis://u:p@ss@host"), "redis://u:***@host");
    }
}
