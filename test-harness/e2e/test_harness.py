"""The harness's own parts that every other test leans on: the one wait helper, and HTTP
servers that are quiet when a client goes away but still report real errors."""

import json
import socket
import struct
import subprocess
import sys
import time

import pytest

import harness


def test_wait_until_returns_the_value_and_names_what_it_awaited():
    calls = []
    assert harness.wait_until(lambda: calls.append(1) or len(calls) >= 3 and "ready", 5, "three calls",
                              interval=0) == "ready"
    with pytest.raises(harness.WaitTimeout, match=r"timed out after 0.2 s waiting for the moon \(last: 404\)"):
        harness.wait_until(lambda: 404, 0.2, "the moon", expect=lambda status: status == 200)
    # Ignored errors are "not yet" (and shown as the last answer); any other stops the wait.
    with pytest.raises(harness.WaitTimeout, match=r"a port \(last: ConnectionRefusedError"):
        harness.wait_until(lambda: socket.create_connection(("127.0.0.1", harness.free_port())), 0.2,
                           "a port", ignore=(OSError,))
    with pytest.raises(ZeroDivisionError):
        harness.wait_until(lambda: 1 / 0, 5, "a broken predicate")
    with pytest.raises(AssertionError, match=r"serving stopped holding after .* \(got: 503\)"):
        answers = iter([200, 200, 503, 200])
        harness.holds_for(lambda: next(answers), 5, "serving", interval=0, expect=lambda s: s == 200)


def reset(sock):
    """Closes `sock` with a TCP RST (what Envoy does to an upstream connection when it stops)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_the_control_plane_is_quiet_about_dropped_connections_and_loud_about_errors(tmp_path):
    doc = tmp_path / "registry.json"
    doc.write_text(json.dumps({"version": "1", "agents": []}))
    port = harness.free_port()
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "harness.control_plane", "--port", str(port),
                                 "--registry", str(doc)], stderr=err, env=harness.python_env())
    try:
        def connect():
            return socket.create_connection(("127.0.0.1", port), timeout=5)

        harness.wait_until(lambda: connect().close() or True, 10, "the control plane to listen", ignore=(OSError,))
        # A collector connection reset mid-batch, and a kept-alive one reset between requests.
        s = connect()
        s.sendall(b"POST /audit HTTP/1.1\r\nhost: cp\r\ncontent-length: 1000\r\n\r\n{\"kind\"")
        time.sleep(0.2)
        reset(s)
        s = connect()
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: cp\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        reset(s)
        # A broken handler (the registry document must be JSON) still prints its traceback.
        s = connect()
        s.sendall(b"PUT /registry.json HTTP/1.1\r\nhost: cp\r\ncontent-length: 3\r\n\r\n{{{")
        harness.wait_until(lambda: "JSONDecodeError" in stderr.read_text(), 10, "the handler's traceback on stderr")
        s.close()
        time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = stderr.read_text()
    assert text.count("Traceback") == 1, text
    assert "ConnectionResetError" not in text and "BrokenPipeError" not in text, text


def test_the_echo_upstream_is_quiet_about_dropped_connections(capfd):
    with harness.Upstream() as up:
        s = socket.create_connection(("127.0.0.1", up.port), timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nhost: up\r\ncontent-length: 1000\r\n\r\nx")
        time.sleep(0.2)
        reset(s)
        time.sleep(0.2)
    assert "Traceback" not in capfd.readouterr().err
