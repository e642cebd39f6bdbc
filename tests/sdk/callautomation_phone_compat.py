#!/usr/bin/env python3
"""Compatibility test: the official `azure-communication-callautomation` 1.6.0 SDK adds phone numbers to a group call through palaver's SIP trunk.

palaver runs with a SIP trunk whose carrier is SIPp (Debian `sip-tester`, installed by `make
prereqs`) playing the called phone's side (`tests/sipp/uas_*.xml`), one call per SIPp run; the
webhook receiver of `callautomation_compat.py` records the callbacks. The application joins a
group call with `connect_call` and then, with the SDK only:

  1. busy: add_participant(+14255550123, source_caller_id_number=<owned>) -> SIPp answers 486
     -> AddParticipantFailed 486/560486 with sipDetails (as ACS reports a direct-routing failure)
  2. cancel: the phone rings (180) -> cancel_add_participant_operation -> SIPp receives CANCEL
     (its scenario fails otherwise) -> CancelAddParticipantSucceeded
  3. ring timeout: invitation_timeout=2 -> SIPp receives CANCEL -> AddParticipantFailed 408/8587
  4. answered: SIPp answers with this script's UDP socket as the phone's RTP ->
     ParticipantsUpdated (the phone in the roster), AddParticipantSucceeded, list_participants;
     media both ways: the phone hears the application's 440 Hz prompt (play_media) and the
     phone's RFC 4733 digit reaches start_recognizing_media (RecognizeCompleted "five");
     remove_participant -> palaver's BYE (SIPp takes it); the phone's minutes are a PSTN usage
     record (outbound, the trunk, the presented number)
  5. refusals: a room without pstnDialOutEnabled is 403/8523
  6. transfer from a 1:1 call: an ACS user (a WebSocket client) calls the application's identity
     -> IncomingCall -> answer_call -> transfer_call_to_participant(+14255550123,
     source_caller_id_number=<owned>) -> SIPp answers -> CallTransferAccepted (the phone), then
     CallDisconnected; the caller sees the phone join its call, the phone receives the call's
     media; the caller hangs up -> palaver's BYE (SIPp takes it)

Usage: callautomation_phone_compat.py [--binary PATH]   (default: $PALAVER_BIN or target/debug/palaver)
"""

import glob
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from azure.communication.callautomation import (
    CallAutomationClient,
    FileSource,
    PhoneNumberIdentifier,
)
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope

import callautomation_compat as ca
from identity_compat import check, palaver, run_main

SIPP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sipp")
OWNED = "+14255550100"
NUMBER = "+14255550123"
PHONE_RAW = f"4:{NUMBER}"
PROMPT_HZ = 440.0

# The prompt the application plays to the group call (the phone must hear it).
ca.MEDIA["/media/phone_prompt.wav"] = ca.wav_tone(PROMPT_HZ, 4.0, rate=8000)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Carrier:
    """SIPp on the trunk's address, playing one called phone with `scenario`."""

    def __init__(self, workdir, port, scenario, extra=()):
        self.workdir = workdir
        self.proc = subprocess.Popen(
            ["sipp", "-sf", os.path.join(SIPP_DIR, scenario), "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin",
             "-timeout", "30s", "-timeout_error", "-trace_err", *extra],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # listening before palaver dials

    def finished(self, what):
        try:
            out, err = self.proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        check(f"SIPp: {what}", self.proc.returncode == 0, f"exit {self.proc.returncode}\n{out[-2000:]}\n{err[-2000:]}")

    def logged(self, marker):
        """What the scenario's `<log>` wrote after `marker` (waits up to 20 s)."""
        deadline = time.time() + 20
        while time.time() < deadline:
            for path in glob.glob(os.path.join(self.workdir, "*_logs.log")):
                with open(path) as f:
                    text = f.read()
                if marker in text:
                    return text.split(marker, 1)[1].split()[0]
            time.sleep(0.05)
        raise AssertionError(f"SIPp never logged {marker}")


def ulaw_encode(sample):
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), 32635) + 0x84
    exponent = 7
    while exponent > 0 and not sample & (0x4000 >> (7 - exponent)):
        exponent -= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_decode(byte):
    byte = ~byte & 0xFF
    sample = (((byte & 0x0F) << 3) + 0x84) << ((byte & 0x70) >> 4)
    return (0x84 - sample) if byte & 0x80 else (sample - 0x84)


def tone_level(samples, hz, rate=8000):
    """Goertzel amplitude of `hz` in `samples`."""
    if not samples:
        return 0.0
    k = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    return 2 * math.sqrt(max(power, 0.0)) / len(samples)


