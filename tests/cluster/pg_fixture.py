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
    def __init__(self, bindir, port, directory):
        self.bindir, self.port, self.dir = bindir, port, directory

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
    port = free_port()
    log = open(os.path.join(directory, "postgres.log"), "w")
    if os.geteuid() == 0:
        os.chown(log.name, pwd.getpwnam("postgres").pw_uid, -1)
    proc = subprocess.Popen(
        [os.path.join(bindir, "postgres"), "-D", data, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", f"unix_socket_directories={directory}", "-c", "fsync=off", "-c", "full_page_writes=off"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, **as_user,
    )
    try:
        deadline = time.time() + 60
        while subprocess.run([os.path.join(bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("private PostgreSQL did not start:\n" + open(log.name).read())
            time.sleep(0.05)
        yield Postgres(bindir, port, directory)
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


class Redis:
    def __init__(self, port, proc):
        self.port, self.proc = port, proc

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
    port = free_port()
    log = open(os.path.join(directory, "redis.log"), "w")
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    redis = Redis(port, proc)
    try:
        deadline = time.time() + 20
        while True:
            try:
                if redis.cli("PING") == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("private Redis did not start:\n" + open(log.name).read())
            time.sleep(0.05)
        yield redis
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)
