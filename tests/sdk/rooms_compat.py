#!/usr/bin/env python3
"""Compatibility test: the official `azure-communication-rooms` SDK against palaver.

Starts the palaver binary (as identity_compat.py does), creates real communication users
with the identity SDK, then runs every RoomsClient operation over HTTPS with the connection
string: create_room, get_room, update_room, list_rooms (paged), add_or_update_participants,
list_participants, remove_participants, delete_room, older api-versions, and error cases
(bad dates, unknown room, bad role), each surfacing as HttpResponseError with the ACS error
code. Exits non-zero on the first failure.

Usage: rooms_compat.py [--binary PATH]   (default: $PALAVER_BIN or target/debug/palaver)
"""

import sys
from datetime import datetime, timedelta, timezone

from azure.communication.rooms import (
    CommunicationUserIdentifier,
    MicrosoftTeamsUserIdentifier,
    ParticipantRole,
    RoomParticipant,
    RoomsClient,
)
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from support import check, error_code, expect_error, run_main, running_palaver


def parse_time(value):
    """The service's RFC 3339 UTC string as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def expect_bad_argument(name, call, message, target):
    """ACS's answer to a bad room window: 400 BadRequest with one BadArgument detail."""
    try:
        call()
    except HttpResponseError as e:
        err = e.response.json()["error"]
        detail = (err.get("details") or [{}])[0]
        check(
            f"{name} is 400 BadRequest, BadArgument {message!r} on {target}",
            e.status_code == 400 and err["code"] == "BadRequest" and detail.get("code") == "BadArgument"
            and detail.get("message") == message and detail.get("target") == target,
            (e.status_code, err),
        )
        return
    check(f"{name} fails", False)


