#!/usr/bin/env python3
"""Compatibility test: the official `azure-communication-identity` SDK against palaver.

Starts the palaver binary on a free loopback port with a temporary data directory, points
the SDK at it with the printed connection string over HTTPS (the generated CA passed as
`connection_verify`), runs every Identity operation, and checks that the returned tokens
are accepted by palaver's own token check (`GET /auth/whoami`) and revoked ones refused.
Exits non-zero on the first failure.

Usage: identity_compat.py [--binary PATH]   (default: $PALAVER_BIN or target/debug/palaver)
"""

import datetime
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

from azure.communication.identity import (
    CommunicationIdentityClient,
    CommunicationTokenScope,
    CommunicationUserIdentifier,
)
from azure.communication.identity._shared.utils import create_access_token
from azure.core.exceptions import HttpResponseError

# Re-exported: other compat scripts imported these from here before support.py existed.
from support import check, default_binary, error_code, palaver, run_main, running_palaver  # noqa: F401

DEV_APP_ID = "0d0d0d0d-0000-4000-8000-0000000a0001"
def whoami(base_url, ca_file, token):
    """(status, json) of palaver's bearer-token check."""
    ctx = ssl.create_default_context(cafile=ca_file)
    req = urllib.request.Request(base_url + "/auth/whoami", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def sdk_decodes(token):
    """The SDK's own payload decoding (standard base64 + '==', ASCII): returns expiry."""
    return create_access_token(token).expires_on


def run(binary):
    with running_palaver(binary, "palaver-sdk-") as server:
        base_url, conn_str, ca_file, client = server.base_url, server.conn_str, server.ca_file, server.identity
        data_dir = server.data_dir
        check("connection string uses https", conn_str.startswith("endpoint=https://127.0.0.1:"))

        user = client.create_user()
        check("create_user returns a communication user", user.properties["id"].startswith("8:acs:"), user.properties)

        user2, token2 = client.create_user_and_token(
            scopes=[CommunicationTokenScope.CHAT, CommunicationTokenScope.VOIP],
            token_expires_in=datetime.timedelta(hours=1),
        )
        check("create_user_and_token returns a user", user2.properties["id"].startswith("8:acs:"))
        lifetime = sdk_decodes(token2.token) - time.time()
        check("create_user_and_token honours token_expires_in", 3500 < lifetime <= 3601, f"lifetime {lifetime}")
        status, me = whoami(base_url, ca_file, token2.token)
        check("token from create_user_and_token is accepted", status == 200 and me["identifier"]["rawId"] == user2.properties["id"], me)
        check("token scopes are chat and voip", me["scopes"] == ["chat", "voip"], me)

        token = client.get_token(user, scopes=[CommunicationTokenScope.VOIP])
        check("get_token payload decodes like the SDK", sdk_decodes(token.token) > time.time() + 23 * 3600)
        status, me = whoami(base_url, ca_file, token.token)
        check("get_token token is accepted", status == 200 and me["identifier"]["rawId"] == user.properties["id"], me)

        for version in ["2021-03-07", "2022-06-01", "2022-10-01", "2023-10-01"]:
            versioned = CommunicationIdentityClient.from_connection_string(
                conn_str, connection_verify=ca_file, api_version=version
            )
            u, t = versioned.create_user_and_token(scopes=["chat.join", "voip.join"])
            check(f"api-version {version} accepted", whoami(base_url, ca_file, t.token)[0] == 200)

        try:
            client.get_token(user, scopes=["bogus"])
            check("unknown scope is refused", False)
        except HttpResponseError as e:
            check("unknown scope is refused with InvalidScope", e.status_code == 400 and error_code(e) == "InvalidScope", error_code(e))

        try:
            client.get_token(user, scopes=["chat"], token_expires_in=datetime.timedelta(minutes=30))
            check("out-of-range expiry is refused", False)
        except HttpResponseError as e:
            check("out-of-range expiry is refused with InvalidExpiry", e.status_code == 400 and error_code(e) == "InvalidExpiry", error_code(e))

        client.revoke_tokens(user)
        status, body = whoami(base_url, ca_file, token.token)
        check("revoked token is refused", status == 401 and body["error"]["code"] == "TokenRevoked", body)
        fresh = client.get_token(user, scopes=["chat"])
        check("token issued after revocation is accepted", whoami(base_url, ca_file, fresh.token)[0] == 200)

        client.delete_user(user)
        status, body = whoami(base_url, ca_file, fresh.token)
        check("deleting a user revokes its tokens", status == 401 and body["error"]["code"] == "TokenRevoked", body)
        try:
            client.get_token(user, scopes=["chat"])
            check("get_token for a deleted user fails", False)
        except HttpResponseError as e:
            check("get_token for a deleted user is IdentityNotFound", e.status_code == 404 and error_code(e) == "IdentityNotFound", error_code(e))
        try:
            client.delete_user(CommunicationUserIdentifier(user.properties["id"]))
            check("deleting twice fails", False)
        except HttpResponseError as e:
            check("deleting twice is IdentityNotFound", e.status_code == 404, error_code(e))

        oid = "6a0b1b8e-0000-4000-8000-00000000ab01"
        minted = json.loads(
            subprocess.run(
                [binary, "--data-dir", data_dir, "--log-level", "warn", "dev-idp-token", "--oid", oid, "--name", "Ada Agent", "--json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        exchanged = client.get_token_for_teams_user(minted["token"], minted["appId"], oid)
        check("get_token_for_teams_user expires with the IdP token", abs(sdk_decodes(exchanged.token) - minted["expiresAt"]) <= 1)
        status, me = whoami(base_url, ca_file, exchanged.token)
        check(
            "exchanged token is accepted as the directory user",
            status == 200 and me["identifier"]["rawId"] == f"8:orgid:{oid}" and me["displayName"] == "Ada Agent",
            me,
        )
        # ACS's answers, in its order: the IdP token first (401 InvalidAccessToken), then the
        # format of appId and userId, then whether they match the token (400 ValidationError).
        other_guid = "6a0b1b8e-0000-4000-8000-00000000ffff"
        exchange_cases = [
            ("an empty token, empty userId", "", minted["appId"], "", 401, "InvalidAccessToken", None, None),
            ("a malformed token", "not-a-jwt", minted["appId"], oid, 401, "InvalidAccessToken", None, None),
            ("a forged token", minted["token"] + "x", minted["appId"], oid, 401, "InvalidAccessToken", None, None),
            ("a malformed appId", minted["token"], "not-a-guid", oid, 400, "ValidationError", "Provided AppId has invalid format.", "appId"),
            ("another appId", minted["token"], other_guid, oid, 400, "ValidationError", "AAD application is not the expected one.", None),
            ("a malformed userId", minted["token"], minted["appId"], "someone-else", 400, "ValidationError", "Provided UserId has invalid format.", "userId"),
            ("another user's userId", minted["token"], minted["appId"], other_guid, 400, "ValidationError", "Provided AAD token issued for unexpected user.", None),
        ]
        for label, idp_token, app, user_id, status, code, message, target in exchange_cases:
            try:
                client.get_token_for_teams_user(idp_token, app, user_id)
                check(f"exchange with {label} fails", False)
            except HttpResponseError as e:
                err = e.response.json()["error"]
                ok = e.status_code == status and err["code"] == code
                ok = ok and (message is None or err["message"] == message) and err.get("target") == target
                check(f"exchange with {label} is {status} {code}", ok, (e.status_code, err))

        bad_key = conn_str.split("accesskey=")[0] + "accesskey=" + "QUJDRA=="
        try:
            CommunicationIdentityClient.from_connection_string(bad_key, connection_verify=ca_file).create_user()
            check("a wrong access key fails", False)
        except HttpResponseError as e:
            check("a wrong access key is InvalidSignature", e.status_code == 401 and error_code(e) == "InvalidSignature", error_code(e))


if __name__ == "__main__":
    sys.exit(run_main(run, "identity", __doc__.splitlines()[0]))
