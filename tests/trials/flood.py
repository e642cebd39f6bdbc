#!/usr/bin/env python3
"""`make flood`: junk at 10x the legitimate packet rate against every port a release palaver
listens on, while legitimate participants talk; reports their loss (target 0 %) and the
server's drop counters from /metrics.

The worker-level twin of this check is `crates/sfu/tests/flood.rs` (one worker thread, junk
from the publisher's own address too). This one is the whole process: the ports come from
/proc/<pid>/fd and /proc/net (the media workers' UDP sockets, the QUIC endpoint, the HTTPS
listener; the /metrics listener is left alone), the legitimate participants are palaver-load
runs over QUIC and over WebRTC (ICE-lite, DTLS-SRTP), and the junk is:

- on every UDP port: random bytes, STUN binding requests with unknown credentials, DTLS
  ClientHello records, RTP/SRTP and RTCP with unknown SSRCs and broken tags, QUIC long-header
  Initial packets for unknown connections (1,200 bytes, as clients must pad them) and
  short-header packets — from several source ports;
- on the HTTPS port: TCP connections that send random bytes, a truncated TLS ClientHello or a
  half HTTP request, then close.

The junk rate per UDP port is 10x the legitimate packets/s the server received in a
calibration window before the flood starts. Besides the legitimate loss, the run checks that
the junk sent to the QUIC port shows on /metrics: discarded inside quinn
(`palaver_quic_datagrams_discarded_total`) or by the kernel for a full buffer
(`palaver_udp_receive_drops_total{socket="quic"}`).
"""

import argparse
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from palaver_server import PalaverServer, default_binary


def junk_packets(rng, n=64):
    """A pool of junk datagrams of every kind (mutated per send so none repeats exactly)."""
    pool = []
    for i in range(n):
        kind = i % 8
        if kind == 0:  # random bytes
            pool.append(("random", os.urandom(rng.randint(1, 1200))))
        elif kind == 1:  # STUN binding request, unknown USERNAME, bogus MESSAGE-INTEGRITY
            user = f"{os.urandom(4).hex()}:{os.urandom(4).hex()}".encode()
            attrs = struct.pack("!HH", 0x0006, len(user)) + user + b"\0" * (-len(user) % 4)
            attrs += struct.pack("!HH", 0x0008, 20) + os.urandom(20)
            pool.append(("stun", struct.pack("!HHI", 0x0001, len(attrs), 0x2112A442) + os.urandom(12) + attrs))
        elif kind == 2:  # DTLS 1.2 handshake record: ClientHello with junk inside
            body = b"\x01" + struct.pack("!I", 200)[1:] + os.urandom(200)
            pool.append(("dtls", struct.pack("!BHH", 22, 0xFEFD, 0) + os.urandom(6) + struct.pack("!H", len(body)) + body))
        elif kind == 3:  # SRTP-looking audio: unknown SSRC, broken auth tag
            hdr = struct.pack("!BBHII", 0x80, 111, rng.randrange(65536), rng.randrange(1 << 32), rng.randrange(1 << 32))
            pool.append(("srtp", hdr + os.urandom(rng.randint(20, 160)) + os.urandom(10)))
        elif kind == 4:  # RTCP receiver report from nowhere
            pool.append(("rtcp", struct.pack("!BBHI", 0x81, 201, 7, rng.randrange(1 << 32)) + os.urandom(24 + 10)))
        elif kind == 5:  # QUIC v1 long-header Initial for an unknown connection, padded to 1200
            dcid, scid = os.urandom(8), os.urandom(8)
            head = bytes([0xC3]) + struct.pack("!I", 1) + bytes([8]) + dcid + bytes([8]) + scid + b"\x00"
            length = 1200 - len(head) - 2
            pool.append(("quic-initial", head + struct.pack("!H", 0x4000 | length) + os.urandom(length)))
        elif kind == 6:  # QUIC short header for an unknown connection
            pool.append(("quic-short", bytes([0x40 | rng.randrange(64)]) + os.urandom(rng.randint(40, 1200))))
        else:  # a video-sized SRTP packet with a marker bit
            hdr = struct.pack("!BBHII", 0x80, 0x80 | 96, rng.randrange(65536), rng.randrange(1 << 32),
                              rng.randrange(1 << 32))
            pool.append(("srtp-video", hdr + os.urandom(1100)))
    return pool


