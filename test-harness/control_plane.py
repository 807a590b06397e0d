"""The local control plane for tests and the demo (127.0.0.1 only): serves the agent
registry feed and lets tests change it while Envoy runs.

  GET  /registry.json      the current registry document {"version", "agents"}
  PUT  /registry.json      replace it (body: the new document)
  POST /admin/fail         {"mode": "none" | "500" | "garbage"}: simulate a broken feed
  GET  /admin/stats        {"registry_requests": N}
  GET  /healthz            200

Usage: python control_plane.py --port PORT --registry FILE"""

import argparse
import http.server
import json
import threading

STATE = {"doc": b"{}", "fail": "none", "requests": 0}
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
                return self._send(200, json.dumps({"registry_requests": STATE["requests"]}).encode())
        if self.path == "/registry.json":
            with LOCK:
                STATE["requests"] += 1
                mode, doc = STATE["fail"], STATE["doc"]
            if mode == "500":
                return self._send(500, b'{"error":"simulated outage"}')
            if mode == "garbage":
                return self._send(200, b'{"version": "broken", "agents": [{"id": 1}]}')
            return self._send(200, doc)
        self._send(404)

    def do_PUT(self):
        if self.path != "/registry.json":
            return self._send(404)
        body = self._body()
        json.loads(body)  # tests only send JSON; a bad document is the filter's problem to refuse
        with LOCK:
            STATE["doc"] = body
        self._send(204)

    def do_POST(self):
        if self.path != "/admin/fail":
            return self._send(404)
        mode = json.loads(self._body())["mode"]
        with LOCK:
            STATE["fail"] = mode
        self._send(204)

    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--registry", required=True)
    args = ap.parse_args()
    with open(args.registry, "rb") as f:
        STATE["doc"] = f.read()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