def run(binary):
    with running_palaver(binary, "palaver-rooms-") as server:
        conn_str, ca_file = server.conn_str, server.ca_file
        alice, bob, carol = server.new_user(), server.new_user(), server.new_user()
        agent = MicrosoftTeamsUserIdentifier("6a0b1b8e-0000-4000-8000-00000000ab01")
        rooms = RoomsClient.from_connection_string(conn_str, connection_verify=ca_file)

        now = datetime.now(timezone.utc)
        valid_from = (now + timedelta(minutes=5)).replace(microsecond=0)
        valid_until = valid_from + timedelta(days=7)
        room = rooms.create_room(
            valid_from=valid_from,
            valid_until=valid_until,
            pstn_dial_out_enabled=True,
            participants=[
                RoomParticipant(communication_identifier=alice, role=ParticipantRole.PRESENTER),
                RoomParticipant(communication_identifier=bob),
                RoomParticipant(communication_identifier=agent, role=ParticipantRole.COLLABORATOR),
            ],
        )
        check("create_room returns a numeric id", room.id.isdigit() and len(room.id) == 17, room.id)
        check("create_room keeps the window", parse_time(room.valid_from) == valid_from and parse_time(room.valid_until) == valid_until, vars(room))
        check("create_room keeps pstnDialOutEnabled", room.pstn_dial_out_enabled is True)

        default_room = rooms.create_room()
        window = parse_time(default_room.valid_until) - parse_time(default_room.valid_from)
        check("default window is 180 days", window == timedelta(days=180), window)
        check("default pstnDialOutEnabled is false", default_room.pstn_dial_out_enabled is False)

        got = rooms.get_room(room.id)
        check("get_room returns the created room", vars(got) == vars(room), (vars(got), vars(room)))

        new_until = valid_from + timedelta(days=30)
        updated = rooms.update_room(room_id=room.id, valid_until=new_until, pstn_dial_out_enabled=False)
        check("update_room changes validUntil", parse_time(updated.valid_until) == new_until, vars(updated))
        check("update_room keeps validFrom", parse_time(updated.valid_from) == valid_from, vars(updated))
        check("update_room changes pstnDialOutEnabled", updated.pstn_dial_out_enabled is False)

        participants = {p.communication_identifier.raw_id: p.role for p in rooms.list_participants(room.id)}
        check(
            "list_participants shows roles (Attendee by default)",
            participants == {alice.raw_id: "Presenter", bob.raw_id: "Attendee", agent.raw_id: "Collaborator"},
            participants,
        )
        rooms.add_or_update_participants(
            room_id=room.id,
            participants=[
                RoomParticipant(communication_identifier=bob, role=ParticipantRole.CONSUMER),
                RoomParticipant(communication_identifier=carol, role=ParticipantRole.ATTENDEE),
            ],
        )
        participants = {p.communication_identifier.raw_id: p.role for p in rooms.list_participants(room.id)}
        check("add_or_update_participants updates and adds", participants.get(bob.raw_id) == "Consumer" and participants.get(carol.raw_id) == "Attendee", participants)
        rooms.remove_participants(room_id=room.id, participants=[alice, RoomParticipant(communication_identifier=agent)])
        participants = {p.communication_identifier.raw_id: p.role for p in rooms.list_participants(room.id)}
        check("remove_participants removes", participants == {bob.raw_id: "Consumer", carol.raw_id: "Attendee"}, participants)

        created = [room.id, default_room.id] + [rooms.create_room().id for _ in range(3)]
        listed = [r.id for r in rooms.list_rooms()]
        check("list_rooms returns every room", listed == created, listed)
        paged = rooms.list_rooms(params={"maxPageSize": 2})
        pages = list(paged.by_page())
        ids = [r.id for page in pages for r in page]
        check("list_rooms follows nextLink across pages", ids == created and len(pages) == 3, (ids, len(pages)))

        for version in ["2023-06-14", "2024-04-15", "2025-03-13"]:
            versioned = RoomsClient.from_connection_string(conn_str, connection_verify=ca_file, api_version=version)
            r = versioned.create_room(participants=[RoomParticipant(communication_identifier=alice)])
            check(f"api-version {version} accepted", versioned.get_room(r.id).id == r.id)

        # ACS's recorded answers to bad windows (azure-sdk-for-python's Rooms session records):
        # 400 BadRequest, one BadArgument detail naming ValidUntil.
        too_long = "The time range is incorrect, or larger than 180 days."
        expect_bad_argument(
            "validUntil before validFrom",
            lambda: rooms.create_room(valid_from=now + timedelta(days=2), valid_until=now + timedelta(days=1)),
            too_long, "ValidUntil",
        )
        expect_bad_argument("a window over 180 days", lambda: rooms.create_room(valid_until=now + timedelta(days=181)), too_long, "ValidUntil")
        # ACS's answer to a start more than 180 days ahead, detail by detail.
        try:
            rooms.create_room(valid_from=now + timedelta(days=181), valid_until=now + timedelta(days=190))
            check("validFrom over 180 days ahead fails", False)
        except HttpResponseError as e:
            err = e.response.json()["error"]
            detail = (err.get("details") or [{}])[0]
            check(
                "validFrom over 180 days ahead is 400 BadRequest with a BadArgument detail on ValidFrom",
                e.status_code == 400
                and err["code"] == "BadRequest"
                and detail.get("code") == "BadArgument"
                and detail.get("message") == "Value is incorrect or more than 180 days in the future."
                and detail.get("target") == "ValidFrom",
                (e.status_code, err),
            )
        for bad_id, message in [("123", "Invalid room ID length."), ("f-123456789012345", "Room ID is invalid.")]:
            for label, call in [
                ("get_room", lambda: rooms.get_room(bad_id)),
                ("update_room", lambda: rooms.update_room(room_id=bad_id, valid_until=now + timedelta(days=1))),
                ("delete_room", lambda: rooms.delete_room(bad_id)),
            ]:
                try:
                    call()
                    check(f"{label}({bad_id!r}) fails", False)
                except HttpResponseError as e:
                    err = e.response.json()["error"]
                    check(
                        f"{label}({bad_id!r}) is 400 InvalidInput {message!r}",
                        e.status_code == 400 and err["code"] == "InvalidInput" and err["message"] == message,
                        (e.status_code, err),
                    )
        expect_bad_argument(
            "validUntil in the past",
            lambda: rooms.update_room(room_id=room.id, valid_until=now - timedelta(days=1)),
            "The time range end is in the past.", "ValidUntil",
        )
        expect_error(
            "an unknown role",
            lambda: rooms.add_or_update_participants(room_id=room.id, participants=[RoomParticipant(communication_identifier=alice, role="Owner")]),
            400,
            "BadRequest",
        )
        expect_error(
            "a participant of another resource",
            lambda: rooms.add_or_update_participants(
                room_id=room.id, participants=[RoomParticipant(communication_identifier=CommunicationUserIdentifier("8:acs:other_x"))]
            ),
            400,
            "InvalidIdentifier",
        )
        participants = {p.communication_identifier.raw_id for p in rooms.list_participants(room.id)}
        check("refused participant changes wrote nothing", participants == {bob.raw_id, carol.raw_id}, participants)
        check("refused update wrote nothing", parse_time(rooms.get_room(room.id).valid_until) == new_until)

        rooms.delete_room(room.id)
        try:
            rooms.get_room(room.id)
            check("get_room after delete fails", False)
        except ResourceNotFoundError as e:
            err = e.response.json()["error"]
            check(
                "get_room after delete is 404 NotFound with ACS's message",
                err["code"] == "NotFound" and err["message"] == "The server cannot find the requested resource.",
                err,
            )
        rooms.delete_room(room.id)
        check("deleting twice succeeds, as on ACS", True)
        expect_error("listing participants of a deleted room", lambda: list(rooms.list_participants(room.id)), 404, "NotFound")

        bad_key = conn_str.split("accesskey=")[0] + "accesskey=" + "QUJDRA=="
        expect_error(
            "a wrong access key",
            lambda: RoomsClient.from_connection_string(bad_key, connection_verify=ca_file).create_room(),
            401,
            "InvalidSignature",
        )


if __name__ == "__main__":
    sys.exit(run_main(run, "rooms", __doc__.splitlines()[0]))
