"""A release `palaver` process for the trials: private data dir, free loopback ports.

`PalaverServer` starts the binary with `--listen 127.0.0.1:0`, a config that puts QUIC,
`/metrics` and the media workers on free ports, and reads the `PALAVER_*` lines it prints.
It can be killed with SIGKILL and started again on the same data dir (same access key, CA
and databases; new ports). It also lists every socket the process listens on (from
/proc/<pid>/fd and /proc/net/*), samples its RSS, open fds and CPU, and reads /metrics.
"""

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def default_binary(name):
    """`$CARGO_TARGET_DIR/release/<name>` (or ./target/release/<name>)."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path(__file__).resolve().parents[2] / "target")
    return str(Path(target) / "release" / name)


class PalaverServer:
    """One server process on `data_dir`. Start with `start()`, stop with `kill9()` or `stop()`."""

    def __init__(self, binary, data_dir, checkpoint_secs=1, log_level="warn", extra_toml=""):
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.data_dir / "trials.toml"
        self.config_path.write_text(
            "[server.quic]\n"
            'listen = "127.0.0.1:0"\n'
            "[usage]\n"
            'metrics_listen = "127.0.0.1:0"\n'
            f"checkpoint_interval_secs = {checkpoint_secs}\n"
            "[media]\n"
            'bind_ip = "127.0.0.1"\n'
            "port = 0\n" + extra_toml
        )
        self.log_level = log_level
        self.proc = None
        self.info = {}
        self.starts = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout=60.0):
        """Start and wait for `PALAVER_READY`; returns the `PALAVER_*` values."""
        assert self.proc is None, "already running"
        self.starts += 1
        out_path = self.data_dir / f"stdout.{self.starts}.txt"
        log = open(self.data_dir / "palaver.log", "ab")
        out = open(out_path, "wb")
        cmd = [
            self.binary, "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
            "--log-level", self.log_level, "--config", str(self.config_path), "run",
        ]
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=log, stdin=subprocess.DEVNULL)
        out.close()
        log.close()
        deadline = time.monotonic() + timeout
        info = {}
        while "PALAVER_READY" not in info:
            if self.proc.poll() is not None:
                raise RuntimeError(f"palaver exited with {self.proc.returncode}; see {self.data_dir}/palaver.log")
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"palaver not ready within {timeout} s; see {self.data_dir}/palaver.log")
            time.sleep(0.05)
            for line in out_path.read_text(errors="replace").splitlines():
                key, _, value = line.partition(" ")
                if key.startswith("PALAVER_"):
                    info[key] = value.strip()
        self.info = info
        return info

    def kill9(self):
        """SIGKILL and reap; returns the wall-clock ms just before the signal was sent."""
        if self.proc is None:
            return None
        at_ms = int(time.time() * 1000)
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None
        return at_ms

    def stop(self, timeout=30.0):
        """SIGTERM (clean shutdown), SIGKILL after `timeout`."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    # ------------------------------------------------------------------ addresses
    @property
    def base_url(self):
        return self.info["PALAVER_READY"]

    @property
    def host(self):
        return self.base_url.split("://", 1)[1].rstrip("/")

    @property
    def ca_file(self):
        return self.info["PALAVER_CA_FILE"]

    @property
    def connection_string(self):
        return self.info["PALAVER_CONNECTION_STRING"]

    @property
    def access_key(self):
        return self.connection_string.split("accesskey=", 1)[1].strip().rstrip(";")

    @property
    def metrics_url(self):
        return self.info.get("PALAVER_METRICS_URL")

    @property
    def quic_addr(self):
        return self.info.get("PALAVER_QUIC")

    def metrics(self, timeout=5.0):
        """The /metrics scrape as {"name{labels}": value}."""
        with urllib.request.urlopen(self.metrics_url, timeout=timeout) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            try:
                values[key] = float(value)
            except ValueError:
                pass
        return values

    # ------------------------------------------------------------------ procfs
    def listening_sockets(self):
        """[(proto, port)] of every TCP socket in LISTEN and every bound UDP socket of the process."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = set()
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            try:
                lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if inode not in inodes:
                    continue
                if proto.startswith("tcp") and state != "0A":  # LISTEN
                    continue
                if proto.startswith("udp") and cols[2].split(":")[1] != "0000":  # connected UDP
                    continue
                found.add((proto.rstrip("6"), int(local.rsplit(":", 1)[1], 16)))
        return sorted(found)

    def sample(self):
        """(rss_bytes, open_fds, cpu_seconds) of the process now."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
        rss = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1]) * PAGE_SIZE
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        return rss, fds, cpu
