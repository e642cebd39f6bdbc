#!/usr/bin/env python3
"""Compatibility test: the official `azure-communication-chat` SDK against palaver.

Starts the palaver binary (as identity_compat.py does), creates communication users and
chat tokens with the identity SDK, then drives every ChatClient / ChatThreadClient
operation over HTTPS (the SDK refuses bearer tokens over plain http; the CA is trusted
through REQUESTS_CA_BUNDLE): threads (create with idempotency replay and invalid
participants, list paged with start_time, get, update topic, delete), messages (text and
html with metadata and sender display name, list paged across several pages with
start_time, get, edit, delete), participants (list paged, add with share_history_time,
remove), read receipts, typing, every api-version, the token scopes, a removed
participant's access, the 28 KB limit and the bad-input errors — checked field by field.
Exits non-zero on the first failure.

Usage: chat_compat.py [--binary PATH]   (default: $PALAVER_BIN or target/debug/palaver)
"""

import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

from azure.communication.chat import (
    ChatClient,
    ChatMessageType,
    ChatParticipant,
    CommunicationTokenCredential,
    CommunicationUserIdentifier,
    MicrosoftTeamsUserIdentifier,
)
from azure.communication.identity import CommunicationTokenScope
from azure.core.exceptions import ResourceNotFoundError

from support import check, error_code, expect_error, run_main, running_palaver

API_VERSIONS = ["2021-03-07", "2021-09-07", "2023-11-07", "2024-03-07", "2025-03-15"]
MAX_MESSAGE = 28 * 1024


