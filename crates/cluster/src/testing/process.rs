//! What the fixture servers share: free loopback ports, per-process scratch directories (and
//! the removal of those left by dead test processes), the unprivileged user to run as, and
//! spawning a child that dies with the test process.

use super::FixtureError;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;

/// A port nobody listens on now (bound and released; the usual small race is accepted).
pub fn free_port() -> Result<u16, FixtureError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A new scratch directory `<tmp>/palaver-fixtures/<pid>-<kind>-<uuid>`, after removing the
/// directories of test processes that no longer exist.
pub fn scratch_dir(kind: &str) -> Result<PathBuf, FixtureError> {
    let root = std::env::temp_dir().join("palaver-fixtures");
    std::fs::create_dir_all(&root)?;
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name.to_string_lossy().split('-').next().and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && pid != std::process::id()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = root.join(format!("{}-{kind}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The uid/gid to run a server as: `None` when not root (run as ourselves), else the named
/// system user's (from /etc/passwd).
pub fn unprivileged_user(name: &str) -> Result<Option<(u32, u32)>, FixtureError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or(FixtureError::Command {
            what: format!("looking up user `{name}`"),
            detail: "running as root and the user does not exist (install the Debian package)".into(),
        })
}

/// Give `dir` (recursively) to `user`, so a server running as that user can write it.
pub fn chown_to(dir: &Path, user: Option<(u32, u32)>) -> Result<(), FixtureError> {
    let Some((uid, gid)) = user else { return Ok(()) };
    for entry in walk(dir)? {
        std::os::unix::fs::chown(&entry, Some(uid), Some(gid))?;
    }
    Ok(())
}

fn walk(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![dir.to_path_buf()];
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            out.extend(walk(&entry?.path())?);
        }
    }
    Ok(out)
}

/// Apply `user` to `cmd` (uid and gid).
pub fn run_as(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        // std drops the supplementary groups itself when root sets a uid.
        cmd.uid(uid).gid(gid);
        // The server reads no HOME, but tools complain when it is root's.
        cmd.env("HOME", "/tmp");
    }
}

/// Spawn `cmd` from a thread that lives as long as the process, with `PR_SET_PDEATHSIG =
/// SIGKILL` (the signal follows the thread that forked the child, so it must not be a test's
/// thread, which ends with the test).
pub fn spawn_tied_to_process(mut cmd: Command) -> Result<Child, FixtureError> {
    // SAFETY: prctl is async-signal-safe; it runs in the child after the uid change (a later
    // credential change would clear the death signal).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name("fixture-parent".into()).spawn(move || {
        let _ = tx.send(cmd.spawn());
        // Park forever: the child's death signal fires when this thread (the process) ends.
        loop {
            std::thread::park();
        }
    })?;
    rx.recv()
        .map_err(|_| FixtureError::Command { what: "spawn".into(), detail: "spawner thread died".into() })?
        .map_err(|e| FixtureError::Command { what: format!("spawning {:?}", "server"), detail: e.to_string() })
}

/// Run a short command to completion; its stderr on failure.
pub fn run_checked(mut cmd: Command, what: &str) -> Result<(), FixtureError> {
    let out = cmd.output().map_err(|e| FixtureError::Command { what: what.into(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FixtureError::Command {
            what: what.into(),
            detail: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        })
    }
}

/// Send SIGTERM (then SIGKILL after `grace`) to a child and reap it.
pub fn stop_child(child: &mut Child, grace: std::time::Duration) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