class Phone:
    """The called phone's RTP: sends µ-law silence-level noise (keeps the path open) and an
    RFC 4733 digit on demand; decodes what palaver sends."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.005)
        self.port = self.sock.getsockname()[1]
        self.heard = []
        self.to = None
        self.digit = None
        self.stop = threading.Event()
        self.thread = None

    def start(self, palaver_port):
        self.to = ("127.0.0.1", palaver_port)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def press(self, digit):
        self.digit = digit

    def _run(self):
        seq, ts, n = 1000, 8000, 0
        next_at = time.time()
        while not self.stop.is_set():
            if self.digit is not None:
                digit, self.digit = self.digit, None
                for i in range(6):
                    end = 0x80 if i >= 3 else 0
                    marker = 0x80 if i == 0 else 0
                    packet = struct.pack(">BBHII", 0x80, marker | 101, seq, ts, 0x00D73F01) + bytes([digit, end | 10]) + struct.pack(">H", 160 * (min(i, 3) + 1))
                    self.sock.sendto(packet, self.to)
                    seq = (seq + 1) & 0xFFFF
                    time.sleep(0.02)
                ts += 640
            payload = bytes(ulaw_encode(int(200 * math.sin(2 * math.pi * 1000 * (n + i) / 8000))) for i in range(160))
            self.sock.sendto(struct.pack(">BBHII", 0x80, 0, seq, ts, 0x00C0FFEE) + payload, self.to)
            seq, ts, n = (seq + 1) & 0xFFFF, ts + 160, n + 160
            next_at += 0.02
            while time.time() < next_at:
                try:
                    data, _ = self.sock.recvfrom(2048)
                except (socket.timeout, BlockingIOError):
                    continue
                if len(data) > 12 and data[0] >> 6 == 2 and data[1] & 0x7F == 0:
                    self.heard.extend(ulaw_decode(b) for b in data[12:])

    def close(self):
        self.stop.set()
        if self.thread:
            self.thread.join(timeout=2)
        self.sock.close()


def config_file(directory, receiver, carrier_port):
    path = os.path.join(directory, "palaver.toml")
    with open(path, "w") as f:
        f.write(
            "[signaling.calls]\n"
            "allow_phone_targets = true\n"
            "ring_timeout_secs = 20\n\n"
            "[media]\n"
            "workers = 1\n\n"
            "[sip]\n"
            'listen = "127.0.0.1:0"\n'
            "options_interval_secs = 0\n\n"
            "[[sip.trunks]]\n"
            'name = "carrier"\n'
            f'address = "127.0.0.1:{carrier_port}"\n'
            'allow_from = ["127.0.0.1"]\n'
            'codecs = ["PCMU"]\n\n'
            "[[phone_numbers]]\n"
            f'number = "{OWNED}"\n'
            'route = "call-automation"\n\n'
            "[[events.subscriptions]]\n"
            'name = "cc-backend"\n'
            f'endpoint = "{receiver.base}/incoming"\n'
            'event_types = ["Microsoft.Communication.IncomingCall"]\n'
        )
    return path


def run(binary):
    receiver = ca.Receiver()
    carrier_port = free_udp_port()
    try:
        with tempfile.TemporaryDirectory(prefix="palaver-ca-phone-") as data_dir:
            os.environ["PALAVER_CONFIG"] = config_file(data_dir, receiver, carrier_port)
            sipp_dir = os.path.join(data_dir, "sipp")
            os.makedirs(sipp_dir)
            with palaver(binary, data_dir) as (base_url, conn_str, ca_file):
                print(f"palaver at {base_url}, carrier (SIPp) on 127.0.0.1:{carrier_port}")
                identity = CommunicationIdentityClient.from_connection_string(conn_str, connection_verify=ca_file)
                users = {n: identity.create_user().properties["id"] for n in ["alice", "ivr"]}
                ctx = ca.Ctx(conn_str, ca_file, receiver, users, base_url, identity)
                steps(ctx, sipp_dir, carrier_port)
                transfer_from_a_one_to_one_call(ctx, sipp_dir, carrier_port)
    finally:
        os.environ.pop("PALAVER_CONFIG", None)
        receiver.close()


def steps(ctx, sipp_dir, carrier_port):
    rx = ctx.rx
    client = CallAutomationClient.from_connection_string(ctx.conn_str, connection_verify=ctx.ca_file)
    group = "6c5c2a6e-2222-4a5b-9c6d-00000000c0de"
    props = client.connect_call(callback_url=rx.callback_url("G"), group_call_id=group, operation_context="g1")
    rx.event("G", "CallConnected")
    conn = client.get_call_connection(props.call_connection_id)
    phone_id = PhoneNumberIdentifier(NUMBER)

    print("-- 1. busy")
    carrier = Carrier(sipp_dir, carrier_port, "uas_busy.xml")
    added = conn.add_participant(phone_id, source_caller_id_number=PhoneNumberIdentifier(OWNED), operation_context="busy")
    check("add_participant of a phone answers an invitation id", bool(added.invitation_id) and added.operation_context == "busy", added)
    failed = rx.event("G", "AddParticipantFailed")
    result = failed.data["resultInformation"]
    check(
        "486 from the trunk is AddParticipantFailed 486/560486 with sipDetails",
        (result["code"], result["subCode"], result.get("sipDetails", {}).get("code")) == (486, 560486, 486)
        and failed.data["operationContext"] == "busy" and failed.data["invitationId"] == added.invitation_id
        and failed.data["participant"]["rawId"] == PHONE_RAW,
        failed.data,
    )
    carrier.finished("the busy phone was dialled through the trunk")

    print("-- 2. cancel")
    carrier = Carrier(sipp_dir, carrier_port, "uas_cancel.xml")
    added = conn.add_participant(phone_id, operation_context="cancel")
    time.sleep(1.0)  # the phone rings (180)
    canceled = conn.cancel_add_participant_operation(added.invitation_id, operation_context="c1")
    check("cancel_add_participant_operation answers the invitation id", canceled.invitation_id == added.invitation_id, canceled)
    event = rx.event("G", "CancelAddParticipantSucceeded")
    check("CancelAddParticipantSucceeded (c1, the invitation)", event.data["operationContext"] == "c1" and event.data["invitationId"] == added.invitation_id, event.data)
    carrier.finished("the ringing phone received CANCEL (487, ACK)")

    print("-- 3. ring timeout")
    carrier = Carrier(sipp_dir, carrier_port, "uas_cancel.xml")
    started = time.time()
    added = conn.add_participant(phone_id, invitation_timeout=2, operation_context="timeout")
    failed = rx.event("G", "AddParticipantFailed", nth=1)
    result = failed.data["resultInformation"]
    check(
        "not answered within invitationTimeoutInSeconds: AddParticipantFailed 408/8587 after ~2 s",
        (result["code"], result["subCode"]) == (408, 8587) and failed.data["operationContext"] == "timeout" and 1.5 < time.time() - started < 10,
        failed.data,
    )
    carrier.finished("the phone that was not answered in time received CANCEL")

    print("-- 4. answered")
    phone = Phone()
    carrier = Carrier(sipp_dir, carrier_port, "uas_answer_rtp.xml", ["-trace_logs", "-set", "rtp_port", str(phone.port)])
    try:
        added = conn.add_participant(phone_id, source_caller_id_number=PhoneNumberIdentifier(OWNED), operation_context="answer")
        succeeded = rx.event("G", "AddParticipantSucceeded")
        check(
            "the phone answered: AddParticipantSucceeded (answer, the invitation, the phone)",
            succeeded.data["operationContext"] == "answer" and succeeded.data["invitationId"] == added.invitation_id
            and succeeded.data["participant"]["rawId"] == PHONE_RAW,
            succeeded.data,
        )
        names = rx.names("G")
        at = names.index("AddParticipantSucceeded")
        roster = [e for e, _, _ in rx.callbacks["G"] if e.type.endswith("ParticipantsUpdated")][-1]
        check(
            "ParticipantsUpdated lists the phone before AddParticipantSucceeded",
            names[at - 1] == "ParticipantsUpdated" and any(p["identifier"]["rawId"] == PHONE_RAW for p in roster.data["participants"]),
            names,
        )
        listed = [p.identifier.raw_id for p in conn.list_participants()]
        check("list_participants has the phone", PHONE_RAW in listed, listed)
        palaver_port = int(carrier.logged("SERVER_RTP_PORT "))
        phone.start(palaver_port)
        conn.play_media(FileSource(f"{rx.base}/media/phone_prompt.wav"), operation_context="prompt")
        rx.event("G", "PlayCompleted")
        heard = phone.heard[len(phone.heard) // 4:]
        level, own = tone_level(heard, PROMPT_HZ), tone_level(heard, 1000.0)
        print(f"  the phone heard the prompt's {PROMPT_HZ:.0f} Hz at {level:.0f} ({len(heard)} samples; its own 1 kHz at {own:.0f})")
        check("media to the phone: it hears the application's prompt in the group call's mix", level > 300, level)
        conn.start_recognizing_media(
            input_type="dtmf", target_participant=phone_id, dtmf_max_tones_to_collect=1, initial_silence_timeout=10, operation_context="menu"
        )
        time.sleep(0.5)
        phone.press(5)
        recognized = rx.event("G", "RecognizeCompleted")
        check("media from the phone: its RFC 4733 digit reaches recognize", recognized.data["dtmfResult"]["tones"] == ["five"], recognized.data)
        conn.remove_participant(phone_id, operation_context="bye")
        removed = rx.event("G", "RemoveParticipantSucceeded")
        check("remove_participant of the phone (bye)", removed.data["operationContext"] == "bye", removed.data)
        carrier.finished("the answered phone was hung up by palaver (BYE)")
    finally:
        phone.close()

    def pstn_usage():
        day, after = (time.strftime("%Y-%m-%d", time.gmtime(time.time() + d * 86400)) for d in (0, 2))
        code, _, body = ca.signed_request(ctx, "GET", f"{ctx.base_url}/usage?from={day}&to={after}")
        rows = [r for r in json.loads(body)["value"] if r["UsageType"] == "PSTN"] if code == 200 else []
        return rows or None

    rows = rx.wait("the PSTN usage record", pstn_usage)
    row = rows[0]
    check(
        "the added phone's minutes are a PSTN record: outbound, the trunk, the presented number",
        (row["UserIdA"], row.get("Direction"), row.get("Trunk"), row.get("PhoneNumber")) == (PHONE_RAW, "outbound", "carrier", OWNED)
        and row["DurationMs"] > 0,
        rows,
    )

    print("-- 5. refusals")
    room_ok = True
    try:
        from azure.communication.rooms import RoomsClient

        rooms = RoomsClient.from_connection_string(ctx.conn_str, connection_verify=ctx.ca_file)
        room = rooms.create_room(pstn_dial_out_enabled=False)
    except ImportError:
        room_ok = False
    if room_ok:
        props = client.connect_call(callback_url=rx.callback_url("R"), room_id=room.id, operation_context="r1")
        rx.event("R", "CallConnected")
        ca.expect_error(
            "add_participant of a phone in a room without pstnDialOutEnabled",
            lambda: client.get_call_connection(props.call_connection_id).add_participant(phone_id),
            403,
            "8523",
        )
    conn.hang_up(is_for_everyone=True)
    rx.event("G", "CallDisconnected")
    check("CallDisconnected is the group connection's last callback", rx.names("G")[-1] == "CallDisconnected", rx.names("G"))


def transfer_from_a_one_to_one_call(ctx, sipp_dir, carrier_port):
    print("-- 6. transfer from a 1:1 call to a phone number")
    rx = ctx.rx
    token = ctx.identity.get_token(ca.ident(ctx.users["alice"]), [CommunicationTokenScope.VOIP]).token
    ws = ca.WsClient(ctx.base_url, ctx.ca_file, token)
    phone = Phone()
    carrier = Carrier(sipp_dir, carrier_port, "uas_answer_rtp.xml", ["-trace_logs", "-set", "rtp_port", str(phone.port)])
    try:
        ws.wait_for("welcome")
        ws.send({"type": "call.place", "requestId": "t1", "targets": [ctx.users["ivr"]]})
        call_id = ws.wait_for("call.placed")["callId"]
        _, props = ctx.answer("T", ctx.users["ivr"], "t-answer")
        rx.event("T", "CallConnected")
        ws.wait_for("call.connected")
        conn = ctx.app().get_call_connection(props.call_connection_id)
        result = conn.transfer_call_to_participant(
            PhoneNumberIdentifier(NUMBER), source_caller_id_number=PhoneNumberIdentifier(OWNED), operation_context="to-phone"
        )
        check("transfer_call_to_participant of a phone echoes operationContext", result.operation_context == "to-phone", vars(result))
        accepted = rx.event("T", "CallTransferAccepted")
        check(
            "CallTransferAccepted names the phone (to-phone)",
            accepted.data["transferTarget"]["rawId"] == PHONE_RAW and accepted.data["operationContext"] == "to-phone",
            accepted.data,
        )
        rx.event("T", "CallDisconnected")
        check("the 1:1 connection's last callbacks: CallTransferAccepted, CallDisconnected", rx.names("T")[-2:] == ["CallTransferAccepted", "CallDisconnected"], rx.names("T"))
        joined = ws.wait_for("call.participantJoined")
        check("the caller sees the phone join its call", joined["callId"] == call_id and joined["participant"]["rawId"] == PHONE_RAW, joined)
        phone.start(int(carrier.logged("SERVER_RTP_PORT ")))
        time.sleep(1.0)
        check("the phone receives the call's media", len(phone.heard) >= 160 * 20, len(phone.heard))
        ws.send({"type": "call.hangUp", "callId": call_id})
        ws.wait_for("call.ended")
        carrier.finished("the phone the 1:1 call was transferred to, hung up by palaver when the caller left (BYE)")
    finally:
        phone.close()
        ws.close()


if __name__ == "__main__":
    sys.exit(run_main(run, "callautomation phone", __doc__.splitlines()[0]))
