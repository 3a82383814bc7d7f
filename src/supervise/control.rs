//! Controlling a running supervisor from another process: `status` and `stop` over a Unix
//! socket in a private runtime directory.
//!
//! Each supervisor has a name (default `default`) and two files in the runtime directory:
//! `NAME.lock`, held with `flock` for the supervisor's whole life (the kernel drops it when the
//! process dies, even by SIGKILL, so a crash never leaves a stale "running" marker), and
//! `NAME.sock`, the socket. A second supervisor with the same name is refused while the lock is
//! held; a socket left by a killed one is replaced.
//!
//! The protocol is one request line (`status`, `status json` or `stop`), answered with text and a last line
//! `ok`. `stop` answers only once every worker is reaped, so `muster stop` returning means
//! everything is down. A reply without `ok` means the supervisor went away mid-answer.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::StatusBoard;

/// The last line of every complete answer.
const DONE: &str = "ok";

/// How long the server waits for a client's request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a control operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another supervisor with this name is running.
    #[error("a `muster up` named '{name}' is already running{} (control socket {}); stop it first, or pick another --name", pid.map(|p| format!(" as pid {p}")).unwrap_or_default(), socket.display())]
    AlreadyRunning {
        /// The supervisor's name.
        name: String,
        /// Its pid, when the lock file names it.
        pid: Option<u32>,
        /// Its socket.
        socket: PathBuf,
    },
    /// No supervisor with this name is running.
    #[error("no `muster up` named '{name}' is running (no control socket answers at {})", socket.display())]
    NotRunning {
        /// The name asked for.
        name: String,
        /// Where its socket would be.
        socket: PathBuf,
    },
    /// The name cannot be a file name.
    #[error("'{0}' is not a usable name: use letters, digits, '-', '_' and '.', not starting with '.'")]
    BadName(String),
    /// The runtime directory is not private to this user.
    #[error("runtime directory {} is not private to this user (owner uid {owner}, mode {mode:o}); fix it or set XDG_RUNTIME_DIR", dir.display())]
    UnsafeDir {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// The supervisor closed the connection before finishing its answer.
    #[error("the `muster up` named '{0}' went away before answering")]
    Interrupted(String),
    /// Anything else the operating system refused.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> ControlError {
    let context = context.into();
    move |source| ControlError::Io { context, source }
}

/// Where a named supervisor's lock and socket live.
#[derive(Clone, Debug)]
pub struct Endpoint {
    name: String,
    dir: PathBuf,
}

impl Endpoint {
    /// The endpoint `name` in `dir` (which must exist and be private).
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Result<Endpoint, ControlError> {
        let usable = !name.is_empty()
            && !name.starts_with('.')
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !usable {
            return Err(ControlError::BadName(name.to_owned()));
        }
        Ok(Endpoint { name: name.to_owned(), dir: dir.into() })
    }

    /// The endpoint `name` in the user's runtime directory (see [`runtime_dir`]).
    pub fn in_runtime_dir(name: &str) -> Result<Endpoint, ControlError> {
        let endpoint = Endpoint::new(PathBuf::new(), name)?;
        Ok(Endpoint { dir: runtime_dir()?, ..endpoint })
    }

    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    fn lock_file(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.name))
    }

    fn not_running(&self) -> ControlError {
        ControlError::NotRunning { name: self.name.clone(), socket: self.socket() }
    }
}

/// `$XDG_RUNTIME_DIR/muster`, or `muster-UID` in the temp directory when that is unset;
/// created with mode 0700 and refused unless it is ours and private.
pub fn runtime_dir() -> Result<PathBuf, ControlError> {
    let uid = rustix::process::getuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(base) => PathBuf::from(base).join("muster"),
        None => std::env::temp_dir().join(format!("muster-{uid}")),
    };
    private_dir(dir)
}

/// Creates `dir` (mode 0700) unless it exists, and checks that it is a directory of ours that
/// nobody else can enter: in a shared /tmp, someone else could otherwise plant the socket.
fn private_dir(dir: PathBuf) -> Result<PathBuf, ControlError> {
    let uid = rustix::process::getuid().as_raw();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io_error(format!("creating {}", dir.display()))(err)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(io_error(format!("reading {}", dir.display())))?;
    let mode = meta.mode() & 0o7777;
    if !meta.is_dir() || meta.uid() != uid || mode & 0o077 != 0 {
        return Err(ControlError::UnsafeDir { dir, owner: meta.uid(), mode });
    }
    Ok(dir)
}

/// The supervisor's side: holds the name's lock and answers requests.
pub struct ControlServer {
    endpoint: Endpoint,
    /// Held (flock) until the server is dropped.
    _lock: File,
    listener: Option<UnixListener>,
    /// `stop` requests waiting for the final answer.
    pending_stops: Arc<Mutex<Vec<UnixStream>>>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer").field("endpoint", &self.endpoint).finish()
    }
}

