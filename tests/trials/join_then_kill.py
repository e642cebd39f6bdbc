#!/usr/bin/env python3
"""Reproducer: a session acknowledged with `joined` can be missing from the usage ledger
after a SIGKILL that follows the acknowledgement within a few milliseconds.

Each try: a new identity joins a new group call over WSS, reads `joined`, and the server is
killed at once and restarted on the same data dir; the usage export is then searched for the
session's record. `python3 join_then_kill.py [--tries 10]`; exits 1 when a record is missing.
"""

import argparse
import shutil
import sys
import tempfile
import uuid

from palaver_server import PalaverServer, default_binary
from rest_client import RestClient
from signaling_participant import SignalingParticipant


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tries", type=int, default=10)
    ap.add_argument("--binary", default=default_binary("palaver"))
    args = ap.parse_args()
    data_dir = tempfile.mkdtemp(prefix="palaver-join-kill-")
    server = PalaverServer(args.binary, data_dir)
    server.start()
    lost = 0
    try:
        for i in range(args.tries):
            rest = RestClient(server.host, server.ca_file, server.access_key)
            _, token = rest.create_identity(["voip"])
            rest.close()
            ws = SignalingParticipant(server.host, server.ca_file, token)
            session = ws.join_group_call(str(uuid.uuid4()))
            server.kill9()
            ws.close()
            server.start()
            rest = RestClient(server.host, server.ca_file, server.access_key)
            rows = [r for r in all_records(rest) if r["ParticipantId"] == session]
            rest.close()
            lost += not rows
            print(f"try {i + 1}: session {session}: {len(rows)} record(s)", flush=True)
    finally:
        server.stop()
    print(f"sessions acknowledged with `joined` and missing after the kill: {lost}/{args.tries}")
    if lost:
        print(f"data dir kept for inspection: {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 1 if lost else 0


def all_records(rest):
    """Records of the last 31 days (the export's widest range)."""
    import time

    now = time.time()
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return rest.usage_records(time.strftime(fmt, time.gmtime(now - 30 * 86400)),
                              time.strftime(fmt, time.gmtime(now + 3600)))


if __name__ == "__main__":
    sys.exit(main())
