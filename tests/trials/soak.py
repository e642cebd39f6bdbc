#!/usr/bin/env python3
"""`make soak`: a steady mixed load on a release palaver for SOAK_MINUTES, sampling the
server's RSS, open file descriptors and CPU into a CSV and drawing them (PNG).

Load (all on loopback, every loop bounded by the run's end):
- palaver-load over QUIC: audio conferences (contact-center shape: 3-party group calls,
  talkers in turns) and a small video meeting (q/h/f simulcast publishers);
- WSS participants that join and leave group calls about once a second each;
- a reconnecting client: it drops its socket every few seconds and resumes its session;
- chat: messages through the ACS Chat REST API, and new identities.

Targets (exit 1 when one is missed): RSS growth after warm-up < 5 % (median of the first
minute after warm-up vs. median of the last minute), file descriptors flat (last minute's
median ≤ first minute's + 5 %, at least 5 fds), error rate not growing (errors/operation in
the last third of the run ≤ first third + 0.5 percentage points) and palaver-load finishing.
"""

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import heap_probe
from palaver_server import PalaverServer, default_binary
from rest_client import RestClient
from signaling_participant import ErrorFrame, SignalingParticipant


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = 0
        self.errors = 0
        self.last_error = None
        self.refused_after_ended = 0

    def ok(self):
        with self.lock:
            self.ops += 1

    def fail(self, e):
        with self.lock:
            self.ops += 1
            self.errors += 1
            self.last_error = repr(e)

    def snapshot(self):
        with self.lock:
            return self.ops, self.errors


