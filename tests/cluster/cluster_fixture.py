"""A palaver cluster on one machine: N palaver nodes on loopback sharing one private PostgreSQL
and one private Redis (pg_fixture.py), with placement on (a node mesh with mutual TLS from a
generated cluster CA). Used by three_nodes.py (the test) and run_cluster.py (`make cluster`).

Every node shares one HTTPS/QUIC certificate authority (node 0 generates it in its data
directory, the others get a copy before they start), so a client trusting one CA file reaches
any node, and follows a QUIC redirect to any node.
"""

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from pg_fixture import private_postgres, private_redis


class ClusterNode:
    """One palaver process with its own data directory and config."""

    def __init__(self, binary, name, directory, config, log_level="warn", remove_dir=False, args=()):
        self.binary, self.name, self.dir, self.log_level = binary, name, directory, log_level
        self.args = list(args)
        self.remove_dir = remove_dir
        self.config = os.path.join(self.dir, "palaver.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.proc = None
        self.start()

    def start(self):
        env = {**os.environ, "PALAVER_CONFIG": self.config}
        self.proc = subprocess.Popen(
            [self.binary, "--data-dir", self.dir, "--listen", "127.0.0.1:0", "--log-level", self.log_level, *self.args,
             "run"],
            stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env,
        )
        info = {}
        deadline = time.time() + 120
        while "PALAVER_READY" not in info:
            line = self.proc.stdout.readline()
            if not line or time.time() > deadline:
                raise RuntimeError(f"{self.name} did not become ready (exit {self.proc.poll()})")
            key, _, value = line.strip().partition(" ")
            info[key] = value
        self.url = info["PALAVER_READY"]
        self.conn_str = info["PALAVER_CONNECTION_STRING"]
        self.ca = info["PALAVER_CA_FILE"]
        self.quic = info.get("PALAVER_QUIC")
        self.mesh = info.get("PALAVER_MESH")
        self.metrics_url = info.get("PALAVER_METRICS_URL")

    def metric(self, name):
        """Sum of the samples of metric `name` (without labels or `_count` etc. suffix rules)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            text = r.read().decode()
        total = None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
        return total

    def send(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def status(self, token, path):
        """HTTP status of GET `path` with a bearer token."""
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=self.ca), timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def registry(redis):
    """node id -> announced status, as Redis holds it now."""
    ids = [i for i in redis.cli("HKEYS", "palaver:nodes").splitlines() if i]
    out = {}
    for i in ids:
        value = redis.cli("GET", f"palaver:node:{i}")
        if value:
            out[i] = json.loads(value)
    return out


def wait_for(condition, seconds):
    """`condition()` once it is truthy within `seconds`, else its last value."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    return condition()


def node_config(pg_url, redis_url, node_id, ca_dir, usage_lines=(), extra=""):
    """The node's TOML; `usage_lines` go into `[usage]`, `extra` (whole tables) at the end."""
    return (
        "[cluster]\n"
        f'postgres_url = "{pg_url}"\n'
        f'redis_url = "{redis_url}"\n'
        f'node_id = "{node_id}"\n'
        'mesh_listen = "127.0.0.1:0"\n'
        f'mesh_ca_cert = "{ca_dir}/mesh-ca.pem"\n'
        f'mesh_ca_key = "{ca_dir}/mesh-ca.key"\n'
        "[usage]\n"
        'metrics_listen = "127.0.0.1:0"\n'
        + "".join(line + "\n" for line in usage_lines)
        + extra
    )


@contextlib.contextmanager
def cluster(binary, nodes=3, log_level="warn", usage_lines=(), extra="", args=()):
    """Start PostgreSQL, Redis and `nodes` palaver nodes; yield (pg, database, redis, [node]).
    `usage_lines` and `extra` are added to every node's config (see `node_config`); `args` to
    every node's command line before `run` (e.g. `--dev-sign-in` for the web client)."""
    with private_postgres() as pg, private_redis() as redis:
        database = pg.fresh_database()
        root = tempfile.mkdtemp(prefix="palaver-cluster-")
        ca_dir = os.path.join(root, "ca")
        os.makedirs(ca_dir)
        started = []
        try:
            for i in range(nodes):
                name = f"node-{i}"
                directory = os.path.join(root, name)
                os.makedirs(directory)
                if started:
                    shutil.copytree(os.path.join(started[0].dir, "tls"), os.path.join(directory, "tls"))
                config = node_config(pg.url(database), redis.url(), name, ca_dir, usage_lines, extra)
                started.append(ClusterNode(binary, name, directory, config, log_level, args=args))
            yield pg, database, redis, started
        finally:
            for node in started:
                node.stop()
            shutil.rmtree(root, ignore_errors=True)
