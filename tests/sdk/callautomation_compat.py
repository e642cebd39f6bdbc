#!/usr/bin/env python3
"""Compatibility test: the official `azure-communication-callautomation` 1.6.0 SDK against palaver.

Starts the palaver binary with an Event Grid subscription (IncomingCall) pointing at a loopback
webhook receiver that this script runs; the receiver answers the validation handshake and
records every IncomingCall and every callback (each parsed with azure-core's
`EventGridEvent.from_dict` / `CloudEvent.from_dict`, which proves the envelopes). Then it follows
reference §6 "Call Automation" steps 1-4 and 9-12 bot to bot (every leg is an application):

  1. the handshake is answered; an unknown call connection is ResourceNotFoundError (8522)
  2. app A (source=bot) create_call(agent) -> "connecting", callbackUri echoed byte for byte
  3. IncomingCall for agent from bot; app B answers it; a second answer fails (409/8519)
  4. both legs: CallConnected (their operationContext), same serverCallId/correlationId,
     ParticipantsUpdated
  9. add_participant(alice) -> IncomingCall -> app C answers -> AddParticipantSucceeded("a1");
     add(carol) + cancel_add_participant_operation -> CancelAddParticipantSucceeded
 10. B transfer_call_to_participant(dave) -> app D answers -> B: CallTransferAccepted, then
     CallDisconnected; A's roster shows dave
 11. A hang_up(is_for_everyone=True) -> CallDisconnected on every remaining leg, nothing after;
     get_call_properties -> 404; a Repeatability-Request-ID replay of create returns the first body
 12. negative cases with exact status and code; reject and redirect by context

The media steps (5-8: play, DTMF, recording, hold/mute) are functions added by the media work.
Every callback must arrive once, in order, with the right operationContext.

Usage: callautomation_compat.py [--binary PATH]   (default: $PALAVER_BIN or target/debug/palaver)
"""

import base64
import json
import os
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from azure.communication.callautomation import (
    CallAutomationClient,
    CommunicationUserIdentifier,
    MicrosoftTeamsUserIdentifier,
    PhoneNumberIdentifier,
)
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent

from identity_compat import check, error_code, palaver, run_main

CALLBACK_TOKEN = "s3cret value"


def wav_tone(hz, seconds, rate=16000, amplitude=8000):
    """A mono 16-bit PCM WAV of a sine tone (the prompts the media steps play)."""
    import math

    n = int(rate * seconds)
    data = b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * hz * i / rate))) for i in range(n))
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    return header + b"data" + struct.pack("<I", len(data)) + data


# Files the receiver serves (play sources).
MEDIA = {"/media/prompt.wav": wav_tone(440, 1.0), "/media/menu.wav": wav_tone(660, 0.5, rate=8000), "/media/moh.wav": wav_tone(330, 2.0, rate=24000)}
WAIT_S = 15


