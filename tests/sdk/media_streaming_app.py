"""A voice-bot application for the media-streaming checks: a loopback WebSocket server (RFC 6455,
stdlib only) that palaver connects out to (`mediaStreamingOptions.transportUrl`).

Every connection records the `AudioMetadata` it got and each `AudioData` frame (arrival time,
PCM samples). A connection to `/echo` also sends every frame it receives straight back as
the bidirectional message ACS's samples send (`{"Kind": "AudioData", "AudioData": {"Data"}}`,
PascalCase), so palaver plays it into the call; `/listen` only records.
"""

import base64
import hashlib
import json
import socket
import struct
import threading
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Connection:
    """One socket palaver opened: what it sent, in order."""

    def __init__(self, path):
        self.path = path
        self.metadata = None
        self.frames = []  # (arrival time, samples as a tuple of ints, silent flag, raw message)
        self.others = []  # any other message (e.g. DtmfData)
        self.closed = False


class StreamingApp:
    def __init__(self):
        self.lock = threading.Condition()
        self.connections = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.base = f"ws://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path):
        return f"{self.base}{path}"

    def close(self):
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
        conn.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n".encode())
        record = Connection(path)
        with self.lock:
            self.connections.append(record)
            self.lock.notify_all()
        reader = _Reader(conn)
        try:
            while True:
                opcode, payload = reader.frame()
                if opcode == 8:
                    break
                if opcode == 9:
                    _send(conn, 10, payload)
                    continue
                if opcode != 1:
                    continue
                message = json.loads(payload)
                with self.lock:
                    if message.get("kind") == "AudioMetadata":
                        record.metadata = message
                    elif message.get("kind") == "AudioData":
                        data = base64.b64decode(message["audioData"]["data"])
                        samples = struct.unpack(f"<{len(data) // 2}h", data)
                        record.frames.append((time.monotonic(), samples, message["audioData"].get("silent"), message))
                    else:
                        record.others.append(message)
                    self.lock.notify_all()
                if path == "/echo" and message.get("kind") == "AudioData":
                    back = {"Kind": "AudioData", "AudioData": {"Data": message["audioData"]["data"]}, "StopAudio": None}
                    _send(conn, 1, json.dumps(back).encode())
        except (OSError, ConnectionError):
            pass
        finally:
            with self.lock:
                record.closed = True
                self.lock.notify_all()
            conn.close()

    def wait(self, what, predicate, timeout=15):
        deadline = time.time() + timeout
        with self.lock:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; connections: {[(c.path, len(c.frames), c.closed) for c in self.connections]}")
                self.lock.wait(remaining)

    def connection(self, path, nth=0):
        def find():
            found = [c for c in self.connections if c.path == path]
            return found[nth] if len(found) > nth else None

        return self.wait(f"a connection to {path}", find)


class _Reader:
    def __init__(self, conn):
        self.conn = conn

    def exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def frame(self):
        b0, b1 = self.exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.exact(8))[0]
        mask = self.exact(4) if b1 & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.exact(n)))
        return b0 & 0x0F, payload


def _send(conn, opcode, payload):
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 126]) + struct.pack(">H", n)
    else:
        header = bytes([0x80 | opcode, 127]) + struct.pack(">Q", n)
    conn.sendall(header + payload)


def peak(frames):
    return max((max(abs(s) for s in samples) for _, samples, _, _ in frames), default=0)
