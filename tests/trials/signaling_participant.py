"""A signaling participant over WSS (`GET /signaling/v1`, docs/signaling.md), standard library only.

`SignalingParticipant` is a minimal RFC 6455 client (masked text frames out; text, ping,
close in) plus the protocol-v1 steps the trials need: `welcome`, `join` → `joined`,
`leave` → `session.ended`, `resume` → `snapshot`. Every wait is bounded by a timeout.
"""

import base64
import json
import os
import socket
import ssl
import struct
import time
import urllib.parse


class SocketClosed(Exception):
    pass


class ErrorFrame(Exception):
    """The server answered with an `error` frame."""


class SignalingParticipant:
    def __init__(self, host, ca_file, token, timeout=10.0):
        hostname, port = host.rsplit(":", 1)
        context = ssl.create_default_context(cafile=ca_file)
        raw = socket.create_connection((hostname, int(port)), timeout=timeout)
        self.sock = context.wrap_socket(raw, server_hostname=hostname)
        self.sock.settimeout(timeout)
        self.buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        path = "/signaling/v1?access_token=" + urllib.parse.quote(token, safe="")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status_line + " ":
            self.close()
            raise SocketClosed(f"upgrade refused: {status_line}")
        self.welcome = self.wait_for("welcome", timeout)
        self.participant_id = None
        self.conversation_id = None
        self.resume_token = None

    # ------------------------------------------------------------------ frames
    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise SocketClosed("connection closed by the server")
        self.buffer += chunk

    def _read_exact(self, n):
        while len(self.buffer) < n:
            self._fill()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _send_frame(self, opcode, payload):
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send(self, frame):
        self._send_frame(0x1, json.dumps(frame).encode())

    def recv(self, timeout):
        """The next JSON text frame, or None when `timeout` passes first. Answers pings."""
        deadline = time.monotonic() + timeout
        message = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                b0, b1 = self._read_exact(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", self._read_exact(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", self._read_exact(8))
                payload = self._read_exact(n)
            except (socket.timeout, TimeoutError):
                return None
            opcode = b0 & 0x0F
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise SocketClosed(f"close frame {payload[:2].hex()} {payload[2:].decode(errors='replace')}")
            elif opcode in (0x1, 0x0):
                message += payload
                if b0 & 0x80:
                    return json.loads(message)
            # binary / pong: ignored

    def wait_for(self, types, timeout):
        """The first frame whose type is in `types` (error frames raise), within `timeout`."""
        if isinstance(types, str):
            types = (types,)
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(deadline - time.monotonic())
            if frame is None:
                raise TimeoutError(f"no {types} within {timeout} s")
            if frame.get("type") in types:
                return frame
            if frame.get("type") == "error":
                raise ErrorFrame(f"error frame: {frame}")

    def drain(self, seconds):
        """Read (and drop) frames for `seconds`, answering pings."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.recv(deadline - time.monotonic())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ protocol
    def join_group_call(self, group_id, timeout=10.0):
        """Join; returns the participant (session) id."""
        self.send({"type": "join", "requestId": "j", "target": {"kind": "groupCall", "groupId": group_id}})
        joined = self.wait_for("joined", timeout)
        snapshot = joined["snapshot"]
        self.participant_id = snapshot["participantId"]
        self.conversation_id = snapshot["conversationId"]
        self.resume_token = joined.get("resumeToken")
        return self.participant_id

    def leave(self, timeout=10.0):
        """Leave; returns when the server says the session ended."""
        self.send({"type": "leave", "requestId": "l"})
        self.wait_for("session.ended", timeout)
        self.participant_id = None

    def resume(self, conversation_id, participant_id, resume_token, timeout=10.0):
        self.send({
            "type": "resume", "requestId": "r", "conversationId": conversation_id,
            "participantId": participant_id, "resumeToken": resume_token,
        })
        self.wait_for(("snapshot", "joined"), timeout)
        self.participant_id = participant_id
        self.conversation_id = conversation_id
