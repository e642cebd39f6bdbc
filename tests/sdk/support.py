"""What every SDK compatibility script shares: the check log, starting palaver on a free
loopback port with a temporary data dir (`running_palaver`), an identity client on its
connection string, ACS error codes of SDK exceptions, and the command-line entry.

Usage in a script:

    from support import check, expect_error, running_palaver, run_main

    def run(binary):
        with running_palaver(binary, "palaver-rooms-") as server:
            alice = server.new_user()            # CommunicationUserIdentifier
            ...

    if __name__ == "__main__":
        sys.exit(run_main(run, "rooms", __doc__.splitlines()[0]))
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass

from azure.communication.identity import CommunicationIdentityClient, CommunicationUserIdentifier
from azure.core.exceptions import HttpResponseError

CHECKS = []


def check(name, condition, detail=""):
    CHECKS.append(name)
    if not condition:
        raise AssertionError(f"{name} failed {detail}")
    print(f"  ok  {name}")


def default_binary():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    return os.environ.get("PALAVER_BIN", os.path.join(target, "debug", "palaver"))


@contextmanager
def palaver(binary, data_dir):
    """Run the server; yield (base_url, connection_string, ca_file). Stops it with SIGTERM."""
    proc = subprocess.Popen(
        [binary, "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--log-level", "warn", "run"],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    info = {}
    deadline = time.time() + 120
    try:
        while "PALAVER_READY" not in info:
            if time.time() > deadline:
                raise RuntimeError("palaver did not become ready in time")
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"palaver exited early with status {proc.wait()}")
            key, _, value = line.strip().partition(" ")
            if key.startswith("PALAVER_"):
                info[key] = value
        yield info["PALAVER_READY"], info["PALAVER_CONNECTION_STRING"], info["PALAVER_CA_FILE"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError("palaver did not stop on SIGTERM")
        if status != 0:
            raise RuntimeError(f"palaver exited with status {status} after SIGTERM")


@dataclass
class Server:
    """A running palaver: where it is, how to trust it, and an identity client on it."""

    base_url: str
    conn_str: str
    ca_file: str
    identity: CommunicationIdentityClient
    data_dir: str

    def new_user(self, scopes=None):
        """A new communication user; with `scopes`, `(user, token string)`."""
        if scopes is None:
            return CommunicationUserIdentifier(self.identity.create_user().properties["id"])
        user, token = self.identity.create_user_and_token(scopes=scopes)
        return CommunicationUserIdentifier(user.properties["id"]), token.token


@contextmanager
def running_palaver(binary, prefix):
    """palaver on a temporary data dir, with an identity client on its connection string."""
    with tempfile.TemporaryDirectory(prefix=prefix) as data_dir, palaver(binary, data_dir) as (base_url, conn_str, ca_file):
        print(f"palaver at {base_url}, CA {ca_file}")
        identity = CommunicationIdentityClient.from_connection_string(conn_str, connection_verify=ca_file)
        yield Server(base_url, conn_str, ca_file, identity, data_dir)


def error_code(exc):
    """The ACS error code of a failed SDK call (some SDKs' responses have no `.json()`)."""
    try:
        response = exc.response
        body = response.json() if hasattr(response, "json") else json.loads(response.text())
        return body["error"]["code"]
    except Exception:  # noqa: BLE001 - report whatever the body was
        return f"<unparseable: {exc.response.text() if exc.response else exc}>"


def expect_error(name, call, status, code):
    """`call()` must raise an HttpResponseError with this status and ACS error code."""
    try:
        call()
    except HttpResponseError as e:
        check(f"{name} is {status} {code}", e.status_code == status and error_code(e) == code, f"got {e.status_code} {error_code(e)}")
        return
    check(f"{name} fails", False)


def run_main(run_checks, label, description):
    """Command-line entry shared by the SDK compatibility scripts: exit 0 only if every check passed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--binary", default=default_binary())
    args = parser.parse_args()
    if not os.path.exists(args.binary):
        print(f"FAIL: palaver binary not found at {args.binary} (build it first)", file=sys.stderr)
        return 2
    try:
        run_checks(args.binary)
    except Exception as e:  # noqa: BLE001 - any failure fails the test
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"{label} SDK compatibility: {len(CHECKS)} checks passed")
    return 0
