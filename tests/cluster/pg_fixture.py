"""A private PostgreSQL and a private Redis for the Python tests (the Rust twin is
palaver-cluster's `testing`).

initdb into a temporary directory and `postgres` on a free loopback port, as the `postgres`
system user when run as root (PostgreSQL refuses root); the system service is never used.
The server is killed and its directory removed when the context ends.
"""

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

SUPERUSER = "palaver"


def bin_dir():
    """The newest /usr/lib/postgresql/<v>/bin (Debian), else the directory of initdb on PATH."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    if dirs:
        return dirs[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError("PostgreSQL is not installed (make prereqs installs the Debian package postgresql)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A private PostgreSQL on a free loopback port; `stop()` and `start()` take it down and
    bring it back on the same data directory and port (trials.py's outage case)."""

    def __init__(self, bindir, port, directory, data, as_user):
        self.bindir, self.port, self.dir, self.data, self.as_user = bindir, port, directory, data, as_user
        self.proc = None

    def url(self, name):
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def fresh_database(self):
        name = "t_" + uuid.uuid4().hex
        subprocess.run([os.path.join(self.bindir, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name], check=True)
        return name

    def scalar(self, database, sql):
        out = subprocess.run(
            [os.path.join(self.bindir, "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-tAc", sql],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def start(self):
        """Starts the server and waits until it accepts connections (60 s at most)."""
        log_path = os.path.join(self.dir, "postgres.log")
        with open(log_path, "a") as log:
            if os.geteuid() == 0:
                os.chown(log_path, pwd.getpwnam("postgres").pw_uid, -1)
            self.proc = subprocess.Popen(
                [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off", "-c", "full_page_writes=off"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, **self.as_user,
            )
        deadline = time.time() + 60
        while subprocess.run([os.path.join(self.bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode != 0:
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("private PostgreSQL did not start:\n" + open(log_path).read())
            time.sleep(0.05)

    def stop(self, sig=signal.SIGQUIT):
        """Stops the server; SIGQUIT is PostgreSQL's immediate shutdown (no checkpoint)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def private_postgres():
    bindir = bin_dir()
    directory = tempfile.mkdtemp(prefix="palaver-pg-")
    as_user = {}
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chmod(directory, 0o755)
        os.chown(directory, pw.pw_uid, pw.pw_gid)

        def demote():
            os.setgid(pw.pw_gid)
            os.setgroups([])
            os.setuid(pw.pw_uid)

        as_user = {"preexec_fn": demote, "env": {**os.environ, "HOME": "/tmp"}}
    data = os.path.join(directory, "data")
    subprocess.run([os.path.join(bindir, "initdb"), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync", "-D", data],
                   check=True, stdout=subprocess.DEVNULL, **as_user)
    pg = Postgres(bindir, free_port(), directory, data, as_user)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop(signal.SIGINT)  # fast shutdown
        shutil.rmtree(directory, ignore_errors=True)


class Redis:
    """A private redis-server; `kill()` (SIGKILL) and `start()` on the same port (trials.py)."""

    def __init__(self, server, port, directory):
        self.server, self.port, self.dir = server, port, directory
        self.proc = None

    def start(self):
        """Starts redis-server and waits until it answers PING (20 s at most)."""
        log_path = os.path.join(self.dir, "redis.log")
        with open(log_path, "a") as log:
            self.proc = subprocess.Popen(
                [self.server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", self.dir],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        deadline = time.time() + 20
        while True:
            try:
                if self.cli("PING") == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("private Redis did not start:\n" + open(log_path).read())
            time.sleep(0.05)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args):
        """redis-cli's answer to one command (raw output, stripped)."""
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--raw", *args],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()


@contextlib.contextmanager
def private_redis():
    """redis-server without persistence on a free loopback port (never the system service)."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(server):
        raise RuntimeError("redis-server is not installed (make prereqs installs the Debian package redis-server)")
    directory = tempfile.mkdtemp(prefix="palaver-redis-")
    redis = Redis(server, free_port(), directory)
    try:
        redis.start()
        yield redis
    finally:
        redis.kill()
        shutil.rmtree(directory, ignore_errors=True)
