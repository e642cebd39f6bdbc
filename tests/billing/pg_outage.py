#!/usr/bin/env python3
"""A PostgreSQL outage of ~10 s during a call, against a real palaver in cluster mode.

A private PostgreSQL (stopped with SIGQUIT, PostgreSQL's immediate shutdown, then restarted on
the same port and data) and one palaver with `[cluster] postgres_url` and 1 s checkpoints.
Alice and Bob join a group call over WSS; PostgreSQL goes down; during the outage Carol joins
and Alice leaves, and Bob's socket stays in the call; PostgreSQL comes back; Bob and Carol
leave. Checked afterwards through the usage export (`GET /usage`):
- every session has exactly one record (no loss, no duplicate record id), and its span lies
  between the client's join request and `joined`, and between its `leave` and `session.ended`;
- `palaver_ledger_spooled_records` was above 0 during the outage and is 0 at the end, and the
  spool file is empty.
Prints the outage length, how long the joins and leaves took during it, and when the spool
was replayed.

Then the case only a durable spool survives: Dave and Erin in a second call, PostgreSQL down
again, Frank joins and Dave leaves, **palaver is killed with SIGKILL** during the outage,
PostgreSQL returns, palaver restarts on the same data directory (replaying the spool before its
crash recovery): Dave's record has its true span, and Erin's and Frank's sessions (cut by the
kill) have one record each, closed at a checkpoint at most one interval (1 s) before the kill.

Between them, an **unresponsive** PostgreSQL (every process of it frozen with SIGSTOP for
`--hung-secs`, 10 s by default: connections stay open and nothing answers, nothing is refused): Gina stays in
a call, Hugo joins and Ivan leaves during it, each answered within 5.5 s (joined or a clear
error, never a hang); afterwards every session has exactly one record with its true span.

Usage: pg_outage.py --binary PATH [--outage-secs 10] [--hung-secs 10]
"""

import argparse
import os
import pwd
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
sys.path.insert(0, os.path.join(ROOT, "tests", "trials"))

from pg_fixture import SUPERUSER, bin_dir, free_port  # noqa: E402
from rest_client import RestClient  # noqa: E402
from signaling_participant import SignalingParticipant  # noqa: E402

SLACK_MS = 50  # server and test read the same clock; allow for ms rounding
# A join or leave while PostgreSQL hangs must answer within this (the durable acknowledgment's
# bound, docs/billing.md), not wait for the database.
HUNG_BOUND_MS = 5500