class Receiver:
    """A loopback webhook: the Event Grid subscription endpoint and the callback URIs."""

    def __init__(self):
        self.lock = threading.Condition()
        self.handshakes = []
        self.incoming = []  # EventGridEvent
        self.callbacks = {}  # leg -> [(CloudEvent, raw dict, query)]
        self.posts_per_callback = []  # events per POST body
        self.authorizations = []  # (leg, Authorization header) per callback POST
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = MEDIA.get(urllib.parse.urlparse(self.path).path)
                self.send_response(200 if body else 404)
                self.send_header("content-type", "audio/wav")
                self.send_header("content-length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                path = urllib.parse.urlparse(self.path)
                reply = b""
                with receiver.lock:
                    if path.path == "/incoming":
                        if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                            code = body[0]["data"]["validationCode"]
                            receiver.handshakes.append(code)
                            reply = json.dumps({"validationResponse": code}).encode()
                        else:
                            for raw in body:
                                receiver.incoming.append(EventGridEvent.from_dict(raw))
                    elif path.path.startswith("/cb/"):
                        leg = path.path[len("/cb/"):]
                        events = body if isinstance(body, list) else [body]
                        receiver.posts_per_callback.append(len(events))
                        receiver.authorizations.append((leg, self.headers.get("authorization")))
                        for raw in events:
                            receiver.callbacks.setdefault(leg, []).append(
                                (CloudEvent.from_dict(raw), raw, urllib.parse.parse_qs(path.query))
                            )
                    receiver.lock.notify_all()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()

    def callback_url(self, leg):
        return f"{self.base}/cb/{leg}?token={urllib.parse.quote(CALLBACK_TOKEN)}"

    def wait(self, what, predicate):
        deadline = time.time() + WAIT_S
        with self.lock:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {what}; callbacks: {self.summary()}")
                self.lock.wait(remaining)

    def incoming_for(self, raw_id):
        """The newest IncomingCall to `raw_id` (waits for it)."""
        return self.wait(
            f"IncomingCall to {raw_id}",
            lambda: next(
                (
                    e
                    for e in reversed(self.incoming)
                    if e.event_type == "Microsoft.Communication.IncomingCall" and e.data["to"]["rawId"] == raw_id
                ),
                None,
            ),
        )

    def names(self, leg):
        return [e.type.removeprefix("Microsoft.Communication.") for e, _, _ in self.callbacks.get(leg, [])]

    def event(self, leg, name, nth=0):
        """The nth callback `name` of `leg` (waits for it)."""

        def find():
            found = [e for e, _, _ in self.callbacks.get(leg, []) if e.type == f"Microsoft.Communication.{name}"]
            return found[nth] if len(found) > nth else None

        return self.wait(f"{name} on {leg}", find)

    def summary(self):
        return {leg: self.names(leg) for leg in self.callbacks}


class WsClient:
    """A minimal WebSocket (RFC 6455) client over TLS for palaver's `/signaling/v1` (stdlib only)."""

    def __init__(self, base_url, ca_file, token):
        url = urllib.parse.urlparse(base_url)
        ctx = ssl.create_default_context(cafile=ca_file)
        raw = socket.create_connection((url.hostname, url.port), timeout=WAIT_S)
        self.sock = ctx.wrap_socket(raw, server_hostname=url.hostname)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /signaling/v1 HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise AssertionError("WebSocket upgrade: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise AssertionError(f"WebSocket upgrade refused: {head!r}")
        self.frames = []

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise AssertionError("WebSocket closed")
            data += chunk
        return data

    def send(self, message):
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self):
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            if b0 & 0x0F == 1:
                return json.loads(payload)
            if b0 & 0x0F == 8:
                raise AssertionError(f"WebSocket closed by the server: {payload!r}")

    def wait_for(self, frame_type):
        """The first frame of `frame_type` (keeps every frame read in `self.frames`)."""
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            frame = self.recv()
            self.frames.append(frame)
            if frame.get("type") == frame_type:
                return frame
        raise AssertionError(f"no {frame_type} frame; got {[f.get('type') for f in self.frames]}")

    def close(self):
        self.sock.close()


def ident(raw_id):
    return CommunicationUserIdentifier(raw_id)


def expect_error(name, call, status, code, exc_type=HttpResponseError):
    try:
        call()
    except exc_type as e:
        check(f"{name} is {status}/{code}", e.status_code == status and error_code(e) == code, f"got {e.status_code} {error_code(e)}")
        return
    check(f"{name} fails", False)


class Ctx:
    """What the steps share."""

    def __init__(self, conn_str, ca_file, receiver, users, base_url=None, identity=None):
        self.base_url = base_url
        self.identity = identity
        self.conn_str = conn_str
        self.ca_file = ca_file
        self.rx = receiver
        self.users = users  # name -> raw id
        self.legs = {}  # leg name -> call connection id

    def app(self, source=None):
        src = ident(self.users[source]) if source else None
        return CallAutomationClient.from_connection_string(self.conn_str, source=src, connection_verify=self.ca_file)

    def answer(self, leg, raw_id, operation_context):
        """An application answers the newest IncomingCall to `raw_id` as leg `leg`."""
        incoming = self.rx.incoming_for(raw_id)
        props = self.app().answer_call(
            incoming.data["incomingCallContext"], self.rx.callback_url(leg), operation_context=operation_context
        )
        self.legs[leg] = props.call_connection_id
        return incoming, props


def step1_handshake_and_unknown_call(ctx):
    try:
        list(ctx.app("bot").get_call_connection("no-such-call").list_participants())
        check("list_participants on an unknown call fails", False)
    except ResourceNotFoundError as e:
        check("list_participants on an unknown call is ResourceNotFoundError 8522", error_code(e) == "8522", error_code(e))


def step2_create_call(ctx):
    url = ctx.rx.callback_url("A")
    props = ctx.app("bot").create_call(ident(ctx.users["agent"]), url, operation_context="c1")
    ctx.legs["A"] = props.call_connection_id
    ctx.create_props = props
    check("create_call answers connecting", props.call_connection_state == "connecting", props.call_connection_state)
    check("create_call echoes callbackUri byte for byte", props.callback_url == url, props.callback_url)
    check("create_call names the source", props.source.raw_id == ctx.users["bot"], props.source)


def step3_incoming_and_answer(ctx):
    check("the subscription's validation handshake was answered", len(ctx.rx.handshakes) >= 1)
    incoming, props = ctx.answer("B", ctx.users["agent"], "c2")
    check("IncomingCall is EventGrid-parsable with to=agent", incoming.data["to"]["rawId"] == ctx.users["agent"])
    check("IncomingCall from bot (kind communicationUser)", incoming.data["from"]["rawId"] == ctx.users["bot"] and incoming.data["from"]["kind"] == "communicationUser")
    check("IncomingCall subject is /caller/.../recipient/...", incoming.subject == f"/caller/{ctx.users['bot']}/recipient/{ctx.users['agent']}", incoming.subject)
    check("IncomingCall carries serverCallId and correlationId", incoming.data["serverCallId"] == ctx.create_props.server_call_id and incoming.data["correlationId"] == ctx.create_props.correlation_id)
    check("answer_call returns the same call", props.server_call_id == ctx.create_props.server_call_id)
    expect_error(
        "a second answer with the same context",
        lambda: ctx.app().answer_call(incoming.data["incomingCallContext"], ctx.rx.callback_url("B2")),
        409,
        "8519",
    )


def step4_connected(ctx):
    a = ctx.rx.event("A", "CallConnected")
    b = ctx.rx.event("B", "CallConnected")
    check("A gets CallConnected with operationContext c1", a.data["operationContext"] == "c1", a.data)
    check("B gets CallConnected with operationContext c2", b.data["operationContext"] == "c2", b.data)
    check("both legs share serverCallId and correlationId", a.data["serverCallId"] == b.data["serverCallId"] and a.data["correlationId"] == b.data["correlationId"])
    check("CallConnected resultInformation 200/0", a.data["resultInformation"]["code"] == 200 and a.data["resultInformation"]["subCode"] == 0)
    updated = ctx.rx.event("A", "ParticipantsUpdated")
    roster = {p["identifier"]["rawId"] for p in updated.data["participants"]}
    check("ParticipantsUpdated lists bot and agent", roster == {ctx.users["bot"], ctx.users["agent"]}, roster)
    check("ParticipantsUpdated has a sequenceNumber", updated.data["sequenceNumber"] == 1, updated.data)
    query = ctx.rx.callbacks["A"][0][2]
    check("callbacks keep the callbackUri query", query.get("token") == [CALLBACK_TOKEN], query)
    check("one CloudEvent per POST", set(ctx.rx.posts_per_callback) == {1}, ctx.rx.posts_per_callback)
    conn = ctx.app("bot").get_call_connection(ctx.legs["A"])
    props = conn.get_call_properties()
    check("get_call_properties is connected", props.call_connection_state == "connected", props.call_connection_state)
    participants = {p.identifier.raw_id for p in conn.list_participants()}
    check("list_participants shows both", participants == {ctx.users["bot"], ctx.users["agent"]}, participants)
    agent = conn.get_participant(ident(ctx.users["agent"]))
    check("get_participant resolves a percent-encoded raw id", agent.identifier.raw_id == ctx.users["agent"] and agent.is_muted is False)


def step4b_websocket_caller_rings_an_application(ctx):
    """A WebSocket participant calls an ACS identity that has no socket: the application gets
    IncomingCall, answers, and the caller sees the call connection in its roster."""
    token = ctx.identity.get_token(ident(ctx.users["alice"]), [CommunicationTokenScope.VOIP]).token
    ws = WsClient(ctx.base_url, ctx.ca_file, token)
    try:
        ws.wait_for("welcome")
        ws.send({"type": "call.place", "requestId": "r1", "targets": [ctx.users["ivr"]]})
        call_id = ws.wait_for("call.placed")["callId"]
        incoming, props = ctx.answer("W", ctx.users["ivr"], "w1")
        check("a WebSocket call to an ACS identity raises IncomingCall", incoming.data["from"]["rawId"] == ctx.users["alice"] and incoming.data["serverCallId"] == call_id)
        connected = ws.wait_for("call.connected")
        roster = {p["rawId"] for p in connected["participants"]}
        check("the caller's roster shows the call connection", roster == {ctx.users["alice"], ctx.users["ivr"]}, roster)
        updated = ctx.rx.event("W", "ParticipantsUpdated")
        check("the application sees the WebSocket caller", {p["identifier"]["rawId"] for p in updated.data["participants"]} == roster)
        # A recording of this 1:1 call shows the caller the recording notice, on and off.
        client = ctx.app()
        rid = client.start_recording(call_connection_id=props.call_connection_id).recording_id
        notice = ws.wait_for("call.recordingChanged")
        check("a 1:1 call's recording shows the caller the recording notice", notice["callId"] == call_id and notice["recording"] is True, notice)
        client.stop_recording(rid)
        notice = ws.wait_for("call.recordingChanged")
        check("stopping it takes the notice down", notice["recording"] is False, notice)
        ctx.app().get_call_connection(props.call_connection_id).hang_up(is_for_everyone=False)
        ended = ws.wait_for("call.ended")
        check("the application's hang-up ends the caller's call", ended["callId"] == call_id, ended)
        ctx.rx.event("W", "CallDisconnected")
    finally:
        ws.close()


def step4c_connect_to_a_group_call(ctx):
    """connect_call(group_call_id): the application joins a group call as a participant; a
    WebSocket participant joining it sees the application in the roster, and the application
    sees it in ParticipantsUpdated."""
    import uuid

    group = str(uuid.uuid4())
    props = ctx.app().connect_call(callback_url=ctx.rx.callback_url("GC"), group_call_id=group, operation_context="gc1")
    ctx.legs["GC"] = props.call_connection_id
    connected = ctx.rx.event("GC", "CallConnected")
    check("connect_call to a group call connects (gc1)", connected.data["operationContext"] == "gc1", connected.data)
    token = ctx.identity.get_token(ident(ctx.users["alice"]), [CommunicationTokenScope.VOIP]).token
    ws = WsClient(ctx.base_url, ctx.ca_file, token)
    try:
        ws.wait_for("welcome")
        ws.send({"type": "join", "requestId": "j1", "target": {"kind": "groupCall", "groupId": group}})
        joined = ws.wait_for("joined")
        raws = {p["identifier"]["rawId"] for p in joined["snapshot"]["participants"]}
        app_ids = [r for r in raws if r.endswith("_callautomation")]
        check("the group call's roster shows the application's participant", len(app_ids) == 1 and ctx.users["alice"] in raws, raws)
        updated = ctx.rx.event("GC", "ParticipantsUpdated", nth=1)
        seen = {p["identifier"]["rawId"] for p in updated.data["participants"]}
        check("the application sees the WebSocket participant join", ctx.users["alice"] in seen, seen)
        ctx.app().get_call_connection(props.call_connection_id).hang_up(is_for_everyone=False)
        ctx.rx.event("GC", "CallDisconnected")
        left = ws.wait_for("roster.delta")
        while left["delta"].get("change") != "left":
            left = ws.wait_for("roster.delta")
        app_pid = next(p["participantId"] for p in joined["snapshot"]["participants"] if p["identifier"]["rawId"] in app_ids)
        check("the WebSocket participant sees the application leave", left["delta"]["participantId"] == app_pid, left)
    finally:
        ws.close()


def media_url(ctx, name):
    return f"{ctx.rx.base}/media/{name}"


def step5_play(ctx):
    """A plays a WAV to the agent: PlayStarted then PlayCompleted ("p1"); a loop is canceled (8508)."""
    from azure.communication.callautomation import FileSource

    conn = ctx.app("bot").get_call_connection(ctx.legs["A"])
    conn.play_media(FileSource(media_url(ctx, "prompt.wav"), play_source_cache_id="prompt"), play_to=[ident(ctx.users["agent"])], operation_context="p1")
    started = ctx.rx.event("A", "PlayStarted")
    completed = ctx.rx.event("A", "PlayCompleted")
    check("PlayStarted echoes operationContext p1", started.data.get("operationContext") == "p1", started.data)
    result = completed.data["resultInformation"]
    check("PlayCompleted 200/0 with p1", (result["code"], result["subCode"], completed.data.get("operationContext")) == (200, 0, "p1"), completed.data)
    conn.play_media(FileSource(media_url(ctx, "prompt.wav"), play_source_cache_id="prompt"), loop=True, operation_context="p2")
    ctx.rx.event("A", "PlayStarted", 1)
    time.sleep(1.5)  # longer than the file: the loop goes on
    conn.cancel_all_media_operations()
    canceled = ctx.rx.event("A", "PlayCanceled")
    result = canceled.data["resultInformation"]
    check("a looped play is canceled with 400/8508 (p2)", (result["code"], result["subCode"], canceled.data.get("operationContext")) == (400, 8508, "p2"), canceled.data)
    conn.play_media(FileSource(f"{ctx.rx.base}/media/missing.wav"), operation_context="p3")
    failed = ctx.rx.event("A", "PlayFailed")
    check("a file that cannot be fetched is PlayFailed 8536 (p3)", failed.data["resultInformation"]["subCode"] == 8536 and failed.data.get("operationContext") == "p3", failed.data)
    from azure.communication.callautomation import TextSource
    import shutil

    conn.play_media(TextSource(text="Thank you for calling.", voice_name="en-US-NancyNeural"), operation_context="p5")
    if shutil.which("espeak-ng"):
        done = ctx.rx.event("A", "PlayCompleted", 1)
        check("text is spoken by espeak-ng: PlayCompleted (p5)", done.data.get("operationContext") == "p5", done.data)
    else:
        failed = ctx.rx.event("A", "PlayFailed", 1)
        check("without espeak-ng, text is PlayFailed 8565 (p5)", failed.data["resultInformation"]["subCode"] == 8565, failed.data)


def step6_dtmf(ctx):
    """A recognizes 3 tones of the agent; B (the agent's leg) sends them as RFC 4733."""
    from azure.communication.callautomation import FileSource

    a = ctx.app("bot").get_call_connection(ctx.legs["A"])
    b = ctx.app().get_call_connection(ctx.legs["B"])
    a.start_recognizing_media("dtmf", ident(ctx.users["agent"]), dtmf_max_tones_to_collect=3, initial_silence_timeout=5, play_prompt=FileSource(media_url(ctx, "menu.wav")), operation_context="r1")
    time.sleep(0.8)  # the prompt plays first
    sent = b.send_dtmf_tones(["one", "two", "three"], ident(ctx.users["bot"]), operation_context="d1")
    check("send_dtmf_tones echoes operationContext d1", sent.operation_context == "d1", sent)
    done = ctx.rx.event("A", "RecognizeCompleted")
    check("RecognizeCompleted is dtmf one,two,three (8531, r1)", done.data.get("recognitionType") == "dtmf" and done.data["dtmfResult"]["tones"] == ["one", "two", "three"] and done.data["resultInformation"]["subCode"] == 8531 and done.data.get("operationContext") == "r1", done.data)
    sent_done = ctx.rx.event("B", "SendDtmfTonesCompleted")
    check("B gets SendDtmfTonesCompleted (d1)", sent_done.data.get("operationContext") == "d1", sent_done.data)
    a.start_recognizing_media("dtmf", ident(ctx.users["agent"]), dtmf_max_tones_to_collect=3, initial_silence_timeout=1, operation_context="r2")
    failed = ctx.rx.event("A", "RecognizeFailed")
    check("no tones: RecognizeFailed 8510 (r2)", failed.data["resultInformation"]["subCode"] == 8510 and failed.data.get("operationContext") == "r2", failed.data)
    expect_error("recognize with an inter-tone timeout of 0", lambda: a.start_recognizing_media("dtmf", ident(ctx.users["agent"]), dtmf_inter_tone_timeout=0), 400, "8523")
    expect_error("speech recognition (no engine)", lambda: a.start_recognizing_media("speech", ident(ctx.users["agent"])), 400, "8523")


def step6b_media_streaming(ctx):
    """Bidirectional media streaming to a loopback voice bot (tests/sdk/media_streaming_app.py):
    S (bot -> sam) streams to `/echo`, which sends every frame back; Sx (sam's answer) streams
    to `/listen` after start_media_streaming. Sx plays a tone: S's stream hears it, the echo is
    played into the call, and Sx's stream (S's side of the call only) hears the echo."""
    from azure.communication.callautomation import FileSource, MediaStreamingOptions

    from media_streaming_app import StreamingApp, peak

    app = StreamingApp()
    try:
        def options(path, start, bidirectional):
            return MediaStreamingOptions(transport_url=app.url(path), transport_type="websocket", content_type="audio", audio_channel_type="mixed", start_media_streaming=start, enable_bidirectional=bidirectional, audio_format="pcm16KMono")

        props = ctx.app("bot").create_call(ident(ctx.users["sam"]), ctx.rx.callback_url("S"), operation_context="s1", media_streaming=options("/echo", True, True))
        ctx.legs["S"] = props.call_connection_id
        incoming = ctx.rx.incoming_for(ctx.users["sam"])
        answered = ctx.app().answer_call(incoming.data["incomingCallContext"], ctx.rx.callback_url("Sx"), operation_context="sx1", media_streaming=options("/listen", False, False))
        ctx.legs["Sx"] = answered.call_connection_id
        started = ctx.rx.event("S", "MediaStreamingStarted")
        update = started.data["mediaStreamingUpdate"]
        check("startMediaStreaming: true starts the stream: MediaStreamingStarted", update["mediaStreamingStatus"] == "mediaStreamingStarted", started.data)
        echo = app.connection("/echo")
        meta = app.wait("AudioMetadata", lambda: echo.metadata)["audioMetadata"]
        check("the first message is AudioMetadata (PCM 16 kHz mono, 640 bytes a frame)", (meta["encoding"], meta["sampleRate"], meta["channels"], meta["length"]) == ("PCM", 16000, 1, 640) and meta["subscriptionId"], meta)
        app.wait("20 AudioData frames", lambda: len(echo.frames) >= 20)
        # `silent` says whether the frame's samples are all zero (the caller's first decoded
        # frames may hold Opus noise of ±2, so which frame is silent depends on timing).
        shapes = [(len(f[1]), f[3]["audioData"]["timestamp"].endswith("Z"), f[3]["audioData"]["silent"] is all(s == 0 for s in f[1])) for f in echo.frames[:20]]
        check("AudioData frames carry 320 samples, a timestamp and silent (all samples zero)", all(shape == (320, True, True) for shape in shapes), shapes)
        check("before anything plays the stream is (near) silence", peak(echo.frames) < 100, peak(echo.frames))
        sam = ctx.app().get_call_connection(ctx.legs["Sx"])
        sam.start_media_streaming(operation_context="ms1")
        listen_started = ctx.rx.event("Sx", "MediaStreamingStarted")
        check("start_media_streaming: MediaStreamingStarted with ms1", listen_started.data.get("operationContext") == "ms1", listen_started.data)
        listen = app.connection("/listen")
        app.wait("frames on /listen", lambda: len(listen.frames) >= 10)
        check("the listener hears (near) silence before the prompt", peak(listen.frames) < 100, peak(listen.frames))
        heard_from = len(echo.frames)
        echoed_from = len(listen.frames)
        sam.play_media(FileSource(media_url(ctx, "prompt.wav"), play_source_cache_id="prompt"), operation_context="sp1")
        ctx.rx.event("Sx", "PlayCompleted")
        for what, conn, start in [("the bot's stream hears the other party's prompt", echo, heard_from), ("the echo the bot sent back is heard in the call", listen, echoed_from)]:
            try:
                app.wait(what, lambda: peak(conn.frames[start:]) > 500, timeout=5)
            except AssertionError:
                pass
            # Silence reads < 100; the echo has come through a mix, Opus and two resamplings.
            check(f"{what} (peak > 500)", peak(conn.frames[start:]) > 500, peak(conn.frames[start:]))
        expect_error("start_media_streaming while it runs", lambda: sam.start_media_streaming(), 400, "8500")
        sam.stop_media_streaming(operation_context="ms2")
        stopped = ctx.rx.event("Sx", "MediaStreamingStopped")
        check("stop_media_streaming: MediaStreamingStopped with ms2", stopped.data.get("operationContext") == "ms2" and stopped.data["mediaStreamingUpdate"]["mediaStreamingStatus"] == "mediaStreamingStopped", stopped.data)
        app.wait("the /listen socket closed", lambda: listen.closed)
        ctx.app("bot").get_call_connection(ctx.legs["S"]).hang_up(is_for_everyone=True)
        for leg in ["S", "Sx"]:
            ctx.rx.event(leg, "CallDisconnected")
        names = ctx.rx.names("S")
        app.wait("the /echo socket closed", lambda: echo.closed)
        check("the call's end closes the bot's socket; CallDisconnected stays last", names[-1] == "CallDisconnected" and echo.closed, names)

        def streaming_usage():
            day, after = (time.strftime("%Y-%m-%d", time.gmtime(time.time() + d * 86400)) for d in (0, 2))
            code, _, body = signed_request(ctx, "GET", f"{ctx.base_url}/usage?from={day}&to={after}")
            rows = [r for r in json.loads(body)["value"] if r["UsageType"] == "AudioStreaming"] if code == 200 else []
            ids = {r["ParticipantId"] for r in rows}
            return rows if {f"{ctx.legs['S']}/1", f"{ctx.legs['Sx']}/1"} <= ids else None

        rows = ctx.rx.wait("the streaming usage records", streaming_usage)
        check("both streams are billed as AudioStreaming minutes, priced (the one the call's end stopped too)", all(r["UnitType"] == "Minute" and r["DurationMs"] > 0 and float(r["CostUsd"]) >= 0 for r in rows), rows)
    finally:
        app.close()


def signed_request(ctx, method, url, headers=None):
    """A raw HMAC-signed request (SDK 1.6.0 refuses non-ACS recording hosts, fact 11)."""
    import email.utils
    import hashlib
    import hmac as hmac_mod
    import urllib.request

    parts = dict(p.split("=", 1) for p in ctx.conn_str.strip(";").split(";"))
    endpoint = urllib.parse.urlparse(parts["endpoint"])
    target = urllib.parse.urlparse(url)
    path = target.path + (f"?{target.query}" if target.query else "")
    date = email.utils.formatdate(usegmt=True)
    content = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    to_sign = f"{method}\n{path}\n{date};{endpoint.netloc};{content}"
    signature = base64.b64encode(hmac_mod.new(base64.b64decode(parts["accesskey"]), to_sign.encode(), hashlib.sha256).digest()).decode()
    request = urllib.request.Request(url, method=method, headers={"x-ms-date": date, "x-ms-content-sha256": content, "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ctx.ca_file)) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def step7_recording(ctx):
    """Start/pause/resume/stop a recording of the call; the file is announced, downloadable with Range, deletable."""
    from azure.communication.callautomation import FileSource

    client = ctx.app("bot")
    started = client.start_recording(call_connection_id=ctx.legs["A"], recording_state_callback_url=ctx.rx.callback_url("rec"))
    check("start_recording is active", started.recording_state == "active", started.recording_state)
    rid = started.recording_id
    active = ctx.rx.event("rec", "RecordingStateChanged")
    check("RecordingStateChanged active", active.data["state"] == "active" and active.data["recordingId"] == rid, active.data)
    ctx.app("bot").get_call_connection(ctx.legs["A"]).play_media(FileSource(media_url(ctx, "prompt.wav"), play_source_cache_id="prompt"), operation_context="p4")
    time.sleep(1.5)
    client.pause_recording(rid)
    paused = ctx.rx.event("rec", "RecordingStateChanged", 1)
    check("pause: RecordingStateChanged inactive", paused.data["state"] == "inactive", paused.data)
    check("get_recording_properties is inactive", client.get_recording_properties(rid).recording_state == "inactive")
    client.resume_recording(rid)
    resumed = ctx.rx.event("rec", "RecordingStateChanged", 2)
    check("resume: RecordingStateChanged active", resumed.data["state"] == "active", resumed.data)
    time.sleep(0.5)
    client.stop_recording(rid)
    stopped = ctx.rx.event("rec", "RecordingStateChanged", 3)
    check("stop: RecordingStateChanged inactive", stopped.data["state"] == "inactive", stopped.data)
    status = ctx.rx.wait("RecordingFileStatusUpdated", lambda: next((e for e in ctx.rx.incoming if e.event_type == "Microsoft.Communication.RecordingFileStatusUpdated" and e.data["recordingStorageInfo"]["recordingChunks"][0]["documentId"] == rid), None))
    chunk = status.data["recordingStorageInfo"]["recordingChunks"][0]
    check("RecordingFileStatusUpdated names the file", chunk["documentId"] == rid and chunk["contentLocation"].endswith("/audio"), chunk)
    code, headers, body = signed_request(ctx, "GET", chunk["contentLocation"])
    check("download is 200 with a WAV", code == 200 and body[:4] == b"RIFF" and body[8:12] == b"WAVE", (code, body[:12]))
    rate, data_len = struct.unpack("<I", body[24:28])[0], struct.unpack("<I", body[40:44])[0]
    seconds = data_len / (2 * rate)
    check("the WAV holds about the recorded time (2.0 s +- 0.6)", abs(seconds - 2.0) < 0.6, seconds)
    samples = struct.unpack(f"<{data_len // 2}h", body[44 : 44 + data_len - data_len % 2])
    check("the recording holds the played prompt (peak > 2000)", max(abs(s) for s in samples) > 2000, max(abs(s) for s in samples))
    code, headers, part = signed_request(ctx, "GET", chunk["contentLocation"], {"Range": "bytes=0-43"})
    check("Range bytes=0-43 is 206 with the header", code == 206 and part == body[:44] and headers.get("content-range", headers.get("Content-Range", "")).startswith("bytes 0-43/"), (code, headers))
    code, _, _ = signed_request(ctx, "DELETE", chunk["deleteLocation"])
    check("delete is 200", code == 200, code)
    code, _, _ = signed_request(ctx, "GET", chunk["contentLocation"])
    check("after delete the file is 404", code == 404, code)


def step8_hold(ctx):
    """Hold the agent with music, then unhold."""
    from azure.communication.callautomation import FileSource

    conn = ctx.app("bot").get_call_connection(ctx.legs["A"])
    conn.hold(ident(ctx.users["agent"]), play_source=FileSource(media_url(ctx, "moh.wav")), operation_context="h1")
    conn.unhold(ident(ctx.users["agent"]), operation_context="h2")
    check("hold and unhold are accepted (200)", True)


def count_events(ctx, leg, name):
    return sum(1 for e, _, _ in ctx.rx.callbacks.get(leg, []) if e.type == f"Microsoft.Communication.{name}")


def record_peak(ctx, action, seconds=1.5):
    """Records the call (the mix a listener hears) while `action` runs; the file's peak sample."""
    client = ctx.app("bot")
    started = client.start_recording(call_connection_id=ctx.legs["A"])
    action()
    time.sleep(seconds)
    client.stop_recording(started.recording_id)
    rid = started.recording_id
    status = ctx.rx.wait(f"RecordingFileStatusUpdated {rid}", lambda: next((e for e in ctx.rx.incoming if e.event_type == "Microsoft.Communication.RecordingFileStatusUpdated" and e.data["recordingStorageInfo"]["recordingChunks"][0]["documentId"] == rid), None))
    chunk = status.data["recordingStorageInfo"]["recordingChunks"][0]
    code, _, body = signed_request(ctx, "GET", chunk["contentLocation"])
    data_len = struct.unpack("<I", body[40:44])[0] if code == 200 else 0
    samples = struct.unpack(f"<{data_len // 2}h", body[44 : 44 + data_len - data_len % 2]) if data_len else (0,)
    return max(abs(s) for s in samples)


def on_hold_update(ctx, leg, after, wanted):
    """The first ParticipantsUpdated of `leg` from index `after` whose isOnHold map satisfies `wanted` (waits); (index, map)."""

    def find():
        updates = [e for e, _, _ in ctx.rx.callbacks.get(leg, []) if e.type.endswith("ParticipantsUpdated")]
        for index in range(after, len(updates)):
            on_hold = {p["identifier"]["rawId"]: p.get("isOnHold") for p in updates[index].data["participants"]}
            if wanted(on_hold):
                return index, on_hold
        return None

    return ctx.rx.wait("ParticipantsUpdated with isOnHold", find)


def step8b_hold_shows_on_hold(ctx):
    """Hold and unhold show as isOnHold in ParticipantsUpdated and get_participant (per-participant audio)."""
    from azure.communication.callautomation import FileSource

    conn = ctx.app("bot").get_call_connection(ctx.legs["A"])
    agent = ctx.users["agent"]
    before = count_events(ctx, "A", "ParticipantsUpdated")
    conn.hold(ident(agent), play_source=FileSource(media_url(ctx, "moh.wav")), operation_context="h3")
    index, on_hold = on_hold_update(ctx, "A", before, lambda m: m.get(agent) is True)
    check("hold: ParticipantsUpdated shows the agent isOnHold (and the bot not)", on_hold.get(ctx.users["bot"]) is False, on_hold)
    check("hold: get_participant is_on_hold", conn.get_participant(ident(agent)).is_on_hold is True)
    conn.unhold(ident(agent), operation_context="h4")
    _, on_hold = on_hold_update(ctx, "A", index + 1, lambda m: m.get(agent) is False)
    check("unhold: ParticipantsUpdated shows isOnHold false", on_hold.get(agent) is False, on_hold)
    expect_error("hold of a participant not in the call", lambda: conn.hold(ident(ctx.users["kim"])), 404, "8522")


def step8c_play_to_and_mute_in_the_mix(ctx):
    """A prompt played to the agent only is absent from the recording (the recorder is not a target); a muted participant's audio is absent too."""
    from azure.communication.callautomation import FileSource

    a = ctx.app("bot").get_call_connection(ctx.legs["A"])
    prompt = FileSource(media_url(ctx, "prompt.wav"), play_source_cache_id="prompt")
    peak = record_peak(ctx, lambda: a.play_media(prompt, play_to=[ident(ctx.users["agent"])], operation_context="pt1"))
    check("a prompt played to the agent only is not in the call's recording (peak < 500)", peak < 500, peak)
    done = ctx.rx.wait("PlayCompleted pt1", lambda: next((e for e, _, _ in ctx.rx.callbacks.get("A", []) if e.type.endswith("PlayCompleted") and e.data.get("operationContext") == "pt1"), None))
    check("the targeted play still completes (pt1)", done.data["resultInformation"]["code"] == 200, done.data)
    peak = record_peak(ctx, lambda: a.play_media(prompt, operation_context="pt2"))
    check("the same prompt played to everyone is in the recording (peak > 2000)", peak > 2000, peak)
    # The agent's own connection (B) plays to everyone, but the agent is muted: nobody hears it.
    b = ctx.app().get_call_connection(ctx.legs["B"])
    a.mute_participant(ident(ctx.users["agent"]), operation_context="m2")
    time.sleep(0.2)
    peak = record_peak(ctx, lambda: b.play_media(prompt, operation_context="pt3"))
    check("a muted participant's audio is not in the recording (peak < 500)", peak < 500, peak)


def step8d_unmixed_recording(ctx):
    """An unmixed recording pins the bot to channel 1 (channelAffinity): its prompt is on that channel only; the metadata lists it."""
    import json
    from azure.communication.callautomation import ChannelAffinity, FileSource

    client = ctx.app("bot")
    bot = ctx.users["bot"]
    started = client.start_recording(call_connection_id=ctx.legs["A"], recording_channel_type="unmixed", channel_affinity=[ChannelAffinity(ident(bot), 1)])
    rid = started.recording_id
    client.get_call_connection(ctx.legs["A"]).play_media(FileSource(media_url(ctx, "prompt.wav"), play_source_cache_id="prompt"), operation_context="u1")
    # The whole prompt is recorded: stop once it completed (a loaded machine may start it late).
    ctx.rx.wait("PlayCompleted u1", lambda: next((e for e, _, _ in ctx.rx.callbacks.get("A", []) if e.type.endswith("PlayCompleted") and e.data.get("operationContext") == "u1"), None))
    time.sleep(0.2)
    client.stop_recording(rid)
    status = ctx.rx.wait(f"RecordingFileStatusUpdated {rid}", lambda: next((e for e in ctx.rx.incoming if e.event_type == "Microsoft.Communication.RecordingFileStatusUpdated" and e.data["recordingStorageInfo"]["recordingChunks"][0]["documentId"] == rid), None))
    chunk = status.data["recordingStorageInfo"]["recordingChunks"][0]
    code, _, body = signed_request(ctx, "GET", chunk["contentLocation"])
    channels, rate = struct.unpack("<H", body[22:24])[0], struct.unpack("<I", body[24:28])[0]
    check("the unmixed WAV has a channel per participant up to the pinned one (2 channels, 16 kHz)", code == 200 and (channels, rate) == (2, 16000), (code, channels, rate))
    data_len = struct.unpack("<I", body[40:44])[0]
    samples = struct.unpack(f"<{data_len // 2}h", body[44 : 44 + data_len - data_len % 2])
    peaks = [max((abs(x) for x in samples[c::channels]), default=0) for c in range(channels)]
    check("the bot's prompt is on channel 1 only (peak > 2000; channel 0 silent)", peaks[1] > 2000 and peaks[0] == 0, peaks)
    code, _, meta = signed_request(ctx, "GET", chunk["metadataLocation"])
    meta = json.loads(meta)
    check("metadata: unmixed, the bot on channel 1", meta["recordingInfo"]["channelType"] == "unmixed" and {"participantId": bot, "channel": 1} in meta["participants"], meta)
    expect_error("channelAffinity without unmixed", lambda: client.start_recording(call_connection_id=ctx.legs["A"], channel_affinity=[ChannelAffinity(ident(bot), 0)]), 400, "8523")
    expect_error("a channel outside 0..4", lambda: client.start_recording(call_connection_id=ctx.legs["A"], recording_channel_type="unmixed", channel_affinity=[ChannelAffinity(ident(bot), 5)]), 400, "8523")


def step8e_operations_in_a_group_call(ctx):
    """The media and participant operations inside a group call joined with connect_call (a
    conversation, not a call between users): list/get participants, play to everyone and to a
    chosen participant (checked through the call's recording), mute (the participant's client
    sees it), hold/unhold, recognize, continuous DTMF, send DTMF, media streaming, remove."""
    import uuid

    from azure.communication.callautomation import FileSource, MediaStreamingOptions

    from media_streaming_app import StreamingApp

    app = StreamingApp()
    group = str(uuid.uuid4())
    token = ctx.identity.get_token(ident(ctx.users["ivy"]), [CommunicationTokenScope.VOIP]).token
    ws = WsClient(ctx.base_url, ctx.ca_file, token)
    try:
        ws.wait_for("welcome")
        ws.send({"type": "join", "requestId": "j1", "target": {"kind": "groupCall", "groupId": group}})
        ws.wait_for("joined")
        streaming = MediaStreamingOptions(transport_url=app.url("/group"), transport_type="websocket", content_type="audio", audio_channel_type="unmixed", start_media_streaming=False, audio_format="pcm16KMono")
        props = ctx.app().connect_call(callback_url=ctx.rx.callback_url("G"), group_call_id=group, operation_context="g1", media_streaming=streaming)
        ctx.legs["G"] = props.call_connection_id
        ctx.rx.event("G", "CallConnected")
        conn = ctx.app().get_call_connection(props.call_connection_id)
        ivy = ident(ctx.users["ivy"])
        ctx.rx.wait("ParticipantsUpdated with ivy", lambda: any(ctx.users["ivy"] in {p["identifier"]["rawId"] for p in e.data["participants"]} for e, _, _ in ctx.rx.callbacks.get("G", []) if e.type.endswith("ParticipantsUpdated")))
        raws = {p.identifier.raw_id for p in conn.list_participants()}
        check("group call: list_participants shows the participant", ctx.users["ivy"] in raws, raws)
        check("group call: get_participant", conn.get_participant(ivy).identifier.raw_id == ctx.users["ivy"])
        prompt = FileSource(media_url(ctx, "prompt.wav"), play_source_cache_id="prompt")

        def recorded_peak(action, context, by_locator=False):
            client = ctx.app()
            started = client.start_recording(group_call_id=group) if by_locator else client.start_recording(call_connection_id=props.call_connection_id)
            rid = started.recording_id
            action()
            ctx.rx.wait(f"PlayCompleted {context}", lambda: next((e for e, _, _ in ctx.rx.callbacks.get("G", []) if e.type.endswith("PlayCompleted") and e.data.get("operationContext") == context), None))
            time.sleep(0.2)
            client.stop_recording(rid)
            status = ctx.rx.wait(f"RecordingFileStatusUpdated {rid}", lambda: next((e for e in ctx.rx.incoming if e.event_type == "Microsoft.Communication.RecordingFileStatusUpdated" and e.data["recordingStorageInfo"]["recordingChunks"][0]["documentId"] == rid), None))
            code, _, body = signed_request(ctx, "GET", status.data["recordingStorageInfo"]["recordingChunks"][0]["contentLocation"])
            data_len = struct.unpack("<I", body[40:44])[0] if code == 200 else 0
            samples = struct.unpack(f"<{data_len // 2}h", body[44 : 44 + data_len - data_len % 2]) if data_len else (0,)
            return max(abs(s) for s in samples)

        peak = recorded_peak(lambda: conn.play_media(prompt, operation_context="gp1"), "gp1", by_locator=True)
        done = ctx.rx.event("G", "PlayCompleted")
        check("group call: a play to everyone completes (gp1) and is in the recording by group call locator (peak > 2000)", done.data.get("operationContext") == "gp1" and peak > 2000, (done.data.get("operationContext"), peak))
        peak = recorded_peak(lambda: conn.play_media(prompt, play_to=[ivy], operation_context="gp2"), "gp2")
        done = ctx.rx.event("G", "PlayCompleted", 1)
        check("group call: a play to one participant completes (gp2) and is not in the recording (peak < 500)", done.data.get("operationContext") == "gp2" and peak < 500, (done.data.get("operationContext"), peak))
        muted = conn.mute_participant(ivy, operation_context="gm1")
        check("group call: mute echoes gm1", muted.operation_context == "gm1", muted)
        delta = ws.wait_for("roster.delta")
        while delta["delta"].get("change") != "muted":
            delta = ws.wait_for("roster.delta")
        check("group call: the muted participant's client sees it muted", delta["delta"]["muted"] is True, delta)
        deadline = time.time() + WAIT_S
        while not conn.get_participant(ivy).is_muted and time.time() < deadline:
            time.sleep(0.05)
        check("group call: get_participant is_muted", conn.get_participant(ivy).is_muted is True)
        before = count_events(ctx, "G", "ParticipantsUpdated")
        conn.hold(ivy, play_source=FileSource(media_url(ctx, "moh.wav")), operation_context="gh1")
        index, on_hold = on_hold_update(ctx, "G", before, lambda m: m.get(ctx.users["ivy"]) is True)
        conn.unhold(ivy, operation_context="gh2")
        on_hold_update(ctx, "G", index + 1, lambda m: m.get(ctx.users["ivy"]) is False)
        check("group call: hold and unhold show in ParticipantsUpdated", True)
        conn.start_recognizing_media("dtmf", ivy, dtmf_max_tones_to_collect=1, initial_silence_timeout=1, operation_context="gr1")
        failed = ctx.rx.event("G", "RecognizeFailed")
        check("group call: recognize runs (no tones: RecognizeFailed 8510, gr1)", failed.data["resultInformation"]["subCode"] == 8510 and failed.data.get("operationContext") == "gr1", failed.data)
        conn.start_continuous_dtmf_recognition(ivy, operation_context="gc1")
        conn.stop_continuous_dtmf_recognition(ivy, operation_context="gc2")
        stopped = ctx.rx.event("G", "ContinuousDtmfRecognitionStopped")
        check("group call: continuous DTMF start/stop (gc2)", stopped.data.get("operationContext") == "gc2", stopped.data)
        sent = conn.send_dtmf_tones(["one", "pound"], ivy, operation_context="gd1")
        sent_done = ctx.rx.event("G", "SendDtmfTonesCompleted")
        check("group call: send_dtmf_tones completes (gd1)", sent.operation_context == "gd1" and sent_done.data.get("operationContext") == "gd1", sent_done.data)
        conn.start_media_streaming(operation_context="gs1")
        started = ctx.rx.event("G", "MediaStreamingStarted")
        stream = app.connection("/group")
        app.wait("AudioMetadata on /group", lambda: stream.metadata)
        conn.stop_media_streaming(operation_context="gs2")
        stopped = ctx.rx.event("G", "MediaStreamingStopped")
        check("group call: media streaming starts and stops (gs1, gs2)", started.data.get("operationContext") == "gs1" and stopped.data.get("operationContext") == "gs2", (started.data, stopped.data))
        removed = conn.remove_participant(ivy, operation_context="gx1")
        done = ctx.rx.event("G", "RemoveParticipantSucceeded")
        check("group call: remove_participant (gx1)", removed.operation_context == "gx1" and done.data["participant"]["rawId"] == ctx.users["ivy"] and done.data.get("operationContext") == "gx1", done.data)
        ended = ws.wait_for("session.ended")
        check("group call: the removed participant's session ends as Removed", ended["reason"] == "Removed", ended)
        expect_error("group call: remove of a participant not in the call", lambda: conn.remove_participant(ident(ctx.users["kim"])), 404, "8522")
        add_into_the_group_call(ctx, conn, group)
        move_into_the_group_call(ctx, conn, group)
        conn.hang_up(is_for_everyone=False)
        ctx.rx.event("G", "CallDisconnected")
        names = ctx.rx.names("G")
        check("group call: CallDisconnected is the last callback", names[-1] == "CallDisconnected", names)
    finally:
        ws.close()
        app.close()


def add_into_the_group_call(ctx, conn, group):
    """add_participant inside the group call rings real WebSocket clients: kim gets call.incoming
    naming the group call, joins it (AddParticipantSucceeded, ga1); sam's ring is canceled
    (call.ended, CancelAddParticipantSucceeded gc1), then declined (AddParticipantFailed, ga3);
    a transfer replaces kim (the transferee) by sam (CallTransferAccepted, gt1)."""
    clients = {}
    try:
        for name in ("kim", "sam"):
            token = ctx.identity.get_token(ident(ctx.users[name]), [CommunicationTokenScope.VOIP]).token
            clients[name] = WsClient(ctx.base_url, ctx.ca_file, token)
            clients[name].wait_for("welcome")
        kim, sam = clients["kim"], clients["sam"]
        added = conn.add_participant(ident(ctx.users["kim"]), operation_context="ga1", voip_headers={"x-ms-custom-ticket": "g7"})
        check("group call: add_participant echoes ga1 and gives an invitationId", added.operation_context == "ga1" and added.invitation_id, vars(added))
        ring = kim.wait_for("call.incoming")
        check("group call: add_participant rings the WebSocket client with the group call to join", ring["callId"] == added.invitation_id and ring["join"] == {"kind": "groupCall", "groupId": group} and ring["caller"]["rawId"] == conn.get_call_properties().source.raw_id, ring)
        check("group call: the ring carries the add's customCallingContext (voip_headers)", ring.get("customContext", {}).get("voipHeaders") == {"x-ms-custom-ticket": "g7"}, ring)
        kim.send({"type": "join", "requestId": "kj", "target": ring["join"]})
        kim.wait_for("joined")
        done = ctx.rx.event("G", "AddParticipantSucceeded")
        check("group call: AddParticipantSucceeded once the client joined (ga1, invitationId)", done.data["participant"]["rawId"] == ctx.users["kim"] and done.data.get("operationContext") == "ga1" and done.data.get("invitationId") == added.invitation_id, done.data)
        check("group call: list_participants shows the added client", ctx.users["kim"] in {p.identifier.raw_id for p in conn.list_participants()})
        pending = conn.add_participant(ident(ctx.users["sam"]), operation_context="ga2")
        ring = sam.wait_for("call.incoming")
        cancel = conn.cancel_add_participant_operation(pending.invitation_id, operation_context="gc1")
        ended = sam.wait_for("call.ended")
        canceled = ctx.rx.event("G", "CancelAddParticipantSucceeded")
        check("group call: cancel_add_participant stops the ring (call.ended) and CancelAddParticipantSucceeded carries gc1", cancel.invitation_id == pending.invitation_id and ended["callId"] == ring["callId"] and canceled.data.get("operationContext") == "gc1" and canceled.data.get("invitationId") == pending.invitation_id, (ended, canceled.data))
        declined = conn.add_participant(ident(ctx.users["sam"]), operation_context="ga3")
        ring = sam.wait_for("call.incoming")
        sam.send({"type": "call.decline", "requestId": "sd", "callId": ring["callId"]})
        failed = ctx.rx.event("G", "AddParticipantFailed")
        check("group call: a declined invitation is AddParticipantFailed (ga3)", failed.data["participant"]["rawId"] == ctx.users["sam"] and failed.data.get("operationContext") == "ga3" and failed.data.get("invitationId") == declined.invitation_id, failed.data)
        expect_error("group call: a directory user cannot be added with ACS users (the seed's rules)", lambda: conn.add_participant(MicrosoftTeamsUserIdentifier("d1")), 403, "8523")
        expect_error("group call: transfer without a transferee", lambda: conn.transfer_call_to_participant(ident(ctx.users["sam"])), 400, "8523")
        moved = conn.transfer_call_to_participant(ident(ctx.users["sam"]), transferee=ident(ctx.users["kim"]), operation_context="gt1")
        ring = sam.wait_for("call.incoming")
        sam.send({"type": "join", "requestId": "sj", "target": ring["join"]})
        sam.wait_for("joined")
        accepted = ctx.rx.event("G", "CallTransferAccepted")
        check("group call: transfer with a transferee rings the target; once it joined CallTransferAccepted (gt1) names both", moved.operation_context == "gt1" and accepted.data.get("operationContext") == "gt1" and accepted.data["transferTarget"]["rawId"] == ctx.users["sam"] and accepted.data["transferee"]["rawId"] == ctx.users["kim"], accepted.data)
        ended = kim.wait_for("session.ended")
        check("group call: the transferee's session ends", ended["reason"] == "Removed", ended)
        deadline = time.time() + WAIT_S
        while ctx.users["kim"] in {p.identifier.raw_id for p in conn.list_participants()} and time.time() < deadline:
            time.sleep(0.05)
        raws = {p.identifier.raw_id for p in conn.list_participants()}
        check("group call: after the transfer the target is in the call, the transferee is not, the connection stays", ctx.users["sam"] in raws and ctx.users["kim"] not in raws and conn.get_call_properties().call_connection_state == "connected", raws)
    finally:
        for client in clients.values():
            client.close()


def move_into_the_group_call(ctx, conn, group):
    """move_participants into the group call: lee (a WebSocket client) is in a 1:1 call with
    the ivr identity, answered by the application; moved from that call connection into the
    group call, lee's socket gets call.moved (naming the group call) and joined, without
    ringing; MoveParticipantSucceeded (gmv1), and the 1:1 connection is over. The 1:1 call
    was answered by another application (its own client and callback URI): ACS call
    connections belong to the resource, so any of its applications may name one as fromCall;
    the outcome goes to the mover. Moving from a call that is gone is MoveParticipantFailed
    404/8522 (gmv2)."""
    token = ctx.identity.get_token(ident(ctx.users["lee"]), [CommunicationTokenScope.VOIP]).token
    lee = WsClient(ctx.base_url, ctx.ca_file, token)
    try:
        lee.wait_for("welcome")

        def rings_of_ivr():
            return sum(1 for e in ctx.rx.incoming if e.event_type.endswith("IncomingCall") and e.data["to"]["rawId"] == ctx.users["ivr"])

        before = rings_of_ivr()
        lee.send({"type": "call.place", "requestId": "lp", "targets": [ctx.users["ivr"]]})
        call_id = lee.wait_for("call.placed")["callId"]
        ctx.rx.wait("a new IncomingCall to ivr", lambda: rings_of_ivr() > before)
        # Another application (its own client and callbackUri) answers the 1:1 call.
        incoming = ctx.rx.incoming_for(ctx.users["ivr"])
        other_app = CallAutomationClient.from_connection_string(ctx.conn_str, connection_verify=ctx.ca_file)
        ctx.legs["MV"] = other_app.answer_call(incoming.data["incomingCallContext"], ctx.rx.callback_url("MV"), operation_context="mv-answer").call_connection_id
        ctx.rx.event("MV", "CallConnected")
        lee.wait_for("call.connected")
        result = conn.move_participants([ident(ctx.users["lee"])], ctx.legs["MV"], operation_context="gmv1")
        check("group call: move_participants echoes gmv1 and fromCall", result.operation_context == "gmv1" and result.from_call == ctx.legs["MV"], vars(result))
        moved = lee.wait_for("call.moved")
        check("group call: the moved client's socket gets call.moved naming the group call", moved["callId"] == call_id and moved["join"] == {"kind": "groupCall", "groupId": group}, moved)
        joined = lee.wait_for("joined")
        check("group call: the moved client is joined into the group call without ringing", not any(f.get("type") == "call.incoming" for f in lee.frames) and joined["snapshot"]["conversationId"], [f.get("type") for f in lee.frames])
        done = ctx.rx.event("G", "MoveParticipantSucceeded")
        check("group call: MoveParticipantSucceeded names lee, fromCall and gmv1", done.data["participant"]["rawId"] == ctx.users["lee"] and done.data["fromCall"] == ctx.legs["MV"] and done.data.get("operationContext") == "gmv1", done.data)
        check("group call: list_participants shows the moved client", ctx.users["lee"] in {p.identifier.raw_id for p in conn.list_participants()})
        ctx.rx.event("MV", "CallDisconnected")
        check("group call: the 1:1 connection the client left is over", ctx.rx.names("MV")[-1] == "CallDisconnected", ctx.rx.names("MV"))
        # fromCall named another application's call connection (answered by another backend
        # client, with its own callbackUri): call connections are the resource's, as in ACS, so
        # the move is allowed; its outcome goes to the mover, the source call's own events
        # (the participant leaving, CallDisconnected) to the other application.
        check("group call: moving from another application's call connection reports to the mover only", not any(n.startswith("MoveParticipant") for n in ctx.rx.names("MV")) and "ParticipantsUpdated" in ctx.rx.names("MV"), ctx.rx.names("MV"))
        conn.move_participants([ident(ctx.users["kim"])], ctx.legs["MV"], operation_context="gmv2")
        failed = ctx.rx.event("G", "MoveParticipantFailed")
        check("group call: moving from a call that is over is MoveParticipantFailed 404/8522 (gmv2)", failed.data.get("operationContext") == "gmv2" and failed.data["resultInformation"]["subCode"] == 8522, failed.data)
    finally:
        lee.close()


def step9_add_and_cancel(ctx):
    conn = ctx.app("bot").get_call_connection(ctx.legs["A"])
    result = conn.add_participant(ident(ctx.users["alice"]), invitation_timeout=20, operation_context="a1")
    check("add_participant echoes operationContext and gives an invitationId", result.operation_context == "a1" and result.invitation_id, vars(result))
    ctx.answer("C", ctx.users["alice"], "c3")
    added = ctx.rx.event("A", "AddParticipantSucceeded")
    check("AddParticipantSucceeded names alice with a1", added.data["participant"]["rawId"] == ctx.users["alice"] and added.data["operationContext"] == "a1", added.data)
    ctx.rx.event("C", "CallConnected")

    pending = conn.add_participant(ident(ctx.users["carol"]), operation_context="a2")
    ctx.rx.incoming_for(ctx.users["carol"])
    cancel = conn.cancel_add_participant_operation(pending.invitation_id, operation_context="x1")
    check("cancel_add_participant_operation echoes the invitation", cancel.invitation_id == pending.invitation_id and cancel.operation_context == "x1", vars(cancel))
    cancelled = ctx.rx.event("A", "CancelAddParticipantSucceeded")
    check("CancelAddParticipantSucceeded carries invitationId and x1", cancelled.data["invitationId"] == pending.invitation_id and cancelled.data["operationContext"] == "x1", cancelled.data)


def step9b_add_rings_a_websocket_client(ctx):
    """add_participant rings a real client: kim's WebSocket gets call.incoming, accepts, and the
    application sees AddParticipantSucceeded."""
    token = ctx.identity.get_token(ident(ctx.users["kim"]), [CommunicationTokenScope.VOIP]).token
    ws = WsClient(ctx.base_url, ctx.ca_file, token)
    try:
        ws.wait_for("welcome")
        conn = ctx.app("bot").get_call_connection(ctx.legs["A"])
        conn.add_participant(ident(ctx.users["kim"]), operation_context="k1", voip_headers={"x-ms-custom-ticket": "k7"})
        incoming = ws.wait_for("call.incoming")
        check("add_participant rings the WebSocket client", incoming["caller"]["rawId"] == ctx.users["bot"], incoming)
        check("the ring carries the add's customCallingContext (voip_headers)", incoming.get("customContext", {}).get("voipHeaders") == {"x-ms-custom-ticket": "k7"}, incoming)
        ws.send({"type": "call.accept", "requestId": "a1", "callId": incoming["callId"]})
        connected = ws.wait_for("call.connected")
        roster = {p["rawId"] for p in connected["participants"]}
        check("the client's roster holds the application's participants", {ctx.users["bot"], ctx.users["agent"]} <= roster, roster)
        added = ctx.rx.event("A", "AddParticipantSucceeded", nth=1)
        check("AddParticipantSucceeded for the client (k1)", added.data["participant"]["rawId"] == ctx.users["kim"] and added.data["operationContext"] == "k1", added.data)
        ws.send({"type": "call.hangUp", "requestId": "h1", "callId": incoming["callId"]})

        def kim_gone():
            updates = [e for e, _, _ in ctx.rx.callbacks["A"] if e.type.endswith("ParticipantsUpdated")]
            return bool(updates) and ctx.users["kim"] not in {p["identifier"]["rawId"] for p in updates[-1].data["participants"]}

        ctx.rx.wait("kim's hang-up in A's roster", kim_gone)
        check("the client's hang-up reaches the application's roster", True)
    finally:
        ws.close()


def step10_transfer(ctx):
    conn_b = ctx.app("agent").get_call_connection(ctx.legs["B"])
    result = conn_b.transfer_call_to_participant(ident(ctx.users["dave"]), operation_context="t1")
    check("transfer echoes operationContext", result.operation_context == "t1", vars(result))
    ctx.answer("D", ctx.users["dave"], "c4")
    accepted = ctx.rx.event("B", "CallTransferAccepted")
    check("CallTransferAccepted names the target with t1", accepted.data["transferTarget"]["rawId"] == ctx.users["dave"] and accepted.data["operationContext"] == "t1", accepted.data)
    ctx.rx.event("B", "CallDisconnected")
    check("B's last events: CallTransferAccepted then CallDisconnected", ctx.rx.names("B")[-2:] == ["CallTransferAccepted", "CallDisconnected"], ctx.rx.names("B"))
    conn_a = ctx.app("bot").get_call_connection(ctx.legs["A"])
    roster = {p.identifier.raw_id for p in conn_a.list_participants()}
    check("A's roster shows dave instead of agent", roster == {ctx.users["bot"], ctx.users["alice"], ctx.users["dave"]}, roster)


def step10b_move_participants(ctx):
    """move_participants: henry, in another call of the application, moves into this one."""
    for leg, user in [("M1", "henry"), ("M2", "ivy")]:
        props = ctx.app("bot").create_call(ident(ctx.users[user]), ctx.rx.callback_url(leg))
        ctx.legs[leg] = props.call_connection_id
        ctx.answer(f"{leg}x", ctx.users[user], f"{leg}-answer")
        ctx.rx.event(leg, "CallConnected")
    conn = ctx.app("bot").get_call_connection(ctx.legs["M2"])
    result = conn.move_participants([ident(ctx.users["henry"])], ctx.legs["M1"], operation_context="mv1")
    check("move_participants echoes operationContext and fromCall", result.operation_context == "mv1" and result.from_call == ctx.legs["M1"], vars(result))
    moved = ctx.rx.event("M2", "MoveParticipantSucceeded")
    check("MoveParticipantSucceeded names henry, fromCall and mv1", moved.data["participant"]["rawId"] == ctx.users["henry"] and moved.data["fromCall"] == ctx.legs["M1"] and moved.data["operationContext"] == "mv1", moved.data)
    roster = {p.identifier.raw_id for p in conn.list_participants()}
    check("the destination call now holds henry", roster == {ctx.users["bot"], ctx.users["ivy"], ctx.users["henry"]}, roster)
    ctx.rx.event("M1", "CallDisconnected")
    conn.move_participants([ident(ctx.users["carol"])], ctx.legs["M1"], operation_context="mv2")
    failed = ctx.rx.event("M2", "MoveParticipantFailed")
    check("moving someone who is not in that call: MoveParticipantFailed (mv2)", failed.data["operationContext"] == "mv2", failed.data)
    conn.hang_up(is_for_everyone=True)
    ctx.rx.event("M2", "CallDisconnected")


def step11_terminate(ctx):
    conn_a = ctx.app("bot").get_call_connection(ctx.legs["A"])
    conn_a.hang_up(is_for_everyone=True)
    for leg in ["A", "C", "D"]:
        ctx.rx.event(leg, "CallDisconnected")
    time.sleep(0.5)
    for leg in ["A", "B", "C", "D"]:
        names = ctx.rx.names(leg)
        check(f"leg {leg}: CallDisconnected once and last", names.count("CallDisconnected") == 1 and names[-1] == "CallDisconnected", names)
        seqs = [e.data["sequenceNumber"] for e, _, _ in ctx.rx.callbacks[leg] if e.type.endswith("ParticipantsUpdated")]
        check(f"leg {leg}: ParticipantsUpdated sequence numbers increase", seqs == sorted(set(seqs)), seqs)
    try:
        conn_a.get_call_properties()
        check("get_call_properties after terminate fails", False)
    except ResourceNotFoundError as e:
        check("get_call_properties after terminate is 404/8522", error_code(e) == "8522", error_code(e))

    headers = {"Repeatability-Request-ID": "6f1c2a8e-5b1d-4b8e-9a3f-0c4d5e6f7a8b"}
    url = ctx.rx.callback_url("R")
    first = ctx.app("bot").create_call(ident(ctx.users["erin"]), url, operation_context="r1", headers=headers)
    again = ctx.app("bot").create_call(ident(ctx.users["erin"]), url, operation_context="r1", headers=headers)
    check("a Repeatability-Request-ID replay of create returns the first call", again.call_connection_id == first.call_connection_id, (first.call_connection_id, again.call_connection_id))
    ctx.legs["R"] = first.call_connection_id


def step12_negative(ctx):
    # Reject: erin's IncomingCall (the replayed create) is rejected; A gets CreateCallFailed then CallDisconnected.
    incoming = ctx.rx.incoming_for(ctx.users["erin"])
    ctx.app().reject_call(incoming.data["incomingCallContext"], call_reject_reason="busy")
    failed = ctx.rx.event("R", "CreateCallFailed")
    result = failed.data["resultInformation"]
    check("a createCall rejected as busy: CreateCallFailed 486/8539 with r1", (result["code"], result["subCode"]) == (486, 8539) and failed.data["operationContext"] == "r1", failed.data)
    ctx.rx.event("R", "CallDisconnected")
    expect_error("reject with a used context", lambda: ctx.app().reject_call(incoming.data["incomingCallContext"]), 409, "8519")
    expect_error("answer with a forged context", lambda: ctx.app().answer_call("forged.context", ctx.rx.callback_url("X")), 400, "8523")

    # Redirect: a call to frank is redirected to grace, whose app answers; the caller's leg connects.
    props = ctx.app("bot").create_call(ident(ctx.users["frank"]), ctx.rx.callback_url("F"), operation_context="f1")
    ctx.legs["F"] = props.call_connection_id
    frank = ctx.rx.incoming_for(ctx.users["frank"])
    ctx.app().redirect_call(frank.data["incomingCallContext"], ident(ctx.users["grace"]))
    ctx.answer("G", ctx.users["grace"], "g1")
    connected = ctx.rx.event("F", "CallConnected")
    check("a redirected call connects the caller's leg (f1)", connected.data["operationContext"] == "f1", connected.data)

    conn_f = ctx.app("bot").get_call_connection(ctx.legs["F"])
    expect_error("add_participant with invitation_timeout=500", lambda: conn_f.add_participant(ident(ctx.users["alice"]), invitation_timeout=500), 400, "8523")
    expect_error("remove a participant not in the call", lambda: conn_f.remove_participant(ident(ctx.users["alice"])), 404, "8522")
    expect_error("create_call to a phone number (no SIP trunk yet)", lambda: ctx.app("bot").create_call(PhoneNumberIdentifier("+14255550123"), ctx.rx.callback_url("P")), 400, "8523")
    mute = conn_f.mute_participant(ident(ctx.users["grace"]), operation_context="m1")
    check("mute_participant echoes m1", mute.operation_context == "m1", vars(mute))
    check("get_participant shows the mute", conn_f.get_participant(ident(ctx.users["grace"])).is_muted is True)
    conn_f.hang_up(is_for_everyone=False)
    ctx.rx.event("F", "CallDisconnected")
    ctx.rx.event("G", "CallDisconnected")
    expect_error("an operation on an ended call", lambda: conn_f.transfer_call_to_participant(ident(ctx.users["alice"])), 404, "8522")

    bad_key = ctx.conn_str.split("accesskey=")[0] + "accesskey=" + "QUJDRA=="
    try:
        CallAutomationClient.from_connection_string(bad_key, connection_verify=ctx.ca_file).get_call_connection("x").get_call_properties()
        check("a wrong access key fails", False)
    except ClientAuthenticationError as e:
        check("a wrong access key is ClientAuthenticationError", e.status_code == 401, e.status_code)


STEPS = [
    step1_handshake_and_unknown_call,
    step2_create_call,
    step3_incoming_and_answer,
    step4_connected,
    step4b_websocket_caller_rings_an_application,
    step4c_connect_to_a_group_call,
    step5_play,
    step6_dtmf,
    step6b_media_streaming,
    step7_recording,
    step8_hold,
    step8b_hold_shows_on_hold,
    step8c_play_to_and_mute_in_the_mix,
    step8d_unmixed_recording,
    step8e_operations_in_a_group_call,
    step9_add_and_cancel,
    step9b_add_rings_a_websocket_client,
    step10_transfer,
    step10b_move_participants,
    step11_terminate,
    step12_negative,
]


def config_file(directory, receiver):
    path = os.path.join(directory, "palaver.toml")
    with open(path, "w") as f:
        f.write(
            "[[events.subscriptions]]\n"
            'name = "cc-backend"\n'
            f'endpoint = "{receiver.base}/incoming"\n'
            'schema = "EventGridSchema"\n'
            'event_types = ["Microsoft.Communication.IncomingCall", "Microsoft.Communication.RecordingFileStatusUpdated"]\n'
        )
    return path


def run(binary):
    receiver = Receiver()
    try:
        with tempfile.TemporaryDirectory(prefix="palaver-ca-") as data_dir:
            os.environ["PALAVER_CONFIG"] = config_file(data_dir, receiver)
            with palaver(binary, data_dir) as (base_url, conn_str, ca_file):
                print(f"palaver at {base_url}, webhook receiver at {receiver.base}")
                identity = CommunicationIdentityClient.from_connection_string(conn_str, connection_verify=ca_file)
                names = ["bot", "agent", "alice", "carol", "dave", "erin", "frank", "grace", "ivr", "henry", "ivy", "kim", "sam", "lee"]
                users = {n: identity.create_user().properties["id"] for n in names}
                ctx = Ctx(conn_str, ca_file, receiver, users, base_url, identity)
                for step in STEPS:
                    print(f"-- {step.__name__}")
                    step(ctx)
    finally:
        os.environ.pop("PALAVER_CONFIG", None)
        receiver.close()


if __name__ == "__main__":
    sys.exit(run_main(run, "callautomation", __doc__.splitlines()[0]))
