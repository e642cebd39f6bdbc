#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/<target>/ from real inputs: the packets
and frames palaver's own tests build (crates/sfu/src/rtp/rtcp_tests.rs, srtp/context/tests.rs,
worker/stun.rs, crates/core/src/protocol/mod.rs), Chromium's SDP offers captured in
crates/sfu/tests/fixtures/, the published RFC vectors (RFC 5769 STUN, RFC 7714 SRTP), the
signaling examples in docs/signaling.md and the ACS SDK's HMAC request shape
(tests/sdk/identity_compat.py). Each seed's first byte is the target's selector where the
target has one (see its module doc). Run from anywhere: python3 fuzz/seeds.py"""
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def h(s):
    return bytes.fromhex(re.sub(r"\s+", "", s))


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def be32(v):
    return struct.pack(">I", v)


# RTP: the audio packet of benches/benches/srtp.rs and srtp/context/tests.rs (one-byte
# extension block with audio level), a two-byte-extension packet, CSRCs + padding.
audio = bytes([0x90, 111, 0, 1, 0, 0, 0x30, 0x39, 1, 2, 3, 4, 0xBE, 0xDE, 0, 1, 0x10, 0xA8, 0, 0]) + bytes(range(100))
two_byte = bytes([0x90, 96, 0, 2, 0, 0, 0, 9, 0, 0, 0, 7, 0x10, 0x00, 0, 2, 3, 2, 0x12, 0x34, 4, 1, b"0"[0], 0]) + b"\x10\x02\x00\x9d\x01\x2a"
csrc_pad = bytes([0xA2, 0x80 | 111, 0, 3, 0, 0, 1, 0, 0, 0, 0, 5]) + be32(11) + be32(12) + b"opus" + bytes([0, 0, 3])
# RFC 7714 section 16 plaintext RTP packet.
rfc7714_rtp = h("8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573")
for i, p in enumerate([audio, two_byte, csrc_pad, rfc7714_rtp]):
    write("rtp_packet", f"seed-{i}", p)
    write("rtp_extensions", f"seed-{i}", bytes([0x21 * (i + 1) & 0xFF]) + p)

# RTCP: sr_rr_sdes_bye, REMB, transport-cc and NACK/PLI/FIR from rtcp_tests.rs.
sr = bytes([0x81, 200, 0, 12]) + be32(1) + bytes([0, 0, 0, 2, 0, 0, 0, 3]) + be32(4) + be32(5) + be32(6)
sr += bytes([0, 0, 0, 9, 25, 0, 0, 7, 0, 0, 1, 0, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5])
compound = sr + bytes([0x80, 201, 0, 1, 0, 0, 0, 1]) + bytes([0x81, 202, 0, 3, 0, 0, 0, 1, 1, 2, ord("a"), ord("b"), 0, 0, 0, 0]) + bytes([0x81, 203, 0, 1, 0, 0, 0, 1])
mantissa = 125000
remb = bytes([0x8F, 206, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]) + b"REMB" + bytes([2, (3 << 2) | ((mantissa >> 16) & 3)]) + struct.pack(">H", mantissa & 0xFFFF) + be32(7) + be32(8)
fci = bytes([0, 100, 0, 20, 0, 0, 2, 5]) + struct.pack(">H", 0x2000 | 10)
fci += struct.pack(">H", 0xC000 | (2 << 12) | (1 << 8) | (1 << 6) | (1 << 4) | (1 << 2) | 1) + struct.pack(">H", 3)
fci += bytes([4] * 10) + struct.pack(">h", -8) + bytes([1] * 5)
fci += bytes((-len(fci)) % 4)
twcc = bytes([0x8F, 205]) + struct.pack(">H", (12 + len(fci)) // 4 - 1) + bytes([0, 0, 0, 1, 0, 0, 0, 2]) + fci
nack = bytes([0x81, 205, 0, 3]) + be32(1) + be32(4) + struct.pack(">HH", 10, 0b11)
pli = bytes([0x81, 206, 0, 2]) + be32(1) + be32(2)
fir = bytes([0x84, 206, 0, 4]) + be32(1) + be32(0) + be32(3) + bytes([9, 0, 0, 0])
for i, p in enumerate([compound, remb, twcc, nack + pli + fir, sr + remb]):
    write("rtcp_compound", f"seed-{i}", p)

# SRTP/SRTCP: selector (profile, RTP/RTCP) + the RFC 7714 protected packets and plain packets.
rfc7714_srtp = h("8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce")
rfc7714_srtcp = h("81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872 45d9eade 800005d4")
write("srtp_unprotect", "rfc7714-srtp", bytes([2]) + rfc7714_srtp)
write("srtp_unprotect", "rfc7714-srtcp", bytes([0x80 | 2]) + rfc7714_srtcp)
write("srtp_unprotect", "audio-aes-cm", bytes([0]) + audio)
write("srtp_unprotect", "rtcp-aes-cm-32", bytes([0x80 | 1]) + compound)

# STUN: RFC 5769 section 2.1 sample request (as in worker/stun.rs's test).
write("stun_binding", "rfc5769-request", h(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74"
    "002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014"
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf"))
write("stun_binding", "generated", bytes(range(12)) + b"VOkJxbRl1RmTxUk/WvJxBt\xffevtj:h6vY")

# DTLS: raw mode with an empty datagram list, and the real-handshake mode (high bit) with
# flights passed through, corrupted, truncated and dropped.
write("dtls_record", "raw", bytes([0, 0, 13]) + bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
write("dtls_record", "handshake-clean", bytes([0x80, 0, 0, 0, 0, 0, 0, 0, 0]))
write("dtls_record", "handshake-mangled", bytes([0x80, 1, 5, 0x40, 2, 9, 4]) + b"\x16\xfe\xfd\xff" + bytes([0, 0, 0]))

# SDP: Chromium offers captured in the sfu fixtures.
for name in ["chromium_offer.sdp", "chromium_offer_simulcast.sdp"]:
    with open(os.path.join(ROOT, "crates", "sfu", "tests", "fixtures", name), "rb") as f:
        write("sdp_offer", name, f.read())

# Opus TOC: the mixer's 20 ms configs in each mode, code 0..3 packets.
for i, p in enumerate([bytes([0x78, 1, 2]), bytes([0xFC, 0xFF, 0xFE]), bytes([0x0B, 0x83, 7]), bytes([0x63, 0x02, 1, 2]), bytes([0x49])]):
    write("opus_toc", f"seed-{i}", p)

# Signaling JSON: one sample per client message type (protocol/mod.rs's type_list test) and
# docs/signaling.md examples, plus the QUIC auth frame.
samples = [
    {"type": "ping", "nonce": 7},
    {"type": "join", "requestId": "j1", "displayName": "Bob", "target": {"kind": "groupCall", "groupId": "0b8e6a4c-3c55-4c1c-9a43-7f2f1e6b9d10"}},
    {"type": "join", "target": {"kind": "meetingCode", "meetingCode": "418203557120", "passcode": "Xk7pQ2"}},
    {"type": "join", "target": {"kind": "room", "roomId": "99463745729485123"}},
    {"type": "resume", "conversationId": "c", "participantId": "p", "resumeToken": "t"},
    {"type": "leave"},
    {"type": "token.refresh", "token": "x"},
    {"type": "lobby.admit", "requestId": "a1", "participantId": "p"},
    {"type": "participant.setRole", "participantId": "p", "role": "presenter"},
    {"type": "self.mute", "muted": True},
    {"type": "meeting.updatePolicy", "policy": {"lobbyBypass": "everyone"}},
    {"type": "dialOut", "phoneNumber": "+14255550123"},
    {"type": "media.offer", "sdp": "v=0", "callId": "c"},
    {"type": "media.iceCandidate", "candidate": {"candidate": "candidate:1", "sdpMid": "0"}},
    {"type": "media.attach", "tracks": [{"kind": "audio", "ssrc": 7, "payloadType": 111}]},
    {"type": "media.subscribe", "slots": [{"mid": "3", "maxHeight": 360}, {"mid": "4", "paused": True}]},
    {"type": "call.place", "targets": ["8:orgid:b"]},
    {"type": "call.transfer", "callId": "c", "target": "28:orgid:support"},
    {"type": "auth", "token": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"},
]
for i, s in enumerate(samples):
    write("signaling_frame", f"seed-{i}", json.dumps(s, separators=(",", ":")))

# QUIC stream framing: selector, then payloads separated by 0xFF (the target frames them).
write("stream_frame", "frames", bytes([0x81]) + b'{"type":"auth","token":"t"}\xff{"type":"ping"}\xff')
write("stream_frame", "small-limit", bytes([0x10]) + b"0123456789abcdefghij\xffok")
write("stream_frame", "raw-prefix", bytes([0x05]) + be32(3) + b'{"}' + be32(0))

# Access tokens: raw token text, a signed header/payload pair, a grant.
header = b'{"alg":"EdDSA","typ":"JWT","kid":"k"}'
claims = b'{"skypeid":"acs:r_1","scp":1792,"csi":"1","iat":1,"exp":1900000000,"acsScope":"voip","resourceId":"fuzz-resource","resourceLocation":"europe","jti":"j","iatms":1000}'
write("access_token", "raw", bytes([0]) + b"eyJhbGciOiJFZERTQSJ9.eyJleHAiOjF9.AAAA")
write("access_token", "signed", bytes([1]) + header + b"\xff" + claims)
write("access_token", "grant", bytes([2, 0x0F]) + struct.pack(">q", 1_900_000_000_000) + bytes([0]) + b"Ada\xff\xff8:acs:r_0001")

# IdP tokens: raw, and claims all valid / some absent / some from the input.
write("idp_token", "raw", bytes([0]) + b"eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ4In0.c2ln")
write("idp_token", "valid-claims", bytes([1] + [0] * 10) + b"0d0d0d0d-0000-4000-8000-0000000a0001\xff00000000-0000-4000-8000-000000000001")
write("idp_token", "odd-claims", bytes([1, 0, 0, 3]) + struct.pack(">q", 2**62) + bytes([1, 0, 2]) + b"x\xff" + bytes([0, 0, 0, 0]))

# HMAC: the SDK's request shape (identity_compat.py signs POST /identities like this).
write("hmac_header", "forged", bytes([0, 1]) + b"/identities?api-version=2023-10-01\xfflocalhost:8443\xff"
      b"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=AAAA\xff"
      b"Fri, 15 Jan 2027 08:00:00 GMT\xff\xff47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\xfflocalhost:8443\xff{}")
write("hmac_header", "signed", bytes([1, 1]) + b"/identities?api-version=2023-10-01\xfflocalhost:8443\xff" + struct.pack(">h", 30) + b'{"createTokenWithScopes":["voip"]}')
# Chat request bodies: the wire shapes the SDK sends (reference §2.3), html with markup to strip.
write("chat_request", "create", '{"topic": "t", "participants": [{"communicationIdentifier": {"rawId": "8:acs:res_u1", "communicationUser": {"id": "8:acs:res_u1"}}, "displayName": "A", "shareHistoryTime": "2026-01-01T00:00:00.000Z"}]}')
write("chat_request", "send-html", '{"content": "<b>hi</b><img src=x onerror=alert(1)><br/>&amp;&", "senderDisplayName": "A", "type": "html", "metadata": {"k": "v"}}')
write("chat_request", "update", '{"content": "edited", "metadata": {"a": ""}}')
write("chat_request", "remove", '{"rawId": "8:orgid:0a000000-0000-4000-8000-000000000001", "microsoftTeamsUser": {"userId": "0a000000-0000-4000-8000-000000000001"}}')
write("chat_request", "receipt", '{"chatMessageId": "1700000000000"}')
# SIP from trunks (sip_message, trunk_sdp): every message the SIPp scenarios of tests/sipp/
# send (the carrier side of the e2e tests), with SIPp's keywords filled in as SIPp fills them
# (CRLF line ends, Content-Length of the body); each as one UDP datagram (selector 0) and as a
# TCP stream (selector 1), plus two messages back to back on one stream, and their SDP bodies.
import glob
import html


def sipp_messages(path):
    text = open(path, encoding="iso-8859-1").read()
    for block in re.findall(r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>", text, re.S):
        lines = [l.strip() for l in block.strip("\n").split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        if "" in lines:
            i = lines.index("")
            head, body = lines[:i], lines[i + 1:]
        else:
            head, body = lines, []
        body = "".join(l + "\r\n" for l in body)
        values = {
            "service": "+14255550100", "remote_ip": "127.0.0.1", "remote_port": "5060",
            "local_ip": "127.0.0.1", "local_port": "5062", "transport": "UDP", "branch": "z9hG4bK-1",
            "branch-3": "z9hG4bK-3", "branch-4": "z9hG4bK-4", "pid": "4242", "call_number": "1",
            "call_id": "1-4242@127.0.0.1", "local_ip_type": "4", "media_ip_type": "4",
            "media_ip": "127.0.0.1", "media_port": "6000", "peer_tag_param": ";tag=palaver-1",
            "last_Via:": "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-p", "last_From:": 'From: <sip:+14255550199@127.0.0.1>;tag=a',
            "last_To:": "To: <sip:+14255550100@127.0.0.1>;tag=b", "last_Call-ID:": "Call-ID: 1-4242@127.0.0.1",
            "last_CSeq:": "CSeq: 1 INVITE", "cseq": "1", "len": str(len(body.encode())),
        }
        out = []
        for line in head:
            if line.startswith("[authentication"):
                line = ('Authorization: Digest username="palaver", realm="palaver", nonce="NONCE", '
                        'uri="sip:+14255550100@127.0.0.1:5060", response="0123456789abcdef0123456789abcdef", algorithm=MD5')
            line = re.sub(r"\[([A-Za-z_:\-0-9]+)\]", lambda m: values.get(m.group(1), m.group(0)), line)
            out.append(line)
        yield html.unescape("".join(l + "\r\n" for l in out) + "\r\n" + body), body


sip_all = []
for path in sorted(glob.glob(os.path.join(ROOT, "tests", "sipp", "*.xml"))):
    name = os.path.splitext(os.path.basename(path))[0]
    for i, (message, body) in enumerate(sipp_messages(path)):
        sip_all.append(message)
        write("sip_message", f"sipp-{name}-{i}-udp", b"\x00" + message.encode("latin-1"))
        write("sip_message", f"sipp-{name}-{i}-tcp", b"\x01" + message.encode("latin-1"))
        if body.strip():
            write("trunk_sdp", f"sipp-{name}-{i}", body)
write("sip_message", "tcp-two-messages-and-keepalive", b"\x01" + "\r\n\r\n".join([sip_all[0], sip_all[1]]).encode("latin-1"))

print("seeds written to", OUT)
