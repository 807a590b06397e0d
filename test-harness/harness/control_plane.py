"""The local control plane for tests and the demo (127.0.0.1 only): serves the agent
registry feed and lets tests change it while Envoy runs.

  GET  /registry.json      the current registry document {"version", "agents"}
  PUT  /registry.json      replace it (body: the new document)
  POST /admin/fail         {"mode": "none" | "500" | "garbage" | "slow"}: simulate a broken feed
                           ("slow": answer after SLOW_S seconds, longer than any test timeout)
  GET  /admin/stats        {"registry_requests": N, "ssf_polls": N, "acked": [jti...], ...}
  GET  /healthz            200

Identity provider keys (issuers[].jwks_uri):
  GET  /jwks.json          the current JWKS (from --jwks, then PUT)
  PUT  /jwks.json          replace it (key rotation)
  POST /admin/jwks/fail    {"mode": "none" | "500" | "garbage" | "slow"}: simulate an IdP outage

Shared Signals transmitter (RFC 8936 poll delivery):
  POST /ssf/poll           {"ack": [jti...], "maxEvents": N, "returnImmediately": true}
                           → {"sets": {jti: SET}, "moreAvailable": bool}. Acknowledged SETs
                           are not delivered again to that receiver session (header
                           `x-agent-iam-session`); a new session (a restarted Envoy) gets
                           every SET pushed in the last `--retain-s` seconds.
  POST /admin/ssf/push     {"sets": [compact SET...]}: queue SETs for every session
  POST /admin/ssf/fail     {"mode": "none" | "500" | "garbage" | "slow"}: simulate a transmitter outage
  POST /ssf/push           a SET a gateway reports (RFC 8935 push: `application/secevent+jwt`)
                           → 202, stored as received (not verified: the test verifies it)
  GET  /admin/ssf/received {"sets": [compact SET...]} every SET pushed to /ssf/push, in order
  POST /admin/ssf/push/fail {"mode": "none" | "503" | "400"}: refuse pushes (400 with an
                           RFC 8935 error body)

Audit collector (the filter's `audit.collector`):
  POST /audit              a batch of events (newline-delimited JSON), stored in order
  GET  /admin/audit        every stored event line, as newline-delimited JSON
  POST /admin/audit/fail   {"mode": "none" | "503" | "hang"}: refuse batches, or never answer

Usage (from test-harness/): python -m harness.control_plane --port PORT --registry FILE
A client that drops its connection (Envoy stopping) is not an error; any other failure in a
handler prints its traceback on stderr."""

import argparse
import base64
import http.server
import json
import threading
import time

from harness.servers import ThreadingHTTPServer

SLOW_S = 3


def _jti(compact):
    """The `jti` claim of a compact JWS (no verification: the filter verifies)."""
    try:
        payload = compact.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    except Exception:  # a deliberately broken SET still needs a key in `sets`
        return f"unparsable-{len(STATE['sets'])}"

