#!/usr/bin/env python3
"""Call Automation proof (issue #15): an IVR with the official SDK 1.6.0 and a real QUIC caller.

An ACS user calls the bot identity from a real QUIC participant (`palaver-quic-caller`, built
next to the palaver binary: `cargo build -p palaver-e2e --bin palaver-quic-caller`), which
sends a steady 440 Hz tone. The backend (this script, with the loopback webhook of
callautomation_compat.py):

  1. gets IncomingCall (after the Event Grid validation handshake) and answers it;
  2. plays a WAV prompt (660 Hz) to the caller, who hears it;
  3. recognizes the 4 DTMF digits the caller sends (RFC 4733 over QUIC);
  4. transfers the caller to an agent, whose application answers;
  5. records on the agent's connection while the agent plays its own 880 Hz tone, stops,
     downloads the file (HMAC) and checks it holds both parties' tones;
  6. hangs up for everyone.

Every callback arrives once, in order, with the right operationContext.

Usage: callautomation_proof_compat.py [--binary PATH]
"""

import math
import os
import struct
import subprocess
import sys
import json
import tempfile
import time
import urllib.parse

from azure.communication.callautomation import FileSource
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope

import callautomation_compat as ca
from callautomation_compat import Ctx, Receiver, config_file, ident, media_url, signed_request, wav_tone
from identity_compat import check, palaver, run_main

ca.MEDIA["/media/welcome.wav"] = wav_tone(660, 1.0)
ca.MEDIA["/media/agent.wav"] = wav_tone(880, 2.0)

CALLER_HZ, PROMPT_HZ, AGENT_HZ = 440, 660, 880


