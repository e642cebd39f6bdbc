//! A private PostgreSQL server for tests: `initdb` into a scratch directory and `postgres` on a
//! free loopback port, as the `postgres` system user when the tests run as root. Durability is
//! off against OS crashes only (`fsync=off`: the data is thrown away), so tests cost milliseconds per
//! commit; a committed row does survive the server being killed (synchronous commit stays on).

use super::FixtureError;
use super::process::{
    chown_to, free_port, run_as, run_checked, scratch_dir, spawn_tied_to_process, stop_child, unprivileged_user,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The database superuser `initdb` creates (password-less, `trust` on loopback).
pub const SUPERUSER: &str = "palaver";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running private PostgreSQL.
pub struct PostgresServer {
    bin_dir: PathBuf,
    dir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

/// The directory holding `initdb`/`postgres`/`pg_isready`: the newest
/// `/usr/lib/postgresql/<v>/bin` (Debian), else the directory of `initdb` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| d.join("initdb").exists() && d.join("postgres").exists())
}

/// Whether PostgreSQL's server binaries are installed.
pub fn postgres_available() -> bool {
    bin_dir().is_some()
}

impl PostgresServer {
    /// Start a new server (stopped on drop).
    pub fn start() -> Result<Self, FixtureError> {
        let bin_dir = bin_dir().ok_or(FixtureError::NotInstalled("PostgreSQL (Debian package postgresql)"))?;
        let dir = scratch_dir("pg")?;
        let user = unprivileged_user("postgres")?;
        chown_to(&dir, user)?;
        let data = dir.join("data");
        let mut initdb = Command::new(bin_dir.join("initdb"));
        initdb
            .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
            .arg(&data)
            .stdin(Stdio::null());
        run_as(&mut initdb, user);
        run_checked(initdb, "initdb")?;

        let port = free_port()?;
        let log = std::fs::File::create(dir.join("postgres.log"))?;
        chown_to(&dir.join("postgres.log"), user)?;
        let mut cmd = Command::new(bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        run_as(&mut cmd, user);
        let child = spawn_tied_to_process(cmd)?;
        let server = Self { bin_dir, dir, port, user, child: Mutex::new(Some(child)) };
        server.wait_ready()?;
        tracing::info!(port, dir = %server.dir.display(), "private PostgreSQL ready");
        Ok(server)
    }

    /// One server for the whole test binary (started on first use, killed when the process
    /// ends). Tests take their own database from it with [`Self::fresh_database`].
    pub fn shared() -> Result<&'static PostgresServer, FixtureError> {
        static SHARED: OnceLock<Result<PostgresServer, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| FixtureError::Command { what: "starting the shared PostgreSQL".into(), detail: e.clone() })
    }

    fn wait_ready(&self) -> Result<(), FixtureError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            let exited = self.child.lock().unwrap().as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(FixtureError::NotReady {
                    what: "postgres",
                    secs: READY_TIMEOUT.as_secs(),
                    log: std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scratch directory (data directory, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Create a new empty database with a unique name; returns its URL.
    pub fn fresh_database(&self) -> Result<String, FixtureError> {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut cmd = Command::new(self.bin_dir.join("createdb"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER, &name]).stdin(Stdio::null());
        run_checked(cmd, "createdb")?;
        Ok(self.url(&name))
    }

    /// Stop the server now (immediate shutdown, like a crash), keeping its data directory.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SIGQUIT is PostgreSQL's immediate shutdown.
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGQUIT) };
            stop_child(&mut child, Duration::from_secs(10));
        }
    }

    /// Start a stopped server again on the same port and data directory.
    pub fn restart(&self) -> Result<(), FixtureError> {
        self.stop();
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.join("postgres.log"))?;
        let mut cmd = Command::new(self.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        run_as(&mut cmd, self.user);
        *self.child.lock().unwrap() = Some(spawn_tied_to_process(cmd)?);
        self.wait_ready()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // SIGINT: fast shutdown (no need to wait for clients).
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            stop_child(&mut child, Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
