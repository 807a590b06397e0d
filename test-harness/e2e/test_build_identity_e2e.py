"""Which build each proxy runs, and a module pinned by its hash, through a real Envoy: the
filter's start-up line names version, commit, features and the module's SHA-256 (which the
loader passes as AGENT_IAM_MODULE_SHA256; `generate envoy` sets it from the .wasm), the
`build_info` gauge names version and commit, and Envoy's remote code source with `sha256`
runs the released module and refuses any other bytes."""

import hashlib
import http.server
import json
import re
import subprocess

import pytest
import yaml

import harness
from harness.servers import Served, ThreadingHTTPServer, free_port

VERSION = "0.1.0"
UNKNOWN = "module_sha256=unknown (set AGENT_IAM_MODULE_SHA256)"


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def built_commits():
    """The commit names build.rs may have given the suite's modules: HEAD's, and with
    `-dirty` as well while the work tree has uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=harness.ROOT, capture_output=True, text=True)
    head = git("rev-parse", "--short=12", "HEAD")
    if head.returncode != 0:
        return {"unknown"}
    head = head.stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return {head, f"{head}-dirty"} if dirty else {head}


def commit_of(line):
    return re.search(r" build commit=(\S+) ", line).group(1)


def start_lines(envoy):
    return [line.split("wasm log agent_iam agent_iam: ", 1)[1] for line in envoy.log().splitlines()
            if f"agent-iam {VERSION} configured:" in line]


def bare_envoy(name, **generate):
    """Envoy with the shipped plugin configuration answering 200 itself after the filter (no
    upstream or feeds needed to read the start-up line)."""
    text = harness.envoy_yaml(listen=free_port(), admin=free_port(), upstream=1, direct_response=True, **generate)
    return harness.Envoy(text, name=name)


def test_the_start_up_line_and_the_gauge_name_the_build_and_the_module():
    with bare_envoy("build-id") as envoy:
        lines = start_lines(envoy)
        assert len(lines) >= 2, envoy.log()[-3000:]  # the main thread's VM and the worker's
        commit = commit_of(lines[0])
        assert commit in built_commits()
        for line in lines:
            assert f"build commit={commit} features=none id=" in line
            assert line.endswith(f"module_sha256={sha256(harness.WASM)}")
        # One gauge naming the build, set to 1, defined once however many VMs start.
        assert harness.admin_stats(envoy, "build_info") == {
            f"wasmcustom.agent_iam.build_info.version.{VERSION.replace('.', '_')}.commit.{commit}": "1"}


def test_the_test_hook_build_says_so_and_without_the_variable_how_to_get_the_hash():
    with bare_envoy("build-id-hooks", wasm=harness.HOOKS_WASM, module_sha256=False) as envoy:
        lines = start_lines(envoy)
        assert lines, envoy.log()[-3000:]
        assert commit_of(lines[0]) in built_commits()
        assert all(" features=test-hooks id=" in line and line.endswith(UNKNOWN) for line in lines)
        assert "AGENT_IAM_MODULE_SHA256" not in envoy.config.read_text()


class ModuleServer(Served):
    """Serves `data` at /agent_iam.wasm on 127.0.0.1 (what a release download URL does)."""

    def __init__(self, data):
        self.port = free_port()
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                owner.fetches += 1
                self.send_response(200 if self.path == "/agent_iam.wasm" else 404)
                body = data if self.path == "/agent_iam.wasm" else b""
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)


def pinned_yaml(port, pin):
    """The generated bootstrap with the module fetched from 127.0.0.1:`port` by Envoy's
    remote code source, pinned to `pin` (its SHA-256), the same hash passed to the VM."""
    listen, admin = free_port(), free_port()
    doc = yaml.safe_load(harness.envoy_yaml(listen=listen, admin=admin, upstream=1, direct_response=True,
                                            module_sha256=pin))
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    [wasm] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
    vm = wasm["typed_config"]["config"]["vm_config"]
    vm["code"] = {"remote": {"http_uri": {"uri": f"http://127.0.0.1:{port}/agent_iam.wasm", "cluster": "modules",
                                          "timeout": "10s"},
                             "sha256": pin}}
    doc["static_resources"]["clusters"].append({
        "name": "modules", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "modules", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
    return yaml.safe_dump(doc), listen


@pytest.mark.parametrize("served", ["released", "other"])
def test_envoy_runs_a_module_pinned_by_sha256_and_refuses_other_bytes(served):
    """The pin is the released module's SHA-256: served those bytes, Envoy runs the filter;
    served anything else (a rebuilt or tampered module), the plugin never loads and the
    listener answers 503 (FAIL_CLOSED): nothing passes unchecked."""
    released = harness.WASM.read_bytes()
    data = released if served == "released" else harness.HOOKS_WASM.read_bytes()
    pin = hashlib.sha256(released).hexdigest()
    with ModuleServer(data) as modules:
        text, listen = pinned_yaml(modules.port, pin)
        with harness.Envoy(text, name=f"pinned-{served}") as envoy:
            client = harness.Client(listen)
            if served == "released":
                harness.wait_until(lambda: start_lines(envoy), 30, "the filter's start-up line")
                assert all(line.endswith(f"module_sha256={pin}") for line in start_lines(envoy))
                answer = client.request("/tickets")
                assert answer.status == 401 and json.loads(answer.body)["reason"] == "token.missing"
            else:
                harness.wait_until(lambda: "Plugin configured to fail closed failed to load" in envoy.log(), 30,
                                   "Envoy to refuse the module")
                assert client.request("/tickets").status == 503
                assert start_lines(envoy) == []
            client.close()
        assert modules.fetches >= 1