class Postgres:
    """A private PostgreSQL that can be stopped and started again on its data directory."""

    def __init__(self):
        self.bindir = bin_dir()
        self.dir = tempfile.mkdtemp(prefix="palaver-pg-outage-")
        self.as_user = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

            def demote():
                os.setgid(pw.pw_gid)
                os.setgroups([])
                os.setuid(pw.pw_uid)

            self.as_user = {"preexec_fn": demote, "env": {**os.environ, "HOME": "/tmp"}}
        self.data = os.path.join(self.dir, "data")
        subprocess.run([os.path.join(self.bindir, "initdb"), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                        "--locale=C", "--no-sync", "-D", self.data], check=True, stdout=subprocess.DEVNULL, **self.as_user)
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "postgres.log"), "a")
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, **self.as_user,
        )
        deadline = time.time() + 60
        while subprocess.run([os.path.join(self.bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("private PostgreSQL did not start")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGQUIT):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)

    def processes(self):
        """The postmaster and its backends (children this test started)."""
        pids = [self.proc.pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.append(int(entry))
        return pids

    def hang(self):
        """Freeze every process of this PostgreSQL (SIGSTOP): connections stay open, nothing answers."""
        self.frozen = self.processes()
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        for pid in self.frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def url(self):
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/postgres"


def now_ms():
    return int(time.time() * 1000)


def parse_ms(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Node:
    """One palaver process on a data directory (restartable on the same directory)."""

    def __init__(self, binary, data_dir, config, log_path):
        self.args = [binary, "--config", config, "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--log-level", "warn", "run"]
        self.log = open(log_path, "a")
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        info = {}
        while "PALAVER_READY" not in info:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"palaver exited ({self.proc.poll()})")
            key, _, value = line.strip().partition(" ")
            info[key] = value
        self.host = info["PALAVER_READY"].split("://", 1)[1].rstrip("/")
        self.ca = info["PALAVER_CA_FILE"]
        self.access_key = re.search(r"accesskey=([^;]+)", info["PALAVER_CONNECTION_STRING"]).group(1)
        self.metrics_url = info["PALAVER_METRICS_URL"]

    def spooled(self):
        text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        return int(float(re.search(r"^palaver_ledger_spooled_records (\S+)$", text, re.M).group(1)))

    def rest(self):
        return RestClient(self.host, self.ca, self.access_key)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Call:
    """Participants of one group call and what each was told (the ground truth)."""

    def __init__(self, node, users):
        self.node, self.users = node, users
        self.group = str(uuid.uuid4())
        self.truth = {}  # name -> dict(pid, join_sent, joined, leave_sent, ended)
        self.sockets = {}

    def join(self, name):
        ws = SignalingParticipant(self.node.host, self.node.ca, self.users[name])
        sent = now_ms()
        pid = ws.join_group_call(self.group)
        self.truth[name] = {"pid": pid, "join_sent": sent, "joined": now_ms()}
        self.sockets[name] = ws
        return self.truth[name]["joined"] - sent

    def leave(self, name):
        t = self.truth[name]
        t["leave_sent"] = now_ms()
        self.sockets[name].leave()
        t["ended"] = now_ms()
        self.sockets[name].close()
        return t["ended"] - t["leave_sent"]


def outage_during_a_call(node, pg, users, stays, joins, leaves):
    """A call of `leaves` and `stays`, PostgreSQL stopped, `joins` joins and `leaves` leaves
    during the outage; returns (call, monotonic time PostgreSQL went down, join ms, leave ms)."""
    call = Call(node, users)
    call.join(leaves)
    call.join(stays)
    call.sockets[stays].drain(1.0)
    pg.stop()
    down = time.monotonic()
    join_ms = call.join(joins)
    leave_ms = call.leave(leaves)
    return call, down, join_ms, leave_ms


def records_by_session(node, since_ms, sessions):
    """{participant id: [records]}; waits (10 s at most) for `sessions` to have records, since
    `session.ended` does not wait for the ledger (only joins do)."""
    rest = node.rest()
    deadline = time.monotonic() + 10
    while True:
        rows = rest.usage_records(rfc3339(since_ms - 60_000), rfc3339(now_ms() + 60_000))
        by_pid = {}
        for r in rows:
            by_pid.setdefault(r["ParticipantId"], []).append(r)
        if all(pid in by_pid for pid in sessions) or time.monotonic() > deadline:
            rest.close()
            if len({r["RecordId"] for r in rows}) != len(rows):
                raise AssertionError("a RecordId appears twice in the export")
            return by_pid
        time.sleep(0.1)


def check_span(problems, name, recs, start_range, end_range):
    if len(recs) != 1:
        problems.append(f"{name}: {len(recs)} records")
        return
    start, end = parse_ms(recs[0]["StartTime"]), parse_ms(recs[0]["EndTime"])
    if not (start_range[0] - SLACK_MS <= start <= start_range[1] + SLACK_MS):
        problems.append(f"{name}: start {start} outside {start_range}")
    if not (end_range[0] - SLACK_MS <= end <= end_range[1] + SLACK_MS):
        problems.append(f"{name}: end {end} outside {end_range}")


def hung_case(args, node, pg, call3, began, problems):
    """Case 3 (module doc): PostgreSQL frozen with SIGSTOP for `--hung-secs` during a call."""
    call3.join("ivan")
    call3.join("gina")
    call3.sockets["gina"].drain(1.0)
    pg.hang()
    hung = time.monotonic()
    try:
        hugo_ms = call3.join("hugo")
    except Exception as e:  # noqa: BLE001 - a clear refusal is acceptable, a hang is not
        hugo_ms = None
        problems.append(f"hung PostgreSQL: hugo's join failed: {e}")
    print(f"outage 3: hugo's join answered in {hugo_ms} ms while PostgreSQL hangs", flush=True)
    try:
        ivan_ms = call3.leave("ivan")
    except Exception as e:  # noqa: BLE001 - no `session.ended` within the participant's 10 s
        ivan_ms = None
        problems.append(f"hung PostgreSQL: ivan's leave was not answered: {e}")
    try:
        call3.sockets["gina"].drain(max(0.0, args.hung_secs - (time.monotonic() - hung)))
        still_in = True
    except Exception:  # noqa: BLE001 - the socket closed (or broke) during the hang
        still_in = False
    hung_spooled = node.spooled()
    pg.thaw()
    hang_s = time.monotonic() - hung
    back = time.monotonic()
    while node.spooled() > 0:
        if time.monotonic() - back > 30:
            raise AssertionError("the spool was not replayed within 30 s of PostgreSQL answering again")
        time.sleep(0.1)
    hung_replayed = time.monotonic() - back
    call3.leave("gina")
    if "hugo" in call3.sockets:
        call3.leave("hugo")
    by_pid = records_by_session(node, began, [t["pid"] for t in call3.truth.values()])
    for name, t in call3.truth.items():
        check_span(problems, f"hung/{name}", by_pid.get(t["pid"], []), (t["join_sent"], t["joined"]),
                   (t["leave_sent"], t["ended"]))
    if not still_in:
        problems.append("hung PostgreSQL: gina's socket did not stay in the call")
    for what, ms in (("hugo's join", hugo_ms), ("ivan's leave", ivan_ms)):
        if ms is not None and ms > HUNG_BOUND_MS:
            problems.append(f"hung PostgreSQL: {what} took {ms} ms (bound {HUNG_BOUND_MS} ms)")
    print(f"outage 3: PostgreSQL hung (SIGSTOP) {hang_s:.1f} s; hugo joined in {hugo_ms} ms and ivan left in "
          f"{ivan_ms} ms during it; gina stayed in the call; {hung_spooled} ledger changes spooled; replayed "
          f"{hung_replayed:.2f} s after it answered again; 1 record per session, spans within the client's view")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--outage-secs", type=float, default=10.0)
    ap.add_argument("--hung-secs", type=float, default=10.0,
                    help="how long PostgreSQL is frozen (SIGSTOP) during a call in case 3; 0 skips the case")
    args = ap.parse_args()

    pg = Postgres()
    data_dir = tempfile.mkdtemp(prefix="palaver-outage-node-")
    config = os.path.join(data_dir, "palaver.toml")
    with open(config, "w") as f:
        f.write(f'[usage]\ncheckpoint_interval_secs = 1\nmetrics_listen = "127.0.0.1:0"\n\n'
                f'[cluster]\npostgres_url = "{pg.url()}"\nnode_id = "outage-node"\n')
    # The node's log (errors from every store while PostgreSQL is away) goes to a file,
    # printed when the check fails.
    log_path = os.path.join(data_dir, "palaver.log")
    node = Node(args.binary, data_dir, config, log_path)
    spool_file = os.path.join(data_dir, "ledger-spool.jsonl")
    problems = []
    try:
        rest = node.rest()
        users = {n: rest.create_identity(["voip"])[1]
                 for n in ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hugo", "ivan")}
        rest.close()
        began = now_ms()

        # 1. A ~10 s outage during a call.
        call, down, carol_join_ms, alice_leave_ms = outage_during_a_call(node, pg, users, "bob", "carol", "alice")
        call.sockets["bob"].drain(max(0.0, args.outage_secs - (time.monotonic() - down)))
        during = node.spooled()
        pg.start()
        outage = time.monotonic() - down
        back = time.monotonic()
        while node.spooled() > 0:
            if time.monotonic() - back > 30:
                raise AssertionError("the spool was not replayed within 30 s of PostgreSQL's return")
            time.sleep(0.1)
        replayed = time.monotonic() - back
        call.leave("bob")
        call.leave("carol")
        by_pid = records_by_session(node, began, [t["pid"] for t in call.truth.values()])
        for name, t in call.truth.items():
            check_span(problems, name, by_pid.get(t["pid"], []), (t["join_sent"], t["joined"]), (t["leave_sent"], t["ended"]))
        if during <= 0:
            problems.append("palaver_ledger_spooled_records stayed 0 during the outage")
        if node.spooled() != 0 or os.path.getsize(spool_file) != 0:
            problems.append("the spool is not empty after the replay")
        print(f"outage 1: PostgreSQL down {outage:.1f} s; carol joined in {carol_join_ms} ms and alice left in "
              f"{alice_leave_ms} ms during it; {during} ledger changes spooled; replayed {replayed:.2f} s after "
              f"PostgreSQL was back; 1 record per session, spans within the client's view")

        # 3. An unresponsive PostgreSQL (every process frozen with SIGSTOP: connections stay
        # open, nothing answers, nothing is refused) during a call: Gina's socket stays in the
        # call, Hugo joins and Ivan leaves during it; each step must answer within a bounded
        # time (joined, or a clear error), and every session has exactly one record afterwards.
        if args.hung_secs <= 0:
            print("outage 3 (hung PostgreSQL): skipped (--hung-secs 0)")
        call3 = Call(node, users) if args.hung_secs > 0 else None
        if call3 is not None:
            hung_case(args, node, pg, call3, began, problems)


        # 2. palaver killed during an outage: only the spool on disk has what it acknowledged.
        call2, down, _, _ = outage_during_a_call(node, pg, users, "erin", "frank", "dave")
        call2.sockets["erin"].drain(3.0)
        spooled_at_kill = node.spooled()
        kill_ms = now_ms()
        killed_after = time.monotonic() - down
        node.stop(signal.SIGKILL)
        spool_lines = len(open(spool_file).read().splitlines())
        pg.start()
        restart = time.monotonic()
        node.start()
        restart_s = time.monotonic() - restart
        by_pid = records_by_session(node, began, [t["pid"] for t in call2.truth.values()])
        d = call2.truth["dave"]
        check_span(problems, "dave", by_pid.get(d["pid"], []), (d["join_sent"], d["joined"]), (d["leave_sent"], d["ended"]))
        for name in ("erin", "frank"):
            t = call2.truth[name]
            check_span(problems, name, by_pid.get(t["pid"], []), (t["join_sent"], t["joined"]), (kill_ms - 1000, kill_ms))
        if os.path.getsize(spool_file) != 0:
            problems.append("the spool is not empty after the restart")
        print(f"outage 2: palaver killed after {killed_after:.1f} s of outage with "
              f"{spooled_at_kill} changes in {spool_lines} spool entries; restarted on the same data in {restart_s:.1f} s "
              f"after PostgreSQL returned; dave's leave kept, erin and frank closed at the last spooled checkpoint")
        if problems:
            print("FAIL:\n  " + "\n  ".join(problems))
            print("palaver log (last 20 lines):\n" + "".join(open(log_path).readlines()[-20:]))
            sys.exit(1)
        print(f"pg_outage: {3 if args.hung_secs > 0 else 2} passed, 0 failed")
    finally:
        if getattr(pg, "frozen", None):
            pg.thaw()
        node.stop()
        try:
            pg.stop(signal.SIGINT)
        except Exception:
            pass
        subprocess.run(["rm", "-rf", pg.dir, data_dir])


if __name__ == "__main__":
    main()