def raw(base_url, ca_file, token, method, path, body=None):
    """(status, json) of a hand-made request (for what the SDK cannot send)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    data = body.encode() if isinstance(body, str) else None
    req = urllib.request.Request(base_url + path, data=data, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def quote(thread_id):
    return urllib.parse.quote(thread_id, safe="")


def run(binary):
    with running_palaver(binary, "palaver-chat-") as server:
        base_url, ca_file = server.base_url, server.ca_file
        os.environ["REQUESTS_CA_BUNDLE"] = ca_file
        user = server.new_user

        def chat(token, **kw):
            return ChatClient(base_url, CommunicationTokenCredential(token), **kw)

        alice, alice_tok = user([CommunicationTokenScope.CHAT])
        bob, bob_tok = user([CommunicationTokenScope.CHAT])
        carol, carol_tok = user([CommunicationTokenScope.CHAT])
        joiner, joiner_tok = user([CommunicationTokenScope.CHAT_JOIN])
        limited, limited_tok = user([CommunicationTokenScope.CHAT_JOIN_LIMITED])
        _, voip_tok = user([CommunicationTokenScope.VOIP])
        a = chat(alice_tok)

        # --- create: idempotency, creator, invalid participants -------------------------
        history_from = datetime(2026, 1, 1, tzinfo=timezone.utc)
        unknown = CommunicationUserIdentifier(alice.raw_id.rsplit("_", 1)[0] + "_nobody")
        participants = [
            ChatParticipant(identifier=alice, display_name="Alice"),
            ChatParticipant(identifier=bob, display_name="Bob", share_history_time=history_from),
            ChatParticipant(identifier=limited, display_name="Lim"),
            ChatParticipant(identifier=joiner, display_name="Jo"),
        ]
        created = a.create_chat_thread("Support", thread_participants=participants + [ChatParticipant(identifier=unknown)], idempotency_token="idem-1")
        thread = created.chat_thread
        check("create_chat_thread returns a 19:…@thread.v2 id", thread.id.startswith("19:") and thread.id.endswith("@thread.v2"), thread.id)
        check("create_chat_thread echoes the topic", thread.topic == "Support", thread.topic)
        check("created_by is the token's user, with raw_id", thread.created_by.raw_id == alice.raw_id and thread.created_by.properties["id"] == alice.raw_id, vars(thread.created_by))
        check("created_on is an aware datetime", thread.created_on.tzinfo is not None and abs(thread.created_on - datetime.now(timezone.utc)) < timedelta(minutes=1), thread.created_on)
        check("an unknown participant is reported, not fatal", len(created.errors) == 1 and created.errors[0][1].code == "404" and created.errors[0][1].target == unknown.raw_id, created.errors)
        check("the error is matched to the participant", created.errors[0][0] is not None and created.errors[0][0].identifier.raw_id == unknown.raw_id)
        replay = a.create_chat_thread("Support", thread_participants=participants + [ChatParticipant(identifier=unknown)], idempotency_token="idem-1")
        check("a replayed idempotency token returns the same thread", replay.chat_thread.id == thread.id, replay.chat_thread.id)
        t = a.get_chat_thread_client(thread.id)
        props = t.get_properties()
        check("get_properties", (props.id, props.topic, props.created_by.raw_id) == (thread.id, "Support", alice.raw_id), vars(props))

        # --- messages: send, get, field by field --------------------------------------
        text_id = t.send_message("hello", sender_display_name="Alice").id
        check("send_message returns a numeric id", text_id.isdigit(), text_id)
        html_id = t.send_message("<b>bold</b><img src=x onerror=alert(1)>", chat_message_type=ChatMessageType.HTML, sender_display_name="Alice", metadata={"k": "v"}).id
        m = t.get_message(html_id)
        check("html message type", m.type == ChatMessageType.HTML, m.type)
        check("html content is sanitised", m.content.message == "<b>bold</b>&lt;img src=x onerror=alert(1)&gt;", m.content.message)
        check("sender raw_id", m.sender.raw_id == alice.raw_id and m.sender.properties["id"] == alice.raw_id, vars(m.sender))
        check("sender_display_name", m.sender_display_name == "Alice")
        check("metadata", m.metadata == {"k": "v"}, m.metadata)
        check("sequence_id counts system messages (2 at creation)", m.sequence_id == "4", m.sequence_id)
        check("version starts as the id", m.version == html_id, (m.version, html_id))
        check("no edited/deleted time", m.edited_on is None and m.deleted_on is None)
        check("ids grow with sequence", int(html_id) > int(text_id))
        text = t.get_message(text_id)
        check("text is the default type, kept verbatim", text.type == ChatMessageType.TEXT and text.content.message == "hello", vars(text))

        for i in range(5):
            t.send_message(f"m{i}")
        pages = list(t.list_messages(results_per_page=2).by_page())
        msgs = [x for p in pages for x in p]
        seqs = [int(x.sequence_id) for x in msgs]
        check("list_messages pages through nextLink (>= 3 pages)", len(pages) >= 3, len(pages))
        check("list_messages is newest first, every message once", seqs == list(range(len(msgs), 0, -1)) and len(msgs) == 9, seqs)
        added, topic = msgs[-1], msgs[-2]
        check("seq 1 is participantAdded", added.type == ChatMessageType.PARTICIPANT_ADDED and added.sender is None, vars(added))
        check("participantAdded names everyone", sorted(p.identifier.raw_id for p in added.content.participants) == sorted([alice.raw_id, bob.raw_id, limited.raw_id, joiner.raw_id]))
        check("participantAdded initiator", added.content.initiator.raw_id == alice.raw_id)
        check("seq 2 is topicUpdated", topic.type == ChatMessageType.TOPIC_UPDATED and topic.content.topic == "Support", vars(topic))
        after = msgs[2].created_on
        recent = list(t.list_messages(start_time=after))
        check("list_messages(start_time) returns messages at or after it", [x.content.message for x in recent][:3] == ["m4", "m3", "m2"] and all(x.created_on >= after for x in recent) and len(recent) < len(msgs), [x.content.message for x in recent])

        # --- edit / delete: only the sender -------------------------------------------
        b = chat(bob_tok)
        tb = b.get_chat_thread_client(thread.id)
        expect_error("bob editing alice's message", lambda: tb.update_message(text_id, content="hacked"), 403, "Forbidden")
        expect_error("bob deleting alice's message", lambda: tb.delete_message(text_id), 403, "Forbidden")
        t.update_message(text_id, content="hello edited", metadata={"e": "1"})
        edited = t.get_message(text_id)
        check("edit changes content and metadata", edited.content.message == "hello edited" and edited.metadata == {"e": "1"}, vars(edited))
        check("edit sets edited_on and moves version", edited.edited_on is not None and int(edited.version) > int(text_id), (edited.edited_on, edited.version))
        check("edit keeps the place", edited.sequence_id == text.sequence_id)
        t.delete_message(html_id)
        deleted = t.get_message(html_id)
        check("delete leaves a tombstone in place", deleted.deleted_on is not None and deleted.sequence_id == "4", vars(deleted))
        check("deleted content is gone", deleted.content is None or not deleted.content.message)

        # --- participants ---------------------------------------------------------------
        listed = {p.identifier.raw_id: p for p in t.list_participants()}
        check("list_participants", set(listed) == {alice.raw_id, bob.raw_id, limited.raw_id, joiner.raw_id}, list(listed))
        check("participant display name and share_history_time", listed[bob.raw_id].display_name == "Bob" and listed[bob.raw_id].share_history_time == history_from, vars(listed[bob.raw_id]))
        check("participant identifiers carry raw_id", all(p.identifier.properties["id"] == rid for rid, p in listed.items()))
        ppages = [[x.identifier.raw_id for x in p] for p in t.list_participants(results_per_page=1).by_page()]
        check("list_participants pages with skip", [len(p) for p in ppages] == [1, 1, 1, 1] and {p[0] for p in ppages} == set(listed), ppages)
        c = chat(carol_tok)
        tc = c.get_chat_thread_client(thread.id)
        expect_error("a non-participant reading", lambda: list(tc.list_messages()), 403, "Forbidden")
        carol_from = datetime.now(timezone.utc)
        errors = t.add_participants([ChatParticipant(identifier=carol, display_name="Carol", share_history_time=carol_from), ChatParticipant(identifier=unknown)])
        check("add_participants reports only the invalid one", len(errors) == 1 and errors[0][1].code == "404" and errors[0][0].identifier.raw_id == unknown.raw_id, errors)
        carol_sees = [x.type for x in tc.list_messages()]
        check("carol sees history from her share_history_time only", carol_sees == [ChatMessageType.PARTICIPANT_ADDED], carol_sees)
        newest = next(iter(t.list_messages()))
        check("participantAdded system message for carol", newest.type == ChatMessageType.PARTICIPANT_ADDED and [p.identifier.raw_id for p in newest.content.participants] == [carol.raw_id])

        # --- removed participant keeps what they had, gets nothing new ---------------
        bob_before = [x.id for x in tb.list_messages()]
        t.remove_participant(bob)
        t.send_message("after bob left")
        bob_after = [x.id for x in tb.list_messages()]
        check("removed participant still reads their history", set(bob_before) <= set(bob_after), (bob_before, bob_after))
        check("removed participant sees nothing new (only their removal)", len(bob_after) == len(bob_before) + 1, (len(bob_before), len(bob_after)))
        check("their last message is the removal", tb.get_message(bob_after[0]).type == ChatMessageType.PARTICIPANT_REMOVED)
        expect_error("removed participant sending", lambda: tb.send_message("x"), 403, "Forbidden")
        check("removed participant no longer lists the thread", thread.id not in [x.id for x in b.list_chat_threads()])
        check("removed participant is not listed", bob.raw_id not in [p.identifier.raw_id for p in t.list_participants()])

        # --- read receipts, typing, topic --------------------------------------------
        last = next(iter(tc.list_messages()))
        tc.send_read_receipt(last.id)
        receipts = list(t.list_read_receipts())
        check("list_read_receipts", len(receipts) == 1 and receipts[0].sender.raw_id == carol.raw_id and receipts[0].chat_message_id == last.id, [vars(r) for r in receipts])
        check("read_on is recent", abs(receipts[0].read_on - datetime.now(timezone.utc)) < timedelta(minutes=1))
        t.send_typing_notification(sender_display_name="Alice")
        t.send_typing_notification()
        check("typing notifications accepted (200)", True)
        t.update_topic("Support 2")
        check("update_topic", t.get_properties().topic == "Support 2")
        newest = next(iter(t.list_messages()))
        check("topicUpdated system message", newest.type == ChatMessageType.TOPIC_UPDATED and newest.content.topic == "Support 2" and newest.content.initiator.raw_id == alice.raw_id)

        # --- scopes ---------------------------------------------------------------
        expect_error("chat.join creating a thread", lambda: chat(joiner_tok).create_chat_thread("x"), 403, "InsufficientScope")
        expect_error("chat.join.limited adding a participant", lambda: chat(limited_tok).get_chat_thread_client(thread.id).add_participants([ChatParticipant(identifier=bob)]), 403, "InsufficientScope")
        expect_error("chat.join.limited updating the topic", lambda: chat(limited_tok).get_chat_thread_client(thread.id).update_topic("x"), 403, "InsufficientScope")
        chat(limited_tok).get_chat_thread_client(thread.id).send_message("limited can send")
        chat(joiner_tok).get_chat_thread_client(thread.id).add_participants([ChatParticipant(identifier=bob, display_name="Bob again")])
        check("chat.join adds participants, and a removed one comes back", bob.raw_id in [p.identifier.raw_id for p in t.list_participants()])
        expect_error("a voip-only token", lambda: list(chat(voip_tok).list_chat_threads()), 403, "InsufficientScope")

        # --- limits and bad input: specific codes, nothing written -------------------
        count = len(list(t.list_messages()))
        t.send_message("a" * MAX_MESSAGE)
        expect_error("a message over 28 KB", lambda: t.send_message("a" * (MAX_MESSAGE + 1)), 413, "PayloadTooLarge")
        expect_error("content plus metadata over 28 KB", lambda: t.send_message("a" * MAX_MESSAGE, metadata={"k": "v"}), 413, "PayloadTooLarge")
        many = [ChatParticipant(identifier=MicrosoftTeamsUserIdentifier(f"{i:08d}-0000-4000-8000-000000000000")) for i in range(201)]
        expect_error("201 participants in one request", lambda: t.add_participants(many), 400, "InvalidParameter")
        # The SDK cannot add directory users (its error converter reads properties["id"],
        # which MicrosoftTeamsUserIdentifier lacks), so fill the thread with raw requests.
        ppath = f"/chat/threads/{quote(thread.id)}/participants/:add?api-version=2024-03-07"

        def teams(prefix, n):
            return json.dumps({"participants": [{"communicationIdentifier": {"rawId": f"8:orgid:{i:08d}-{prefix}-4000-8000-000000000000", "microsoftTeamsUser": {"userId": f"{i:08d}-{prefix}-4000-8000-000000000000", "cloud": "PUBLIC"}}} for i in range(n)]})

        status, body = raw(base_url, ca_file, alice_tok, "POST", ppath, teams("0000", 200))
        check("200 directory users in one request are added", (status, body) == (201, {}), (status, body))
        current = len(list(t.list_participants()))
        status, body = raw(base_url, ca_file, alice_tok, "POST", ppath, teams("1111", 251 - current))
        check("a 251st participant is 422 CapacityReached", (status, body.get("error", {}).get("code")) == (422, "CapacityReached"), (status, body))
        check("the thread holds at most 250", len(list(t.list_participants())) == current <= 250, current)
        path = f"/chat/threads/{quote(thread.id)}/messages"
        status, body = raw(base_url, ca_file, alice_tok, "GET", path + "?api-version=2024-03-07&syncState=forged.token")
        check("a forged paging token is 400 InvalidPageToken", (status, body.get("error", {}).get("code")) == (400, "InvalidPageToken"), (status, body))
        status, body = raw(base_url, ca_file, alice_tok, "POST", path + "?api-version=2024-03-07", '{"content": "x"')
        check("malformed JSON is 400 InvalidJson", (status, body.get("error", {}).get("code")) == (400, "InvalidJson"), (status, body))
        status, body = raw(base_url, ca_file, alice_tok, "POST", path + "?api-version=2020-01-01", '{"content": "x"}')
        check("an unknown api-version is 400 UnsupportedApiVersion", (status, body.get("error", {}).get("code")) == (400, "UnsupportedApiVersion"), (status, body))
        status, body = raw(base_url, ca_file, "not-a-token", "GET", path + "?api-version=2024-03-07")
        check("a bad token is 401", status == 401, (status, body))
        check("rejected requests wrote nothing", len(list(t.list_messages())) == count + 1 + 1, (count, len(list(t.list_messages()))))
        try:
            a.get_chat_thread_client("19:doesnotexist@thread.v2").get_properties()
            check("an unknown thread fails", False)
        except ResourceNotFoundError as e:
            check("an unknown thread is 404 NotFound", error_code(e) == "NotFound", error_code(e))
        expect_error("an unknown message", lambda: t.get_message("123"), 404, "NotFound")

        # --- thread list: paging, start_time; every api-version -------------------
        for v in API_VERSIONS:
            vc = chat(alice_tok, api_version=v)
            th = vc.create_chat_thread(f"v {v}").chat_thread
            vt = vc.get_chat_thread_client(th.id)
            mid = vt.send_message(f"on {v}").id
            check(f"api-version {v}: create, send, get", vt.get_message(mid).content.message == f"on {v}")
        tpages = list(a.list_chat_threads(results_per_page=2).by_page())
        items = [x for p in tpages for x in p]
        check("list_chat_threads pages (>= 3 pages), each thread once", len(tpages) >= 3 and len({x.id for x in items}) == len(items) == 6, (len(tpages), len(items)))
        check("list_chat_threads is most recently active first", items[0].topic == "v 2025-03-15" and items[0].last_message_received_on is not None, vars(items[0]))
        cutoff = items[1].last_message_received_on
        check("list_chat_threads(start_time)", [x.id for x in a.list_chat_threads(start_time=cutoff)] == [items[0].id, items[1].id])

        # --- delete ------------------------------------------------------------------
        expect_error("chat.join deleting the thread", lambda: chat(joiner_tok).delete_chat_thread(thread.id), 403, "InsufficientScope")
        a.delete_chat_thread(thread.id)
        expect_error("a deleted thread", lambda: t.get_properties(), 404, "NotFound")


if __name__ == "__main__":
    sys.exit(run_main(run, "chat", __doc__.splitlines()[0]))