class Caller:
    """The QUIC participant process, driven line by line."""

    def __init__(self, binary, base_url, ca_file, token):
        path = os.path.join(os.path.dirname(binary), "palaver-quic-caller")
        if not os.path.exists(path):
            raise AssertionError(f"{path} is missing: cargo build -p palaver-e2e --bin palaver-quic-caller")
        self.proc = subprocess.Popen(
            [path, "--base-url", base_url, "--ca", ca_file, "--token", token, "--hz", str(CALLER_HZ)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def do(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"palaver-quic-caller exited on {command!r}")
        answer = json.loads(line)
        if answer.get("event") == "error":
            raise AssertionError(f"palaver-quic-caller: {command!r}: {answer}")
        return answer

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def goertzel(samples, rate, hz):
    """The strongest Goertzel amplitude of `hz` over 100 ms blocks."""
    block = rate // 10
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    best = 0.0
    for start in range(0, len(samples) - block + 1, block):
        s1 = s2 = 0.0
        for x in samples[start : start + block]:
            s1, s2 = x + coeff * s1 - s2, s1
        best = max(best, 2 * math.sqrt(max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0)) / block)
    return best


def sequence(rx, leg):
    """(type, operationContext) of each callback of `leg` other than ParticipantsUpdated."""
    return [(e.type.removeprefix("Microsoft.Communication."), e.data.get("operationContext")) for e, _, _ in rx.callbacks.get(leg, []) if not e.type.endswith("ParticipantsUpdated")]


def scenario(ctx, caller):
    users = ctx.users
    call_id = caller.do(f"place {users['bot']}")["callId"]

    # 1. IncomingCall, after the handshake; the backend answers.
    incoming, props = ctx.answer("IVR", users["bot"], "ivr-answer")
    check("the subscription's validation handshake came first", len(ctx.rx.handshakes) >= 1)
    check("IncomingCall: the QUIC caller rings the bot", incoming.data["from"]["rawId"] == users["caller"] and incoming.data["serverCallId"] == call_id, incoming.data)
    ctx.rx.event("IVR", "CallConnected")
    caller.do(f"attach {call_id}")
    ivr = ctx.app().get_call_connection(ctx.legs["IVR"])

    # 2. The welcome prompt; the caller hears it.
    caller.do("mark")
    ivr.play_media(FileSource(media_url(ctx, "welcome.wav")), play_to=[ident(users["caller"])], operation_context="welcome")
    ctx.rx.event("IVR", "PlayCompleted")
    heard = caller.do(f"heard {PROMPT_HZ}")["amplitude"]
    check(f"the caller hears the {PROMPT_HZ} Hz prompt (amplitude > 1000)", heard > 1000, heard)

    # 3. Four digits from the caller.
    ivr.start_recognizing_media("dtmf", ident(users["caller"]), dtmf_max_tones_to_collect=4, initial_silence_timeout=10, dtmf_inter_tone_timeout=5, operation_context="pin")
    caller.do("dtmf 1234")
    done = ctx.rx.event("IVR", "RecognizeCompleted")
    check("RecognizeCompleted holds the caller's 4 digits (8531, pin)", done.data["dtmfResult"]["tones"] == ["one", "two", "three", "four"] and done.data["resultInformation"]["subCode"] == 8531, done.data)

    # 4. Transfer to the agent, whose application answers.
    result = ivr.transfer_call_to_participant(ident(users["agent"]), operation_context="to-agent")
    check("transfer echoes to-agent", result.operation_context == "to-agent", vars(result))
    ctx.answer("AGENT", users["agent"], "agent-answer")
    ctx.rx.event("IVR", "CallDisconnected")
    ctx.rx.event("AGENT", "CallConnected")
    agent = ctx.app().get_call_connection(ctx.legs["AGENT"])
    roster = {p.identifier.raw_id for p in agent.list_participants()}
    check("after the transfer the call holds the caller and the agent", roster == {users["caller"], users["agent"]}, roster)

    # 5. Record both parties: the caller's steady tone and the agent's own.
    client = ctx.app()
    rid = client.start_recording(call_connection_id=ctx.legs["AGENT"], recording_state_callback_url=ctx.rx.callback_url("rec")).recording_id
    ctx.rx.event("rec", "RecordingStateChanged")
    agent.play_media(FileSource(media_url(ctx, "agent.wav")), operation_context="agent-tone")
    ctx.rx.event("AGENT", "PlayCompleted")
    client.stop_recording(rid)
    ctx.rx.event("rec", "RecordingStateChanged", 1)
    status = ctx.rx.wait("RecordingFileStatusUpdated", lambda: next((e for e in ctx.rx.incoming if e.event_type.endswith("RecordingFileStatusUpdated")), None))
    chunk = status.data["recordingStorageInfo"]["recordingChunks"][0]
    code, _, body = signed_request(ctx, "GET", chunk["contentLocation"])
    check("the recording downloads (200, WAV)", code == 200 and body[:4] == b"RIFF", (code, body[:12]))
    ctx.recording = (chunk["contentLocation"], body)
    rate, data_len = struct.unpack("<I", body[24:28])[0], struct.unpack("<I", body[40:44])[0]
    samples = struct.unpack(f"<{data_len // 2}h", body[44 : 44 + data_len - data_len % 2])
    caller_level, agent_level = goertzel(samples, rate, CALLER_HZ), goertzel(samples, rate, AGENT_HZ)
    print(f"     recording: {len(samples) / rate:.1f} s at {rate} Hz; caller {CALLER_HZ} Hz {caller_level:.0f}, agent {AGENT_HZ} Hz {agent_level:.0f}")
    check("the recording holds the caller's tone (amplitude > 1000)", caller_level > 1000, caller_level)
    check("the recording holds the agent's tone (amplitude > 1000)", agent_level > 1000, agent_level)

    # Billing: the recorded minutes are a priced usage record of the call.
    def recording_usage():
        day, after = (time.strftime("%Y-%m-%d", time.gmtime(time.time() + d * 86400)) for d in (0, 2))
        code, _, body = signed_request(ctx, "GET", f"{ctx.base_url}/usage?from={day}&to={after}")
        rows = json.loads(body)["value"] if code == 200 else []
        return next((r for r in rows if r["ParticipantId"] == rid), None)

    row = ctx.rx.wait("the recording's usage record", recording_usage)
    recorded_ms = len(samples) * 1000 / rate
    check("the recording is billed: UsageType CallRecordingMixedAudio, its recorded time, priced", row["UsageType"] == "CallRecordingMixedAudio" and row["CorrelationId"] == call_id and abs(row["DurationMs"] - recorded_ms) <= 100 and float(row["CostUsd"]) > 0, (row, recorded_ms))

    # 6. Hang up for everyone.
    agent.hang_up(is_for_everyone=True)
    ctx.rx.event("AGENT", "CallDisconnected")

    # Every callback carries a JWT that verifies against the published JWKS (PyJWT).
    import jwt
    import ssl

    resource = users["bot"].split(":")[2].rsplit("_", 1)[0]
    jwks = jwt.PyJWKClient(f"{ctx.base_url}/calling/keys", ssl_context=ssl.create_default_context(cafile=ctx.ca_file))
    tokens = [a for leg, a in ctx.rx.authorizations if leg == "IVR"]
    claims = []
    for header in tokens:
        token = header.removeprefix("Bearer ")
        claims.append(jwt.decode(token, jwks.get_signing_key_from_jwt(token).key, algorithms=["RS256"], audience=resource, issuer=ctx.base_url))
    check("every IVR callback's JWT verifies (RS256, JWKS at /calling/keys, aud = resource, iss = server)", len(claims) == len(ctx.rx.callbacks["IVR"]) and len({c["jti"] for c in claims}) == len(claims), claims[:1])
    forged = tokens[0].removeprefix("Bearer ")[:-4] + ("AAAA" if not tokens[0].endswith("AAAA") else "BBBB")
    try:
        jwt.decode(forged, jwks.get_signing_key_from_jwt(forged).key, algorithms=["RS256"], audience=resource, issuer=ctx.base_url)
        check("a tampered callback JWT is refused", False)
    except jwt.InvalidSignatureError:
        check("a tampered callback JWT is refused", True)

    # Every callback once, in order, with its operationContext.
    expected = {
        "IVR": [("CallConnected", "ivr-answer"), ("PlayStarted", "welcome"), ("PlayCompleted", "welcome"), ("RecognizeCompleted", "pin"), ("CallTransferAccepted", "to-agent"), ("CallDisconnected", None)],
        "AGENT": [("CallConnected", "agent-answer"), ("PlayStarted", "agent-tone"), ("PlayCompleted", "agent-tone"), ("CallDisconnected", None)],
        "rec": [("RecordingStateChanged", None), ("RecordingStateChanged", None)],
    }
    for leg, events in expected.items():
        check(f"{leg}: every callback once, in order, with its operationContext", sequence(ctx.rx, leg) == events, sequence(ctx.rx, leg))
        ids = [raw["id"] for _, raw, _ in ctx.rx.callbacks[leg]]
        check(f"{leg}: no callback delivered twice", len(ids) == len(set(ids)), ids)


def run(binary):
    receiver = Receiver()
    caller = None
    try:
        with tempfile.TemporaryDirectory(prefix="palaver-ca-proof-") as data_dir:
            os.environ["PALAVER_CONFIG"] = config_file(data_dir, receiver)
            with palaver(binary, data_dir) as (base_url, conn_str, ca_file):
                identity = CommunicationIdentityClient.from_connection_string(conn_str, connection_verify=ca_file)
                users = {n: identity.create_user().properties["id"] for n in ["caller", "bot", "agent"]}
                token = identity.get_token(ident(users["caller"]), [CommunicationTokenScope.VOIP]).token
                ctx = Ctx(conn_str, ca_file, receiver, users, base_url, identity)
                caller = Caller(binary, base_url, ca_file, token)
                scenario(ctx, caller)
                caller.close()
                caller = None
            # After a restart the recording is still there under its id.
            with palaver(binary, data_dir) as (base_url, conn_str, ca_file):
                location, first = ctx.recording
                ctx = Ctx(conn_str, ca_file, receiver, users, base_url, identity)
                url = base_url + urllib.parse.urlparse(location).path
                code, _, again = signed_request(ctx, "GET", url)
                check("after a restart the recording downloads by its id, the same bytes", code == 200 and again == first, (code, len(again), len(first)))
                code, _, _ = signed_request(ctx, "DELETE", url.rsplit("/", 1)[0] + "/deletedata")
                check("after a restart it is deletable (200), then gone (404)", code == 200 and signed_request(ctx, "GET", url)[0] == 404, code)
    finally:
        if caller:
            caller.close()
        os.environ.pop("PALAVER_CONFIG", None)
        receiver.close()


if __name__ == "__main__":
    sys.exit(run_main(run, "callautomation proof", __doc__.splitlines()[0]))
