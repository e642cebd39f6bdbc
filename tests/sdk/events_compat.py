#!/usr/bin/env python3
"""Compatibility test: palaver's Event Grid deliveries parsed by the official Azure SDKs.

Starts a loopback webhook receiver and the palaver binary with a configured
`[[events.subscriptions]]` entry (Event Grid schema); adds a CloudEvents subscription through
the HMAC-authenticated REST API; creates a chat thread and sends a message with the official
chat SDK. Checks: the Event Grid validation handshake (SubscriptionValidationEvent answered
with validationResponse) and the CloudEvents OPTIONS abuse-protection handshake come before any
delivery; every Event Grid body parses with `azure.eventgrid.EventGridEvent.from_dict` and
every CloudEvents body with `azure.core.messaging.CloudEvent.from_dict`; the aeg-* headers;
the chat event data shapes; REST bad input; the JWKS and OpenID configuration documents.
(Call lifecycle events and the kill -9 durability are checked by the Rust e2e test
`tests/tests/e2e/events.rs`, which can join a call over WSS.)

Usage: events_compat.py [--binary PATH]   (default: $PALAVER_BIN or target/debug/palaver)
"""

import base64
import hashlib
import hmac
import json
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from azure.communication.chat import ChatClient, ChatParticipant, CommunicationTokenCredential
from azure.communication.identity import CommunicationIdentityClient, CommunicationTokenScope
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent

from identity_compat import check, palaver, run_main

SEEN = []
SEEN_LOCK = threading.Lock()
CHAT_TYPES = [
    "Microsoft.Communication.ChatThreadCreated",
    "Microsoft.Communication.ChatMessageReceivedInThread",
    "Microsoft.Communication.ChatMessageReceived",
]