STATE = {"doc": b"{}", "fail": "none", "requests": 0,
         # SSF: every pushed SET (jti, set, pushed_at); per session: acknowledged jtis.
         "sets": [], "sessions": {}, "ssf_fail": "none", "ssf_polls": 0, "acked": [],
         "retain_s": 900, "jwks": b'{"keys": []}', "jwks_fail": "none", "jwks_requests": 0,
         "audit": [], "audit_fail": "none", "audit_batches": 0, "audit_refused": 0,
         "received": [], "push_fail": "none", "push_refused": 0}
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self):
        if self.path == "/healthz":
            return self._send(200, b"ok", "text/plain")
        if self.path == "/admin/stats":
            with LOCK:
                stats = {"registry_requests": STATE["requests"], "ssf_polls": STATE["ssf_polls"],
                         "acked": STATE["acked"], "sessions": len(STATE["sessions"]),
                         "jwks_requests": STATE["jwks_requests"],
                         "audit_events": len(STATE["audit"]), "audit_batches": STATE["audit_batches"],
                         "audit_refused": STATE["audit_refused"], "push_refused": STATE["push_refused"]}
            return self._send(200, json.dumps(stats).encode())
        if self.path == "/admin/ssf/received":
            with LOCK:
                body = json.dumps({"sets": STATE["received"]})
            return self._send(200, body.encode())
        if self.path == "/admin/audit":
            with LOCK:
                text = "".join(line + "\n" for line in STATE["audit"])
            return self._send(200, text.encode(), "application/x-ndjson")
        if self.path == "/jwks.json":
            with LOCK:
                STATE["jwks_requests"] += 1
                mode, doc = STATE["jwks_fail"], STATE["jwks"]
            if mode == "500":
                return self._send(500, b'{"error":"simulated outage"}')
            if mode == "garbage":
                return self._send(200, b'{"keys": [{"kty": "EC", "crv": "P-256", "x": 1}], "extra": [[[[')
            if mode == "slow":
                time.sleep(SLOW_S)
            return self._send(200, doc, "application/jwk-set+json")
        if self.path == "/registry.json":
            with LOCK:
                STATE["requests"] += 1
                mode, doc = STATE["fail"], STATE["doc"]
            if mode == "500":
                return self._send(500, b'{"error":"simulated outage"}')
            if mode == "garbage":
                return self._send(200, b'{"version": "broken", "agents": [{"id": 1}]}')
            if mode == "slow":
                time.sleep(SLOW_S)
            return self._send(200, doc)
        self._send(404)

    def do_PUT(self):
        if self.path == "/jwks.json":
            body = self._body()
            with LOCK:
                STATE["jwks"] = body
            return self._send(204)
        if self.path != "/registry.json":
            return self._send(404)
        body = self._body()
        json.loads(body)  # tests only send JSON; a bad document is the filter's problem to refuse
        with LOCK:
            STATE["doc"] = body
        self._send(204)

    def do_POST(self):
        if self.path == "/ssf/poll":
            return self._ssf_poll()
        if self.path == "/audit":
            return self._audit()
        if self.path == "/ssf/push":
            return self._ssf_push()
        if self.path == "/admin/ssf/push/fail":
            mode = json.loads(self._body())["mode"]
            with LOCK:
                STATE["push_fail"] = mode
            return self._send(204)
        if self.path == "/admin/audit/fail":
            mode = json.loads(self._body())["mode"]
            with LOCK:
                STATE["audit_fail"] = mode
            return self._send(204)
        if self.path == "/admin/ssf/push":
            sets = json.loads(self._body())["sets"]
            now = time.time()
            with LOCK:
                for s in sets:
                    STATE["sets"].append((_jti(s), s, now))
            return self._send(204)
        if self.path == "/admin/jwks/fail":
            mode = json.loads(self._body())["mode"]
            with LOCK:
                STATE["jwks_fail"] = mode
            return self._send(204)
        if self.path == "/admin/ssf/fail":
            mode = json.loads(self._body())["mode"]
            with LOCK:
                STATE["ssf_fail"] = mode
            return self._send(204)
        if self.path != "/admin/fail":
            return self._send(404)
        mode = json.loads(self._body())["mode"]
        with LOCK:
            STATE["fail"] = mode
        self._send(204)

    def _audit(self):
        body = self._body()
        with LOCK:
            mode = STATE["audit_fail"]
            if mode == "none":
                STATE["audit_batches"] += 1
                STATE["audit"].extend(line for line in body.decode().split("\n") if line)
            else:
                STATE["audit_refused"] += 1
        if mode == "hang":
            time.sleep(30)  # longer than any configured timeout: the filter gives up first
            return
        if mode != "none":
            return self._send(503, b'{"error":"simulated outage"}')
        self._send(204)

    def _ssf_push(self):
        body = self._body()
        with LOCK:
            mode = STATE["push_fail"]
            if mode != "none":
                STATE["push_refused"] += 1
        if mode == "503":
            return self._send(503, b'{"error":"simulated outage"}')
        if mode == "400":
            return self._send(400, b'{"err":"invalid_key","description":"simulated: unknown key"}')
        if self.headers.get("content-type", "").split(";")[0].strip() != "application/secevent+jwt":
            return self._send(400, b'{"err":"invalid_request","description":"not application/secevent+jwt"}')
        with LOCK:
            STATE["received"].append(body.decode())
        self._send(202, b"", "text/plain")

    def _ssf_poll(self):
        req = json.loads(self._body() or b"{}")
        session = self.headers.get("x-agent-iam-session", "")
        with LOCK:
            STATE["ssf_polls"] += 1
            mode = STATE["ssf_fail"]
            if mode == "500":
                return self._send(500, b'{"error":"simulated outage"}')
            if mode == "garbage":
                return self._send(200, b'{"sets": ["not", "an", "object"], "moreAvailable": 7}')
            acked = STATE["sessions"].setdefault(session, set())
            for j in req.get("ack", []):
                acked.add(j)
                STATE["acked"].append(j)
            horizon = time.time() - STATE["retain_s"]
            pending = [(j, s) for j, s, at in STATE["sets"] if j not in acked and at >= horizon]
        if mode == "slow":
            time.sleep(SLOW_S)
        limit = int(req.get("maxEvents", 100))
        body = {"sets": dict(pending[:limit]), "moreAvailable": len(pending) > limit}
        self._send(200, json.dumps(body).encode())

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--retain-s", type=int, default=900)
    ap.add_argument("--jwks", help="file with the initial JWKS served at /jwks.json")
    args = ap.parse_args()
    if args.jwks:
        with open(args.jwks, "rb") as f:
            STATE["jwks"] = f.read()
    STATE["retain_s"] = args.retain_s
    with open(args.registry, "rb") as f:
        STATE["doc"] = f.read()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
