"""A rate-limit service for the tests: Envoy's `envoy.service.ratelimit.v3.RateLimitService`
(`ShouldRateLimit`) over gRPC (HTTP/2 cleartext, h2), recording the descriptors Envoy sends
and answering OVER_LIMIT for the agents named in `over_limit`. The messages are decoded and
encoded by hand (the few protobuf fields of `rls.proto` the filter uses), so the test depends
on nothing but Envoy and h2.

    RateLimitRequest  {1: domain, 2: repeated RateLimitDescriptor {1: repeated Entry {1: key, 2: value}}, 3: hits_addend}
    RateLimitResponse {1: overall_code (OK = 1, OVER_LIMIT = 2)}
"""

import socket
import struct
import threading

import h2.config
import h2.connection
import h2.events

PATH = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"


def _varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(data):
    """(field number, wire type, value) of a protobuf message: varints and length-delimited."""
    i, out = 0, []
    while i < len(data):
        tag, i = _varint(data, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i:i + n], i + n
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def decode_request(message):
    """-> {"domain", "descriptors": [[(key, value), ...], ...], "hits_addend"}."""
    req = {"domain": None, "descriptors": [], "hits_addend": 0}
    for number, _, value in _fields(message):
        if number == 1:
            req["domain"] = value.decode()
        elif number == 2:
            entries = []
            for n, _, entry in _fields(value):
                if n == 1:
                    kv = {k: v.decode() for k, _, v in _fields(entry) if k in (1, 2)}
                    entries.append((kv.get(1, ""), kv.get(2, "")))
            req["descriptors"].append(entries)
        elif number == 3:
            req["hits_addend"] = value
    return req


class RateLimitService:
    """Use as a context manager: `.port`, `.requests` (decoded, in arrival order) and
    `.over_limit` (a set of agent ids answered OVER_LIMIT)."""

    def __init__(self):
        self.requests, self.over_limit = [], set()
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stop = False

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._sock.close()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        h2c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        bodies, paths = {}, {}
        try:
            while True:
                data = conn.recv(65535)
                if not data:
                    return
                for event in h2c.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        paths[event.stream_id] = dict(event.headers).get(b":path", b"").decode()
                        bodies[event.stream_id] = b""
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] += event.data
                        h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(h2c, event.stream_id, paths.pop(event.stream_id, ""),
                                     bodies.pop(event.stream_id, b""))
                conn.sendall(h2c.data_to_send())
        except (OSError, ValueError):
            return
        finally:
            conn.close()

    def _answer(self, h2c, stream_id, path, body):
        if path != PATH or len(body) < 5:
            h2c.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc"),
                                         ("grpc-status", "12")], end_stream=True)
            return
        (length,) = struct.unpack(">I", body[1:5])
        req = decode_request(body[5:5 + length])
        with self._lock:
            self.requests.append(req)
            agents = {v for d in req["descriptors"] for k, v in d if k == "agent"}
            code = 2 if agents & self.over_limit else 1
        message = bytes([0x08, code])  # field 1 (varint): overall_code
        h2c.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        h2c.send_data(stream_id, b"\x00" + struct.pack(">I", len(message)) + message)
        h2c.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