class SoakLoad:
    def __init__(self, server, args, end_at):
        self.server, self.args, self.end_at = server, args, end_at
        self.counters = Counters()
        self.threads = []
        self.processes = []
        self.group_ids = [str(uuid.uuid4()) for _ in range(3)]

    def running(self):
        return time.monotonic() < self.end_at

    def rest(self):
        return RestClient(self.server.host, self.server.ca_file, self.server.access_key)

    def start(self):
        duration = str(int(self.args.minutes * 60))
        base = [self.args.load_binary, "--connection-string", self.server.connection_string,
                "--ca", self.server.ca_file, "--metrics-url", "none", "--no-progress", "--duration", duration]
        scenarios = [
            ["--preset", "contact-center", "--rooms", str(self.args.audio_calls), "--participants", "3"],
            ["--preset", "video-meeting", "--participants", str(self.args.video_publishers),
             "--video-publishers", str(self.args.video_publishers), "--talkers", "1"],
        ]
        parts = self.args.parts.split(",")
        for i, scenario in enumerate(scenarios):
            if ("audio", "video")[i] not in parts:
                continue
            out = open(self.server.data_dir / f"soak-load-{i}.json", "w")
            self.processes.append(subprocess.Popen(base + scenario + ["--json", "-"], stdout=out,
                                                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        if "churn" in parts:
            for i in range(self.args.churners):
                self._spawn(self._churn, i)
        if "reconnect" in parts:
            self._spawn(self._reconnecting)
        if "chat" in parts:
            self._spawn(self._chat)

    def _spawn(self, fn, *a):
        t = threading.Thread(target=fn, args=a, daemon=True)
        t.start()
        self.threads.append(t)

    def _churn(self, index):
        """Join a group call, stay ~1 s, leave; a fresh socket every few sessions."""
        rng = random.Random(index)
        rest = self.rest()
        _, token = rest.create_identity(["voip"])
        rest.close()
        ws = None
        while self.running():
            try:
                if ws is None:
                    ws = SignalingParticipant(self.server.host, self.server.ca_file, token)
                self._join(ws, rng.choice(self.group_ids))
                ws.drain(rng.uniform(0.5, 1.5))
                ws.leave()
                self.counters.ok()
                if rng.random() < 0.25:
                    ws.close()
                    ws = None
            except Exception as e:
                self.counters.fail(e)
                if ws is not None:
                    ws.close()
                ws = None
                time.sleep(0.5)
        if ws is not None:
            ws.close()

    def _join(self, ws, group):
        """Join; a refusal because the gateway still holds the session that just ended (the
        race described in tests/trials/README.md) is counted apart and retried."""
        for _ in range(5):
            try:
                return ws.join_group_call(group)
            except ErrorFrame as e:
                if "already in a conversation" not in str(e):
                    raise
                with self.counters.lock:
                    self.counters.refused_after_ended += 1
                time.sleep(0.05)
        raise RuntimeError("join refused 5 times")

    def _reconnecting(self):
        """One participant that loses its socket every few seconds and resumes within the grace."""
        rest = self.rest()
        _, token = rest.create_identity(["voip"])
        rest.close()
        ws, session = None, None
        while self.running():
            try:
                ws = SignalingParticipant(self.server.host, self.server.ca_file, token)
                if session is None:
                    ws.join_group_call(self.group_ids[0])
                    session = (ws.conversation_id, ws.participant_id, ws.resume_token)
                else:
                    ws.resume(*session)
                    session = (ws.conversation_id, ws.participant_id, ws.resume_token or session[2])
                self.counters.ok()
                ws.drain(3.0)
            except Exception as e:
                self.counters.fail(e)
                session = None  # join afresh next time
                time.sleep(0.5)
            finally:
                if ws is not None:
                    ws.close()  # abrupt: no leave, the participant goes reconnecting
                    ws = None

    def _chat(self):
        rest = self.rest()
        while self.running():
            try:
                user, token = rest.create_identity(["chat"])
                thread = rest.create_thread(token, "soak", [user])
                self.counters.ok()
                for n in range(20):
                    if not self.running():
                        break
                    if rest.send_message(token, thread, f"soak message {n}") is None:
                        raise RuntimeError("send_message not answered 201")
                    self.counters.ok()
                    time.sleep(0.25)
            except Exception as e:
                self.counters.fail(e)
                rest.close()
                time.sleep(0.5)
        rest.close()

    def finish(self):
        for t in self.threads:
            t.join(timeout=20)
        results = []
        for p in self.processes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)
            results.append(p.returncode)
        return results


def rss_anon(pid):
    """Anonymous resident memory (heap, stacks) of `pid` in bytes: RSS without the file-backed
    pages (the binary's code, which the kernel drops and faults back in under memory pressure)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def plot(csv_rows, warmup_s, png_path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in csv_rows]
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    series = [
        ([r["rss_bytes"] / 2**20 for r in csv_rows], "RSS (MiB)"),
        ([r["open_fds"] for r in csv_rows], "open fds"),
        ([r["cpu_percent"] for r in csv_rows], "CPU (% of one core)"),
        ([r["errors_per_min"] for r in csv_rows], "load errors / min"),
    ]
    axes[0].plot(t, [r["rss_anon_bytes"] / 2**20 for r in csv_rows], linewidth=1, label="anonymous (heap)")
    for ax, (ys, label) in zip(axes, series):
        ax.plot(t, ys, linewidth=1, **({"label": "RSS"} if ax is axes[0] else {}))
        ax.set_ylabel(label)
        ax.axvline(warmup_s / 60, color="grey", linestyle="--", linewidth=0.8)
        ax.grid(True, alpha=0.3)
    axes[0].set_title(title)
    axes[0].legend(loc="lower right")
    axes[-1].set_xlabel("minutes (dashed: end of warm-up)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default: 20 %% of the run, 60..300)")
    ap.add_argument("--sample-secs", type=float, default=5.0)
    ap.add_argument("--binary", default=default_binary("palaver"))
    ap.add_argument("--load-binary", default=default_binary("palaver-load"))
    ap.add_argument("--audio-calls", type=int, default=4, help="3-party QUIC audio group calls")
    ap.add_argument("--video-publishers", type=int, default=3, help="QUIC simulcast publishers in one meeting")
    ap.add_argument("--churners", type=int, default=4, help="WSS participants joining/leaving ~1/s each")
    ap.add_argument("--parts", default="audio,video,churn,reconnect,chat",
                    help="which loads run (to find which one a growth comes from)")
    ap.add_argument("--out-dir", default="docs", help="where soak.csv, soak.png and soak.json go")
    ap.add_argument("--max-rss-growth", type=float, default=5.0, help="%%")
    ap.add_argument("--heap-probe-at", default="",
                    help="seconds, comma-separated: at each, glibc's per-arena statistics, SQLite's memory and "
                         "the anonymous mappings by kind (heap_probe.py, needs gdb) into soak-heap.json")
    args = ap.parse_args()
    for b in (args.binary, args.load_binary):
        if not Path(b).exists():
            sys.exit(f"{b} not found: cargo build --release -p palaver -p palaver-load")
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(300.0, max(60.0, duration * 0.2))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="palaver-soak-"))
    server = PalaverServer(args.binary, data_dir, checkpoint_secs=15)
    rows = []
    started_utc = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"soak: {args.minutes} min (warm-up {warmup:.0f} s), sampling every {args.sample_secs} s; data {data_dir}",
          flush=True)
    try:
        server.start()
        t0 = time.monotonic()
        load = SoakLoad(server, args, t0 + duration)
        load.start()
        last_cpu, last_t, last_ops, last_err = None, None, 0, 0
        probe_at = sorted(float(x) for x in args.heap_probe_at.split(",") if x.strip())
        probes = []
        for _ in range(int(duration / args.sample_secs) + 2):
            now = time.monotonic()
            if now - t0 > duration:
                break
            rss, fds, cpu = server.sample()
            anon = rss_anon(server.pid)
            ops, errors = load.counters.snapshot()
            if last_t is not None:
                dt = now - last_t
                rows.append({
                    "t_s": round(now - t0, 1), "rss_bytes": rss, "rss_anon_bytes": anon, "open_fds": fds,
                    "cpu_percent": round(100 * (cpu - last_cpu) / dt, 1),
                    "ops": ops - last_ops, "errors": errors - last_err,
                    "errors_per_min": round((errors - last_err) * 60 / dt, 2),
                })
                r = rows[-1]
                print(f"  t={r['t_s']:7.1f}s rss={rss / 2**20:7.1f} MiB anon={anon / 2**20:6.1f} MiB fds={fds:4} cpu={r['cpu_percent']:5.1f}%"
                      f" ops={r['ops']:4} errors={r['errors']}", flush=True)
            last_cpu, last_t, last_ops, last_err = cpu, now, ops, errors
            if probe_at and now - t0 >= probe_at[0]:
                probe_at.pop(0)
                snap = heap_probe.snapshot(server.pid)
                snap["t_s"] = round(time.monotonic() - t0, 1)
                probes.append(snap)
                m = snap["malloc"] or {}
                print(f"  heap probe t={snap['t_s']}s: malloc system {m.get('total_system')} in use "
                      f"{m.get('total_in_use')}, sqlite {m.get('sqlite_memory_used')}, anon {snap['rss_anon_kib']} KiB "
                      f"{snap['mappings']['anon_kib']}", flush=True)
                (out / "soak-heap.json").write_text(json.dumps(probes, indent=1) + "\n")
            time.sleep(max(0.0, args.sample_secs - (time.monotonic() - now)))
        load_exit = load.finish()
        last_error = load.counters.last_error
        refused_after_ended = load.counters.refused_after_ended
    finally:
        server.stop()
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)

    after = [r for r in rows if r["t_s"] >= warmup]
    window = max(1, int(60 / args.sample_secs))
    first, last = after[:window], after[-window:]
    rss_first = statistics.median(r["rss_bytes"] for r in first)
    rss_last = statistics.median(r["rss_bytes"] for r in last)
    rss_growth = 100 * (rss_last - rss_first) / rss_first
    # The anonymous part alone: heap growth, whatever the kernel does with the binary's pages.
    anon_first = statistics.median(r["rss_anon_bytes"] for r in first)
    anon_last = statistics.median(r["rss_anon_bytes"] for r in last)
    anon_growth_mib = (anon_last - anon_first) / 2**20
    fd_first = statistics.median(r["open_fds"] for r in first)
    fd_last = statistics.median(r["open_fds"] for r in last)
    fd_max = max(r["open_fds"] for r in after)
    third = max(1, len(after) // 3)

    def err_rate(part):
        ops = sum(r["ops"] for r in part)
        return 100 * sum(r["errors"] for r in part) / ops if ops else 100.0

    err_first, err_last = err_rate(after[:third]), err_rate(after[-third:])
    loads = []
    for i in range(2):
        if ("audio", "video")[i] not in args.parts.split(","):
            loads.append(None)
            continue
        try:
            rep = json.loads((data_dir / f"soak-load-{i}.json").read_text())
            loads.append(rep)
        except (OSError, ValueError):
            loads.append(None)
    cpu_after = [r["cpu_percent"] for r in after]
    figures = {
        "started": started_utc, "minutes": args.minutes, "warmup_s": warmup, "samples": len(rows),
        "rss_first_mib": round(rss_first / 2**20, 1), "rss_last_mib": round(rss_last / 2**20, 1),
        "rss_growth_percent": round(rss_growth, 2),
        "rss_anon_first_mib": round(anon_first / 2**20, 2), "rss_anon_last_mib": round(anon_last / 2**20, 2),
        "rss_anon_growth_percent_of_rss": round(100 * anon_growth_mib * 2**20 / rss_first, 2),
        "fds_first": fd_first, "fds_last": fd_last, "fds_max": fd_max,
        "cpu_percent_median": statistics.median(cpu_after), "cpu_percent_max": max(cpu_after),
        "operations": sum(r["ops"] for r in rows), "errors": sum(r["errors"] for r in rows),
        "error_rate_first_third_percent": round(err_first, 3), "error_rate_last_third_percent": round(err_last, 3),
        "last_error": last_error, "palaver_load_exit": load_exit,
        "joins_refused_after_session_ended": refused_after_ended,
    }
    checks = {
        f"RSS growth {rss_growth:.2f} % < {args.max_rss_growth} %": rss_growth < args.max_rss_growth,
        f"fds flat ({fd_first:.0f} -> {fd_last:.0f}, max {fd_max})": fd_last <= max(fd_first * 1.05, fd_first + 5),
        f"error rate not growing ({err_first:.3f} % -> {err_last:.3f} %)": err_last <= err_first + 0.5,
        f"palaver-load finished (exit {load_exit}; 0 = thresholds met, 1 = none set/missed)": all(
            c in (0, 1) for c in load_exit),
    }
    for i, rep in enumerate(loads):
        if rep:
            figures[f"load{i}"] = {
                "joined": rep["participants"]["joined"], "planned": rep["participants"]["planned"],
                "audio_loss_percent": rep["audio"]["lossPercent"], "audio_packets": rep["audio"]["packetsReceived"],
                "video_packets": rep["video"]["packetsReceived"],
            }
    figures["checks"] = checks
    (out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    plot(rows, warmup, out / "soak.png",
         f"palaver soak {started_utc}: {args.minutes:g} min, RSS {rss_growth:+.1f} % after warm-up")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"INFO  anonymous memory {anon_first / 2**20:.2f} -> {anon_last / 2**20:.2f} MiB "
          f"({figures['rss_anon_growth_percent_of_rss']:+.2f} % of the first minute's RSS)")
    print(json.dumps({k: v for k, v in figures.items() if k != "checks"}))
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