impl ControlServer {
    /// Takes the name's lock and binds its socket; refused while another supervisor holds it.
    pub fn bind(endpoint: Endpoint) -> Result<ControlServer, ControlError> {
        let lock_path = endpoint.lock_file();
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error(format!("opening {}", lock_path.display())))?;
        match crate::lockfile::lock_exclusive(&lock) {
            Ok(true) => {}
            Ok(false) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                return Err(ControlError::AlreadyRunning {
                    name: endpoint.name.clone(),
                    pid: holder.trim().parse().ok(),
                    socket: endpoint.socket(),
                });
            }
            Err(err) => return Err(io_error(format!("locking {}", lock_path.display()))(err)),
        }
        // The lock is ours: record who holds it, and replace a socket a killed supervisor left.
        let write_pid = lock.set_len(0).and_then(|()| writeln!(lock, "{}", std::process::id()));
        write_pid.map_err(io_error(format!("writing {}", lock_path.display())))?;
        let socket = endpoint.socket();
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(format!("removing stale {}", socket.display()))(err)),
        }
        let listener =
            UnixListener::bind(&socket).map_err(io_error(format!("binding {}", socket.display())))?;
        Ok(ControlServer {
            endpoint,
            _lock: lock,
            listener: Some(listener),
            pending_stops: Arc::default(),
            closed: Arc::default(),
        })
    }

    /// The endpoint served.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Starts answering on a thread: `status` with `board`'s table, `stop` by calling
    /// `on_stop` and answering once [`finish`](Self::finish) is called.
    pub fn serve(&mut self, board: StatusBoard, on_stop: impl Fn() + Send + 'static) -> io::Result<()> {
        let Some(listener) = self.listener.take() else { return Ok(()) };
        let pending = self.pending_stops.clone();
        let closed = self.closed.clone();
        std::thread::Builder::new().name("muster-control".into()).spawn(move || {
            for stream in listener.incoming() {
                if closed.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                answer(stream, &board, &on_stop, &pending);
            }
        })?;
        Ok(())
    }

    /// Sends `text` and the end marker to every `stop` request, and stops serving.
    pub fn finish(mut self, text: &str) {
        let pending = std::mem::take(&mut *self.pending_stops.lock().unwrap_or_else(PoisonError::into_inner));
        for mut stream in pending {
            let _ = writeln!(stream, "{text}{DONE}");
        }
        self.close();
    }

    fn close(&mut self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wake the accept loop so its thread ends, then take the socket away.
        let _ = UnixStream::connect(self.endpoint.socket());
        let _ = std::fs::remove_file(self.endpoint.socket());
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.close();
    }
}

fn answer(stream: UnixStream, board: &StatusBoard, on_stop: &dyn Fn(), pending: &Mutex<Vec<UnixStream>>) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut request = String::new();
    let Ok(mut writer) = stream.try_clone() else { return };
    if BufReader::new(&stream).take(256).read_line(&mut request).is_err() {
        return;
    }
    match request.trim() {
        "status" => {
            let _ = writeln!(writer, "{}{DONE}", board.render());
        }
        "status json" => {
            let _ = writeln!(writer, "{}\n{DONE}", StatusBoard::render_json_rows(&board.snapshot()));
        }
        "stop" => {
            let workers = board.snapshot().len();
            let _ = writeln!(writer, "stopping {workers} workers (SIGTERM, grace, SIGKILL)...");
            pending.lock().unwrap_or_else(PoisonError::into_inner).push(writer);
            on_stop();
        }
        other => {
            let _ = writeln!(writer, "error: unknown request '{other}' (known: status, status json, stop)");
        }
    }
}

/// Sends `request` (`status` or `stop`) to the supervisor at `endpoint`, copying its answer
/// to `out` as it arrives (without the end marker).
pub fn request(endpoint: &Endpoint, request: &str, out: &mut dyn Write) -> Result<(), ControlError> {
    let socket = endpoint.socket();
    let mut stream = match UnixStream::connect(&socket) {
        Ok(stream) => stream,
        Err(err) if matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => {
            return Err(endpoint.not_running());
        }
        Err(err) => return Err(io_error(format!("connecting to {}", socket.display()))(err)),
    };
    writeln!(stream, "{request}").map_err(|_| endpoint.not_running())?;
    let mut complete = false;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if line == DONE {
            complete = true;
            break;
        }
        let _ = writeln!(out, "{line}");
    }
    if complete {
        Ok(())
    } else {
        Err(ControlError::Interrupted(endpoint.name.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_runtime_dir_is_created_private_and_an_open_one_is_refused() {
        let base = tempfile::tempdir().expect("temp dir");
        let fresh = private_dir(base.path().join("muster")).expect("created");
        let mode = std::fs::metadata(&fresh).expect("exists").mode() & 0o777;
        assert_eq!(mode, 0o700);

        let open = base.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(private_dir(open), Err(ControlError::UnsafeDir { mode: 0o777, .. })));

        let file = base.path().join("file");
        std::fs::write(&file, "").expect("write");
        assert!(matches!(private_dir(file), Err(ControlError::UnsafeDir { .. })));
    }
}
