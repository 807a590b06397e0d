"""The harness's HTTP servers on 127.0.0.1, each on a thread for a `with` block: the echo
upstream, the WSGI application that records what it executed, and the server classes the
control plane uses too.

Every threaded server here is quiet about clients that go away (Envoy resets idle upstream
and collector connections when it stops, a test closes a connection mid-request): those are
no error of the server. Any other exception in a handler still prints its traceback."""

import http.server
import json
import socket
import socketserver
import sys
import threading
import wsgiref.simple_server

# A peer that closed or reset its connection while a handler read or wrote.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietAboutDisconnects:
    """A socketserver mix-in: a client that went away is not reported; every other handler
    exception is (socketserver's traceback on stderr)."""

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            return
        super().handle_error(request, client_address)


class ThreadingHTTPServer(QuietAboutDisconnects, http.server.ThreadingHTTPServer):
    pass


class ThreadingWSGIServer(QuietAboutDisconnects, socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietWSGIHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


class Served:
    """A server (`self.server`, a socketserver) run on a thread for a `with` block."""

    def __enter__(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        headers = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        self.server.seen.append(headers)
        body = json.dumps({"method": self.command, "path": self.path, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args):
        pass


class Upstream(Served):
    """An upstream that echoes what it received, on 127.0.0.1."""

    def __init__(self):
        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _Echo)
        self.server.seen = []  # the headers of every request that reached the upstream


class WsgiApp(Served):
    """A stdlib WSGI application (wsgiref, as CGI-style frameworks see a request) on
    127.0.0.1 that records what it *executed*: the method as frameworks such as Django and
    Flask dispatch on it (upper-cased), PATH_INFO (percent-decoded, what routing matches),
    the query, and every HTTP_* variable (where `x-agent-id` and `x_agent_id` collide)."""

    def __init__(self):
        self.executed = []
        self.port = free_port()
        self.server = wsgiref.simple_server.make_server("127.0.0.1", self.port, self._app,
                                                        server_class=ThreadingWSGIServer,
                                                        handler_class=_QuietWSGIHandler)

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        record = {
            "raw_method": environ["REQUEST_METHOD"],
            "method": environ["REQUEST_METHOD"].upper(),
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "env": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        }
        self.executed.append(record)
        body = json.dumps(record).encode()
        start_response("200 OK", [("content-type", "application/json"), ("content-length", str(len(body)))])
        return [body]
