#!/usr/bin/env python3
"""Writes fuzz/corpus/ca_request/: the request bodies the official Call Automation SDK
(azure-communication-callautomation, the version in tests/sdk/requirements.txt) sends for every
operation that has a body, captured by an azure-core transport that records each request and
answers nothing (no server involved). Each seed is the operation's selector byte (its index in
palaver's `validate::operations()`: OPERATIONS, then MEDIA_ACTIONS, read from the Rust sources)
followed by the body exactly as the SDK serialised it.

Run with the SDK's venv: .venv/bin/python fuzz/ca_seeds.py"""
import base64
import os
import re

from azure.core.pipeline.transport import HttpTransport
from azure.communication.callautomation import (
    CallAutomationClient, CallInvite, CommunicationUserIdentifier, DtmfTone, FileSource, MediaStreamingOptions,
    PhoneNumberIdentifier, RecognizeInputType, ServerCallLocator, SsmlSource, TextSource,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus", "ca_request")
CA = os.path.join(ROOT, "crates", "signaling", "src", "api", "call_automation")


def rust_list(path, name):
    text = open(path).read()
    block = re.search(name + r"[^=]*=\s*&\[(.*?)\];", text, re.S).group(1)
    return re.findall(r'"([^"]+)"', block)


OPERATIONS = rust_list(os.path.join(CA, "validate.rs"), "OPERATIONS") + rust_list(os.path.join(CA, "mod.rs"), "MEDIA_ACTIONS")


class Captured(Exception):
    pass


class RecordingTransport(HttpTransport):
    """Records every request the SDK builds and fails it (the SDK call raises; the body is kept)."""

    def __init__(self):
        self.requests = []

    def send(self, request, **kwargs):
        self.requests.append((request.method, request.url, request.body or request.data or b""))
        raise Captured()

    def open(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *args):
        pass


def operation_of(method, url):
    path = url.split("?")[0].split("/calling/", 1)[1]
    if path == "callConnections":
        return "create"
    if path.startswith("callConnections:"):
        return path.split(":", 1)[1]
    last = path.rsplit("/", 1)[1]
    if "/participants:" in path or last.startswith("participants:"):
        return "participants:" + last.split(":", 1)[1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def main():
    transport = RecordingTransport()
    key = base64.b64encode(b"k" * 32).decode()
    client = CallAutomationClient.from_connection_string(f"endpoint=https://127.0.0.1:1/;accesskey={key}", transport=transport)
    user = CommunicationUserIdentifier("8:acs:00000000-0000-4000-8000-000000000001_0000001a-0000-0000-0000-000000000001")
    bot = CommunicationUserIdentifier("8:acs:00000000-0000-4000-8000-000000000001_bot")
    phone = PhoneNumberIdentifier("+14255550100")
    cb = "https://app.example/callbacks?call=1"
    wav = FileSource(url="https://app.example/prompt.wav")
    conn = client.get_call_connection("411f0b00-0000-4000-8000-0000000000cc")
    streaming = MediaStreamingOptions(transport_url="wss://app.example/stream", transport_type="websocket",
                                      content_type="audio", audio_channel_type="mixed")
    calls = [
        lambda: client.create_call(user, cb, operation_context="c1", source_display_name="Bot"),
        lambda: client.create_call(CallInvite(target=user), cb, media_streaming=streaming),
        lambda: client.create_group_call([user, bot], cb, source_caller_id_number=phone),
        lambda: client.answer_call("eyJhbGciOiJIUzI1NiJ9.e30.c2ln", cb, operation_context="a1"),
        lambda: client.reject_call("eyJhbGciOiJIUzI1NiJ9.e30.c2ln", call_reject_reason="busy"),
        lambda: client.redirect_call("eyJhbGciOiJIUzI1NiJ9.e30.c2ln", user),
        lambda: client.connect_call(server_call_id="aHR0cHM6Ly9leGFtcGxlLmNvbS9jYWxs", callback_url=cb),
        lambda: client.connect_call(group_call_id="1b2c3d4e-0000-4000-8000-000000000001", callback_url=cb),
        lambda: conn.transfer_call_to_participant(user, operation_context="t1", transferee=bot),
        lambda: conn.add_participant(user, invitation_timeout=30, operation_context="p1"),
        lambda: conn.add_participant(phone, source_caller_id_number=phone),
        lambda: conn.remove_participant(user, operation_context="r1"),
        lambda: conn.mute_participant(user, operation_context="m1"),
        lambda: conn.cancel_add_participant_operation("inv-1", operation_context="x1"),
        lambda: conn.move_participants([user], from_call_id="aHR0cHM6Ly9leGFtcGxlLmNvbS9jYWxs"),
        lambda: conn.play_media(wav, play_to=[user], loop=True, operation_context="play1"),
        lambda: conn.play_media_to_all([wav, TextSource(text="Hello", voice_name="en-US-NancyNeural")]),
        lambda: conn.play_media(SsmlSource(ssml_text="<speak>hi</speak>")),
        lambda: conn.start_recognizing_media(RecognizeInputType.DTMF, user, max_tones_to_collect=3,
                                             initial_silence_timeout=5, play_prompt=wav,
                                             dtmf_stop_tones=[DtmfTone.POUND], operation_context="rec1"),
        lambda: conn.cancel_all_media_operations(),
        lambda: conn.start_continuous_dtmf_recognition(user, operation_context="cd1"),
        lambda: conn.stop_continuous_dtmf_recognition(user),
        lambda: conn.send_dtmf_tones([DtmfTone.ONE, DtmfTone.TWO, DtmfTone.POUND], user, operation_context="s1"),
        lambda: conn.hold(user, play_source=wav, operation_context="h1"),
        lambda: conn.unhold(user),
        lambda: conn.start_media_streaming(operation_context="ms1"),
        lambda: conn.stop_media_streaming(),
    ]
    for call in calls:
        try:
            call()
        except Captured:
            pass
        except Exception as e:  # an SDK helper this version does not have, or a local check
            print("skipped:", type(e).__name__, e)
    os.makedirs(OUT, exist_ok=True)
    seen = {}
    for method, url, body in transport.requests:
        op = operation_of(method, url)
        if op not in OPERATIONS:
            continue
        body = body if isinstance(body, bytes) else str(body).encode()
        n = seen.get(op, 0)
        seen[op] = n + 1
        name = f"sdk-{op.replace(':', '-')}-{n}"
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([OPERATIONS.index(op)]) + body)
    print(f"{sum(seen.values())} bodies of {len(seen)} operations written to {OUT}")


if __name__ == "__main__":
    main()
