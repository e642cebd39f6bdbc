"""HTTPS client for the trials: HMAC-signed requests (Identity, usage export) the way the ACS
SDKs sign them, and bearer-token requests (Chat). Standard library only.

Signing (docs/identity.md): string-to-sign = `METHOD\\npath?query\\ndate;host;base64(sha256(body))`,
HMAC-SHA256 with the base64-decoded access key.
"""

import base64
import hashlib
import hmac
import http.client
import json
import ssl
import urllib.parse
from email.utils import formatdate

IDENTITY_API = "api-version=2023-10-01"
CHAT_API = "api-version=2024-03-07"


class RestError(Exception):
    pass


class RestClient:
    """One keep-alive HTTPS connection to a server (not thread-safe: one per thread)."""

    def __init__(self, host, ca_file, access_key, timeout=10.0):
        self.host = host  # "127.0.0.1:port", as signed in the host header
        self.key = base64.b64decode(access_key)
        self.context = ssl.create_default_context(cafile=ca_file)
        self.timeout = timeout
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _connection(self):
        if self.conn is None:
            hostname, port = self.host.rsplit(":", 1)
            self.conn = http.client.HTTPSConnection(hostname, int(port), context=self.context, timeout=self.timeout)
        return self.conn

    def request(self, method, path, body=None, headers=None):
        """(status, parsed JSON or None, response headers). Raises OSError/HTTPException on a dead server."""
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        all_headers = {"content-type": "application/json", "host": self.host}
        all_headers.update(headers or {})
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=all_headers)
            resp = conn.getresponse()
            raw = resp.read()
        except Exception:
            self.close()
            raise
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
        return resp.status, parsed, dict(resp.getheaders())

    def signed(self, method, path, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        date = formatdate(usegmt=True)
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        to_sign = f"{method}\n{path}\n{date};{self.host};{digest}"
        signature = base64.b64encode(hmac.new(self.key, to_sign.encode(), hashlib.sha256).digest()).decode()
        headers = {
            "x-ms-date": date,
            "x-ms-content-sha256": digest,
            "authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
        }
        return self.request(method, path, data, headers)

    def bearer(self, method, path, token, body=None, headers=None):
        h = {"authorization": f"Bearer {token}"}
        h.update(headers or {})
        return self.request(method, path, body, h)

    # ------------------------------------------------------------------ Identity API
    def create_identity(self, scopes):
        """(raw id, token) of a new communication user; RestError unless 201."""
        status, body, _ = self.signed("POST", f"/identities?{IDENTITY_API}", {"createTokenWithScopes": scopes})
        if status != 201:
            raise RestError(f"POST /identities: {status} {body}")
        return body["identity"]["id"], body["accessToken"]["token"]

    def identity_exists(self, raw_id):
        """True when a token can be issued for the identity (200); False on 4xx."""
        path = f"/identities/{quote(raw_id)}/:issueAccessToken?{IDENTITY_API}"
        status, body, _ = self.signed("POST", path, {"scopes": ["voip"]})
        if status >= 500:
            raise RestError(f"issueAccessToken: {status} {body}")
        return status == 200

    # ------------------------------------------------------------------ Chat API
    def create_thread(self, token, topic, participants=()):
        body = {"topic": topic, "participants": [{"communicationIdentifier": {"rawId": p}} for p in participants]}
        status, resp, _ = self.bearer("POST", f"/chat/threads?{CHAT_API}", token, body)
        if status != 201:
            raise RestError(f"POST /chat/threads: {status} {resp}")
        return resp["chatThread"]["id"]

    def send_message(self, token, thread_id, content):
        """The message id when answered 201, else None."""
        path = f"/chat/threads/{quote(thread_id)}/messages?{CHAT_API}"
        status, resp, _ = self.bearer("POST", path, token, {"content": content, "type": "text"})
        return resp["id"] if status == 201 else None

    def get_message(self, token, thread_id, message_id):
        path = f"/chat/threads/{quote(thread_id)}/messages/{message_id}?{CHAT_API}"
        return self.bearer("GET", path, token)[:2]

    # ------------------------------------------------------------------ usage export
    def usage_records(self, from_rfc3339, to_rfc3339, page_size=5000):
        """Every usage record with StartTime in [from, to), following nextLink."""
        path = f"/usage?from={from_rfc3339}&to={to_rfc3339}&maxPageSize={page_size}"
        rows = []
        for _ in range(10_000):
            status, body, _ = self.signed("GET", path)
            if status != 200:
                raise RestError(f"GET {path}: {status} {body}")
            rows.extend(body["value"])
            nxt = body.get("nextLink")
            if not nxt:
                return rows
            parsed = urllib.parse.urlsplit(nxt)
            path = parsed.path + ("?" + parsed.query if parsed.query else "")
        raise RestError("usage export: more than 10,000 pages")

    def usage_totals(self, from_rfc3339, to_rfc3339):
        path = f"/usage/totals?from={from_rfc3339}&to={to_rfc3339}"
        status, body, _ = self.signed("GET", path)
        if status != 200:
            raise RestError(f"GET {path}: {status} {body}")
        return body


def quote(s):
    return urllib.parse.quote(s, safe="")