class Flood:
    def __init__(self, udp_ports, tcp_ports, pps_per_port, tcp_per_s, seconds, seed=7):
        self.udp_ports, self.tcp_ports = udp_ports, tcp_ports
        self.pps, self.tcp_per_s, self.seconds = pps_per_port, tcp_per_s, seconds
        self.rng = random.Random(seed)
        self.sent = {}
        self.sent_to = {}  # port -> junk datagrams sent to it
        self.tcp_attempts = 0
        self.threads = []

    def start(self):
        self.threads = [threading.Thread(target=self._udp, daemon=True),
                        threading.Thread(target=self._tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def join(self):
        for t in self.threads:
            t.join(timeout=self.seconds + 30)

    def _udp(self):
        pool = junk_packets(self.rng)
        sources = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        for s in sources:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        tick = 0.005
        per_tick = self.pps * tick
        owed = 0.0
        end = time.monotonic() + self.seconds
        next_at = time.monotonic()
        i = 0
        while time.monotonic() < end:
            owed += per_tick
            n = int(owed)
            owed -= n
            for _ in range(n):
                for port in self.udp_ports:
                    kind, data = pool[i % len(pool)]
                    i += 1
                    data = bytearray(data)
                    data[-1] ^= i & 0xFF  # never twice the same bytes
                    try:
                        sources[i % len(sources)].sendto(data, ("127.0.0.1", port))
                        self.sent[kind] = self.sent.get(kind, 0) + 1
                        self.sent_to[port] = self.sent_to.get(port, 0) + 1
                    except (BlockingIOError, ConnectionRefusedError):
                        self.sent["send_failed"] = self.sent.get("send_failed", 0) + 1
            next_at += tick
            time.sleep(max(0.0, next_at - time.monotonic()))
        for s in sources:
            s.close()

    def _tcp(self):
        end = time.monotonic() + self.seconds
        kinds = [
            lambda: os.urandom(self.rng.randint(1, 2000)),
            lambda: bytes([22, 3, 1]) + struct.pack("!H", 512) + b"\x01\x00\x01\xfc\x03\x03" + os.urandom(100),
            lambda: b"GET /health HTTP/1.1\r\nHost: x\r\n",
        ]
        for _ in range(int(self.seconds * self.tcp_per_s) + 1):
            if time.monotonic() >= end:
                break
            for port in self.tcp_ports:
                self.tcp_attempts += 1
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                        c.sendall(self.rng.choice(kinds)())
                except OSError:
                    pass
            time.sleep(1 / self.tcp_per_s)


def dropped(metrics):
    return {k: v for k, v in metrics.items() if k.startswith(("palaver_media_packets_dropped_total",
                                                               "palaver_http_connections_refused_total",
                                                               "palaver_http_connections_timed_out_total",
                                                               "palaver_quic_datagrams_",
                                                               "palaver_udp_receive_drops_total"))}


def quic_junk_accounted(junk_sent, drops):
    """Every junk datagram sent to the QUIC port is either discarded inside quinn
    (`palaver_quic_datagrams_discarded_total`) or dropped by the kernel for a full buffer
    (`palaver_udp_receive_drops_total{socket="quic"}`): (counted, difference)."""
    counted = drops.get("palaver_quic_datagrams_discarded_total", 0) + \
        drops.get('palaver_udp_receive_drops_total{socket="quic"}', 0)
    return int(counted), int(counted - junk_sent)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=40, help="palaver-load measured window")
    ap.add_argument("--factor", type=float, default=10.0, help="junk pps per UDP port / legitimate pps")
    ap.add_argument("--tcp-per-s", type=float, default=20.0, help="junk TCP connections per second")
    ap.add_argument("--binary", default=default_binary("palaver"))
    ap.add_argument("--load-binary", default=default_binary("palaver-load"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    for b in (args.binary, args.load_binary):
        if not Path(b).exists():
            sys.exit(f"{b} not found: cargo build --release -p palaver -p palaver-load")
    data_dir = Path(tempfile.mkdtemp(prefix="palaver-flood-"))
    server = PalaverServer(args.binary, data_dir, checkpoint_secs=15)
    loads = []
    result = {}
    try:
        server.start()
        ports = server.listening_sockets()
        metrics_port = int(server.metrics_url.rsplit(":", 1)[1].split("/")[0])
        udp = [p for proto, p in ports if proto == "udp"]
        tcp = [p for proto, p in ports if proto == "tcp" and p != metrics_port]
        print(f"server pid {server.pid}: UDP ports {udp} (media workers + QUIC {server.quic_addr}), TCP {tcp}"
              f" (HTTPS; /metrics on {metrics_port} not flooded)", flush=True)
        base = [args.load_binary, "--connection-string", server.connection_string, "--ca", server.ca_file,
                "--metrics-url", server.metrics_url, "--no-progress", "--duration", str(args.seconds),
                "--preset", "contact-center", "--participants", "3", "--max-loss", "0"]
        for name, extra in (("quic", ["--rooms", "3"]), ("webrtc", ["--rooms", "1", "--transport", "webrtc"])):
            report = data_dir / f"load-{name}.json"
            loads.append((name, report, subprocess.Popen(base + extra + ["--json", str(report)],
                                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                         stdin=subprocess.DEVNULL)))
        # Calibrate: wait for media to flow, then measure the legitimate receive rate.
        key = "palaver_media_packets_received_total"
        for _ in range(120):
            time.sleep(0.5)
            if server.metrics().get(key, 0) > 500:
                break
        m0, t0 = server.metrics(), time.monotonic()
        time.sleep(3)
        m1, t1 = server.metrics(), time.monotonic()
        legit_pps = (m1.get(key, 0) - m0.get(key, 0)) / (t1 - t0)
        pps = max(100.0, args.factor * legit_pps)
        flood_s = args.seconds + 2
        print(f"legitimate: {legit_pps:.0f} packets/s into the server; junk: {pps:.0f} packets/s to each of"
              f" {len(udp)} UDP ports ({pps * len(udp):.0f}/s in all) for {flood_s} s, {args.tcp_per_s:g} junk TCP"
              f" connections/s", flush=True)
        before = dropped(m1)
        flood = Flood(udp, tcp, pps, args.tcp_per_s, flood_s)
        flood.start()
        flood.join()
        for name, report, proc in loads:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        after = dropped(server.metrics())
        alive = server.proc.poll() is None
        result = {"legit_pps": round(legit_pps), "junk_pps_per_udp_port": round(pps), "udp_ports": udp,
                  "tcp_ports": tcp, "junk_sent": flood.sent, "junk_tcp_connections": flood.tcp_attempts,
                  "server_alive": alive,
                  "drops_during_flood": {k: after.get(k, 0) - before.get(k, 0) for k in after}}
        ok = alive
        # The QUIC port's junk must show on /metrics (quinn discards it silently otherwise).
        quic_port = int(server.quic_addr.rsplit(":", 1)[1])
        quic_junk = flood.sent_to.get(quic_port, 0)
        counted, difference = quic_junk_accounted(quic_junk, result["drops_during_flood"])
        # Legitimate QUIC datagrams are never counted as discarded, so the difference is only
        # what was in flight at the two scrapes (a few datagrams).
        quic_ok = abs(difference) <= max(5, quic_junk // 1000)
        result["quic_port_junk"] = {"sent": quic_junk, "discarded_or_kernel_dropped": counted,
                                    "difference": difference, "accounted": quic_ok}
        ok &= quic_ok
        for name, report, proc in loads:
            try:
                rep = json.loads(report.read_text())
            except (OSError, ValueError):
                rep = None
            if rep is None:
                result[name] = {"exit": proc.returncode, "report": "missing"}
                ok = False
                continue
            a = rep["audio"]
            result[name] = {
                "exit": proc.returncode, "joined": rep["participants"]["joined"],
                "planned": rep["participants"]["planned"], "packets_received": a["packetsReceived"],
                "packets_lost": a["packetsLost"], "loss_percent": a["lossPercent"],
            }
            ok &= proc.returncode == 0 and a["packetsLost"] == 0 and \
                rep["participants"]["joined"] == rep["participants"]["planned"]
        result["passed"] = ok
    finally:
        for _, _, proc in loads:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=15)
        server.stop()
    print(json.dumps(result, indent=2))
    for name in ("quic", "webrtc"):
        if name in result:
            r = result[name]
            print(f"legitimate {name}: joined {r.get('joined')}/{r.get('planned')}, packets received"
                  f" {r.get('packets_received')}, lost {r.get('packets_lost')} ({r.get('loss_percent')} %)")
    if "quic_port_junk" in result:
        q = result["quic_port_junk"]
        print(f"junk to the QUIC port: {q['sent']} sent, {q['discarded_or_kernel_dropped']} counted as discarded by"
              f" quinn or dropped by the kernel (difference {q['difference']})")
    print("PASS" if result.get("passed") else "FAIL")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if result.get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