class Receiver(BaseHTTPRequestHandler):
    """Answers the Event Grid handshake, the CloudEvents OPTIONS handshake, and 200 to the rest."""

    def log_message(self, *args):
        pass

    def _record(self, body):
        with SEEN_LOCK:
            SEEN.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))

    def do_OPTIONS(self):  # noqa: N802 - http.server naming
        self._record(None)
        self.send_response(200)
        self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", ""))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"null")
        self._record(body)
        if self.headers.get("aeg-event-type") == "SubscriptionValidation":
            answer = json.dumps({"validationResponse": body[0]["data"]["validationCode"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def hmac_request(base_url, ca_file, access_key, method, path, body=""):
    """(status, json) of an HMAC-SHA256 signed request, as the ACS SDKs sign them."""
    host = urllib.parse.urlparse(base_url).netloc
    date = formatdate(usegmt=True)
    content_hash = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    to_sign = f"{method}\n{path}\n{date};{host};{content_hash}"
    signature = base64.b64encode(hmac.new(base64.b64decode(access_key), to_sign.encode(), hashlib.sha256).digest()).decode()
    headers = {
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
        "Content-Type": "application/json",
    }
    req = urllib.request.Request(base_url + path, data=body.encode() if body else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca_file), timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get_json(url, ca_file):
    with urllib.request.urlopen(url, context=ssl.create_default_context(cafile=ca_file), timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def wait_for(what, condition, timeout=30):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            with SEEN_LOCK:
                raise AssertionError(f"timed out waiting for {what}; received: {[(m, p, b) for m, p, _, b in SEEN]}")
        time.sleep(0.05)


def requests_to(path):
    with SEEN_LOCK:
        return [(m, h, b) for m, p, h, b in SEEN if p == path]


def notifications(path):
    return [(h, b) for m, h, b in requests_to(path) if m == "POST" and h.get("aeg-event-type") == "Notification"]


def run(binary):
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}"
    config = (
        "[usage]\nmetrics_listen = \"127.0.0.1:0\"\n"
        "[events.delivery]\npoll_interval_ms = 50\nbase_backoff_ms = 100\n"
        "[[events.subscriptions]]\nname = \"eg-sub\"\n"
        f"endpoint = \"{hook}/eg\"\nschema = \"EventGridSchema\"\nevent_types = {json.dumps(CHAT_TYPES)}\n"
        "subject_begins_with = \"thread/\"\nsubject_ends_with = \"\"\nca_file = \"\"\n"
    )
    with tempfile.TemporaryDirectory(prefix="palaver-events-") as data_dir:
        config_path = os.path.join(data_dir, "palaver.toml")
        with open(config_path, "w") as f:
            f.write(config)
        os.environ["PALAVER_CONFIG"] = config_path
        try:
            with palaver(binary, data_dir) as (base_url, conn_str, ca_file):
                os.environ.pop("PALAVER_CONFIG", None)
                check_events(base_url, conn_str, ca_file, hook)
        finally:
            os.environ.pop("PALAVER_CONFIG", None)
            receiver.shutdown()


def check_events(base_url, conn_str, ca_file, hook):
    access_key = conn_str.split("accesskey=", 1)[1]

    # the REST API: create a CloudEvents subscription, list, bad input
    body = json.dumps({"endpoint": f"{hook}/ce", "schema": "CloudEventSchemaV1_0", "subjectBeginsWith": "thread/",
                       "eventTypes": ["Microsoft.Communication.ChatMessageReceivedInThread"]})
    status, created = hmac_request(base_url, ca_file, access_key, "PUT", "/events/subscriptions/ce-sub", body)
    check("PUT /events/subscriptions/ce-sub is 201", status == 201, f"{status} {created}")
    status, listed = hmac_request(base_url, ca_file, access_key, "GET", "/events/subscriptions")
    names = sorted(s["name"] for s in listed["value"])
    check("both subscriptions are listed", status == 200 and names == ["ce-sub", "eg-sub"], f"{listed}")
    origins = {s["name"]: s["origin"] for s in listed["value"]}
    check("origins are config and api", origins == {"eg-sub": "config", "ce-sub": "api"}, f"{origins}")
    status, err = hmac_request(base_url, ca_file, access_key, "PUT", "/events/subscriptions/bad-sub", json.dumps({"endpoint": "http://example.com/x"}))
    check("an http endpoint off loopback is 400 InvalidParameter on endpoint",
          status == 400 and err["error"]["code"] == "InvalidParameter" and err["error"].get("target") == "endpoint", f"{status} {err}")
    status, err = hmac_request(base_url, ca_file, access_key, "DELETE", "/events/subscriptions/eg-sub")
    check("a configured subscription cannot be deleted at run time (409)", status == 409 and err["error"]["code"] == "Conflict", f"{status} {err}")

    # chat events through the official chat SDK
    os.environ["REQUESTS_CA_BUNDLE"] = ca_file
    identity = CommunicationIdentityClient.from_connection_string(conn_str, connection_verify=ca_file)
    alice, alice_token = identity.create_user_and_token([CommunicationTokenScope.CHAT])
    bob, _ = identity.create_user_and_token([CommunicationTokenScope.CHAT])
    chat = ChatClient(base_url, CommunicationTokenCredential(alice_token.token))
    result = chat.create_chat_thread("events", thread_participants=[ChatParticipant(identifier=bob, display_name="Bob")])
    thread_id = result.chat_thread.id
    thread = chat.get_chat_thread_client(thread_id)
    message_id = thread.send_message("hello events", sender_display_name="Alice").id

    wait_for("three Event Grid notifications", lambda: len(notifications("/eg")) >= 3)
    wait_for("one CloudEvents notification", lambda: len(notifications("/ce")) >= 1)

    eg = requests_to("/eg")
    check("the Event Grid handshake comes first", eg[0][1].get("aeg-event-type") == "SubscriptionValidation", f"{eg[0]}")
    validation = EventGridEvent.from_dict(eg[0][2][0])
    check("the validation event parses as an EventGridEvent",
          validation.event_type == "Microsoft.EventGrid.SubscriptionValidationEvent" and validation.data["validationCode"])
    check("validationUrl points at palaver",
          validation.data["validationUrl"].startswith(f"{base_url}/events/subscriptions/eg-sub/validate?code="), validation.data["validationUrl"])

    events = {}
    for headers, body in notifications("/eg"):
        check("an Event Grid body is an array", isinstance(body, list) and len(body) == 1)
        check("aeg-* headers", headers.get("aeg-subscription-name") == "EG-SUB" and headers.get("aeg-data-version") == "1.0"
              and headers.get("aeg-metadata-version") == "1" and headers.get("aeg-delivery-count") == "0", f"{headers}")
        event = EventGridEvent.from_dict(body[0])
        check(f"{event.event_type} parses with EventGridEvent.from_dict", event.id and event.topic and event.event_time and event.data_version == "1.0")
        events[event.event_type] = event
    check("the chat events arrived", sorted(events) == sorted(CHAT_TYPES), f"{sorted(events)}")
    created_event = events["Microsoft.Communication.ChatThreadCreated"]
    check("ChatThreadCreated data", created_event.data["threadId"] == thread_id
          and created_event.data["properties"]["topic"] == "events"
          and created_event.data["createdByCommunicationIdentifier"]["rawId"] == alice.raw_id
          and {p["participantCommunicationIdentifier"]["rawId"] for p in created_event.data["participants"]} == {alice.raw_id, bob.raw_id},
          f"{created_event.data}")
    check("ChatThreadCreated subject", created_event.subject == f"thread/{thread_id}/createdBy/{alice.raw_id}", created_event.subject)
    in_thread = events["Microsoft.Communication.ChatMessageReceivedInThread"]
    check("ChatMessageReceivedInThread data", in_thread.data["messageBody"] == "hello events"
          and in_thread.data["messageId"] == message_id and in_thread.data["senderDisplayName"] == "Alice"
          and in_thread.data["senderCommunicationIdentifier"]["rawId"] == alice.raw_id and in_thread.data["type"] == "Text",
          f"{in_thread.data}")
    per_user = events["Microsoft.Communication.ChatMessageReceived"]
    check("ChatMessageReceived goes to the other member", per_user.data["recipientCommunicationIdentifier"]["rawId"] == bob.raw_id, f"{per_user.data}")

    ce = requests_to("/ce")
    check("the CloudEvents OPTIONS handshake comes first", ce[0][0] == "OPTIONS" and ce[0][1].get("webhook-request-origin") == "eventgrid.azure.net", f"{ce[0]}")
    for headers, body in notifications("/ce"):
        check("CloudEvents content type", headers.get("content-type", "").startswith("application/cloudevents+json"), f"{headers}")
        event = CloudEvent.from_dict(body)
        check("a CloudEvent parses with CloudEvent.from_dict", event.type == "Microsoft.Communication.ChatMessageReceivedInThread"
              and event.specversion == "1.0" and event.subject.startswith("thread/") and event.data["messageBody"] == "hello events")

    status, subs = hmac_request(base_url, ca_file, access_key, "GET", "/events/subscriptions/eg-sub")
    check("eg-sub is Validated with 3 delivered", subs["validationState"] == "Validated", f"{subs}")
    wait_for("the deliveries to be recorded", lambda: hmac_request(base_url, ca_file, access_key, "GET", "/events/subscriptions/eg-sub")[1]["deliveries"]["delivered"] == 3)

    # the callback signing keys
    status, jwks = get_json(f"{base_url}/calling/keys", ca_file)
    check("JWKS has an RS256 RSA key", status == 200 and jwks["keys"][0]["kty"] == "RSA" and jwks["keys"][0]["alg"] == "RS256" and jwks["keys"][0]["kid"])
    status, oidc = get_json(f"{base_url}/calling/.well-known/acsopenidconfiguration", ca_file)
    check("OpenID configuration names the JWKS", oidc["jwks_uri"] == f"{base_url}/calling/keys" and oidc["issuer"] == base_url, f"{oidc}")


if __name__ == "__main__":
    import sys

    sys.exit(run_main(run, "events", __doc__.splitlines()[0]))
