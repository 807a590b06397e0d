"""The Kubernetes manifests in deploy/ (Istio's WasmPlugin with the ServiceEntry and
DestinationRule its feeds need; Envoy Gateway's EnvoyExtensionPolicy), checked without a
cluster and without Envoy:

- against the CRD schema of their kind, as an API server would, with unknown fields as
  errors, and the schema's CEL rules that matter here re-implemented. The schemas come from
  the npm packages @kubernetes-models/istio and @kubernetes-models/envoy-gateway (pinned by
  e2e/crds/package-lock.json, installed by the `crd_packages` fixture), which compile the
  CRDs of the versions named in `GENERATED_FROM` to validators; e2e/crds/validate.mjs runs them;
- against what this filter needs: fail closed, the module pinned by a SHA-256, run before
  Istio's authentication, named `agent_iam`, no MCP route (neither control plane sets
  `allow_on_headers_stop_iteration`), and under Istio feeds whose clusters are named the way
  Istio names them (`outbound|PORT|SUBSET|HOST`) and exist;
- the plugin configuration inside each, encoded as the control plane encodes it, through the
  filter's own validator (`agent-iam validate`) and Kong's copy of its schema
  (agent_iam.meta.json).

Each check is shown failing on a broken copy of a manifest (`BROKEN` below)."""

import copy
import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

import harness

DEPLOY = harness.ROOT / "deploy"
MANIFESTS = [DEPLOY / "istio" / "wasmplugin.yaml", DEPLOY / "envoy-gateway" / "envoyextensionpolicy.yaml"]
CRD_PACKAGES = harness.HARNESS_DIR / "e2e" / "crds"
ISTIO, ENVOY_GATEWAY = "@kubernetes-models/istio", "@kubernetes-models/envoy-gateway"
# What each package was generated from: @kubernetes-models/istio 3.0.1 from Istio 1.29.2's
# CRDs (its package.json names the file, checked below); @kubernetes-models/envoy-gateway
# 2.0.0 from Envoy Gateway 1.7.3's API types (github.com/envoyproxy/gateway/api/v1alpha1,
# from which Envoy Gateway generates its CRDs; the package's changelog names the version).
GENERATED_FROM = {ISTIO: ("3.0.1", "Istio 1.29.2"), ENVOY_GATEWAY: ("2.0.0", "Envoy Gateway 1.7.3")}
# (apiVersion, kind): (package, module of the model class, the class, its compiled schema).
SCHEMAS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"):
        (ISTIO, "extensions.istio.io/v1alpha1/WasmPlugin", "WasmPlugin", "ExtensionsIstioIoV1alpha1WasmPlugin"),
    ("networking.istio.io/v1", "ServiceEntry"):
        (ISTIO, "networking.istio.io/v1/ServiceEntry", "ServiceEntry", "NetworkingIstioIoV1ServiceEntry"),
    ("networking.istio.io/v1", "DestinationRule"):
        (ISTIO, "networking.istio.io/v1/DestinationRule", "DestinationRule", "NetworkingIstioIoV1DestinationRule"),
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"):
        (ENVOY_GATEWAY, "gateway.envoyproxy.io/v1alpha1/EnvoyExtensionPolicy", "EnvoyExtensionPolicy",
         "ComGithubEnvoyproxyGatewayApiV1alpha1EnvoyExtensionPolicy"),
}
# Where a schema keeps any field (x-kubernetes-preserve-unknown-fields): the plugin
# configuration, which the filter's validator checks instead.
FREE_FORM = {"WasmPlugin": {"spec.pluginConfig"}, "EnvoyExtensionPolicy": {"spec.wasm[0].config"}}
SHA256 = re.compile(r"^[a-f0-9]{64}$")
# Istio's cluster names (pilot/pkg/model/service.go, BuildSubsetKey): outbound|PORT|SUBSET|HOST.
ISTIO_CLUSTER = re.compile(r"^outbound\|(?P<port>[0-9]{1,5})\|(?P<subset>[^|]*)\|"
                           r"(?P<host>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$")
IN_MESH_SERVICE = re.compile(r"\.svc\.cluster\.local$")
# What an API server checks of every object's metadata itself (the schemas say only its types).
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")  # a DNS subdomain
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS label


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def installed_versions():
    out = {}
    for name in json.loads((CRD_PACKAGES / "package.json").read_text())["dependencies"]:
        meta = CRD_PACKAGES / "node_modules" / name / "package.json"
        out[name] = json.loads(meta.read_text())["version"] if meta.is_file() else None
    return out


@pytest.fixture(scope="session", autouse=True)
def crd_packages():
    """Installs the pinned schema packages (`npm ci`, into e2e/crds/node_modules) when they are
    missing or not the pinned versions. The packages ask for Node.js 22; they load on 20,
    which is what they are checked with here. Fails, never skips, when they cannot be had."""
    wanted = json.loads((CRD_PACKAGES / "package.json").read_text())["dependencies"]
    if installed_versions() != wanted:
        if not shutil.which("npm") or not shutil.which("node"):
            pytest.fail("Node.js and npm are needed to install the CRD schema packages (test-harness/e2e/crds)")
        proc = subprocess.run(["npm", "ci", "--engine-strict=false", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=CRD_PACKAGES, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"npm ci in test-harness/e2e/crds failed:\n{proc.stdout}{proc.stderr}")
    assert installed_versions() == wanted
    assert {name: version for name, (version, _) in GENERATED_FROM.items()} == wanted


RESULTS = {}


def crd_results(docs):
    """What e2e/crds/validate.mjs says of each document (see there), cached by content."""
    keys = [json.dumps(d, sort_keys=True) for d in docs]
    todo = [(k, d) for k, d in zip(keys, docs) if k not in RESULTS]
    if todo:
        request = []
        for _, doc in todo:
            spec = SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
            assert spec, f"no CRD schema for {doc.get('apiVersion')} {doc.get('kind')}: add it to SCHEMAS"
            package, model, cls, schema = spec
            request.append({"package": package, "model": model, "class": cls, "schema": schema, "doc": doc})
        proc = subprocess.run(["node", str(CRD_PACKAGES / "validate.mjs")], input=json.dumps(request),
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.fail(f"test-harness/e2e/crds/validate.mjs failed:\n{proc.stderr}")
        for (key, _), result in zip(todo, json.loads(proc.stdout), strict=True):
            RESULTS[key] = result
    return [RESULTS[k] for k in keys]


def dotted(pointer):
    """A JSON pointer as `spec.match[0].ports`."""
    out = ""
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out.lstrip(".") or "(root)"


def unknown_fields(node, pointer, fields, free):
    """Unknown fields are errors here. A CRD schema does not say `additionalProperties: false`:
    an API server prunes the fields it does not know (or, with kubectl's strict field
    validation, refuses them), and so the packages' validators accept them. A field is known
    where the schema looked it up (`fields`); an object where it looked up no field keeps any
    (x-kubernetes-preserve-unknown-fields: the plugin configuration) and goes to `free`."""
    out = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            out += unknown_fields(item, f"{pointer}/{i}", fields, free)
    elif isinstance(node, dict) and pointer in fields:
        if not fields[pointer]:
            free.add(dotted(pointer))
            return out
        for key, value in node.items():
            if key not in fields[pointer]:
                out.append(f"{dotted(pointer)}: unknown field '{key}'")
            else:
                out += unknown_fields(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}", fields, free)
    return out


def schema_problems(doc, free=None):
    [result] = crd_results([doc])
    # The schema run on the recording copy must decide as the model's validate() did.
    assert result["schema_valid"] == (result["errors"] == []), result
    out = []
    for e in result["errors"]:
        detail = f" {e['params']['allowedValues']}" if e["keyword"] == "enum" else ""
        out.append(f"{dotted(e['path'])}: {e['message']}{detail}")
    out += unknown_fields(doc, "", result["fields"], set() if free is None else free)
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not NAME.match(str(meta.get("name", ""))):
        out.append(f"metadata.name: {meta and meta.get('name')!r}: an object needs a name (a DNS subdomain)")
    elif "namespace" in meta and not NAMESPACE.match(str(meta["namespace"])):
        out.append(f"metadata.namespace: {meta['namespace']!r}: not a namespace name (a DNS label)")
    return out


def cel_problems(doc):
    """The CEL rules (`x-kubernetes-validations`) of these CRDs (the versions in GENERATED_FROM)
    that bear on our manifests. The packages' validators do not run CEL."""
    spec, out = doc.get("spec", {}), []
    if doc["kind"] == "WasmPlugin":
        if sum(k in spec for k in ("selector", "targetRef", "targetRefs")) > 1:
            out.append("spec: only one of targetRefs or selector can be set")
        scheme = spec.get("url", "").partition("://")[0] if "://" in spec.get("url", "") else ""
        if scheme not in ("", "http", "https", "oci", "file"):
            out.append("spec.url: url must have schema one of [http, https, file, oci]")
    if doc["kind"] == "ServiceEntry":
        numbers = [p.get("number") for p in spec.get("ports", [])]
        if any(not isinstance(n, int) or not 0 < n <= 65535 for n in numbers) or len(set(numbers)) != len(numbers):
            out.append("spec.ports: port must be between 1-65535, and not duplicated")
    if doc["kind"] == "EnvoyExtensionPolicy":
        if ("targetRef" in spec) == ("targetRefs" in spec) and not spec.get("targetSelectors"):
            out.append("spec: either targetRef or targetRefs must be used")
        kinds = ("Gateway", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute")
        for ref in spec.get("targetRefs", []) + ([spec["targetRef"]] if "targetRef" in spec else []):
            if ref.get("group") != "gateway.networking.k8s.io" or ref.get("kind") not in kinds:
                out.append(f"spec.targetRefs: {ref}: only gateway.networking.k8s.io {'/'.join(kinds)}")
        for i, w in enumerate(spec.get("wasm", [])):
            code = w.get("code", {})
            for kind, field in (("HTTP", "http"), ("Image", "image")):
                if (code.get("type") == kind) != (field in code):
                    out.append(f"spec.wasm[{i}].code: If type is {kind}, {field} field needs to be set.")
    return out


def safety_problems(doc):
    """What this filter needs from the way it is loaded, beyond what the schema allows."""
    spec, out = doc.get("spec", {}), []
    if doc["kind"] == "WasmPlugin":
        # FAIL_RELOAD is closed as well (a new VM for later requests after a trap).
        if spec.get("failStrategy") not in ("FAIL_CLOSE", "FAIL_RELOAD"):
            out.append(f"spec.failStrategy: {spec.get('failStrategy')!r}: must say FAIL_CLOSE (FAIL_OPEN lets "
                       "every request through, unchecked, when the module cannot be fetched or fails)")
        if spec.get("phase") != "AUTHN":
            out.append(f"spec.phase: {spec.get('phase')!r}: must be AUTHN (before Istio's authentication filters)")
        if spec.get("pluginName") != "agent_iam":
            out.append(f"spec.pluginName: {spec.get('pluginName')!r}: must be agent_iam")
        if spec.get("type", "HTTP") != "HTTP":
            out.append(f"spec.type: {spec.get('type')!r}: the filter is an HTTP filter")
        if not SHA256.match(str(spec.get("sha256", ""))):
            out.append(f"spec.sha256: {spec.get('sha256')!r}: the module must be pinned (64 lower-case hex digits)")
        if not str(spec.get("url", "")).startswith(("oci://", "https://")):
            out.append(f"spec.url: {spec.get('url')!r}: an oci:// image or an https:// module")
    if doc["kind"] == "EnvoyExtensionPolicy":
        for i, w in enumerate(spec.get("wasm", [])):
            if w.get("failOpen") is not False:
                out.append(f"spec.wasm[{i}].failOpen: {w.get('failOpen')!r}: must say false")
            if w.get("rootID") != "agent_iam":
                out.append(f"spec.wasm[{i}].rootID: {w.get('rootID')!r}: must be agent_iam")
            source = w.get("code", {}).get({"HTTP": "http", "Image": "image"}.get(w.get("code", {}).get("type"), ""), {})
            if not SHA256.match(str(source.get("sha256", ""))):
                out.append(f"spec.wasm[{i}].code: the module must be pinned by sha256 (64 lower-case hex digits)")
    return out


def plugin_configs(doc):
    """[(where, configuration object, JSON string the filter receives, or a ValueError)]."""
    if doc["kind"] == "WasmPlugin":
        config = doc["spec"].get("pluginConfig", {})
        try:
            return [("spec.pluginConfig", config, istio_json(config))]
        except ValueError as e:
            return [("spec.pluginConfig", config, e)]
    if doc["kind"] == "EnvoyExtensionPolicy":
        # Envoy Gateway passes the stored JSON through (`string(wasm.Config.Raw)`).
        return [(f"spec.wasm[{i}].config", w.get("config", {}), json.dumps(w.get("config", {})))
                for i, w in enumerate(doc["spec"].get("wasm", []))]
    return []


def istio_json(config):
    """The string Istio gives the filter: `pluginConfig` is a google.protobuf.Struct, so every
    number is a double, and Istio marshals it with protojson (pilot/pkg/model/extensions.go),
    which writes a whole double below 1e21 without a fraction. An integer survives only if a
    double holds it exactly."""
    def walk(v, path):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, int):
            if float(v) != v or abs(v) > 2 ** 53:
                raise ValueError(f"{path}: {v} does not survive Istio's Struct (a double)")
            return v
        if isinstance(v, float):
            return int(v) if v.is_integer() and abs(v) < 1e21 else v
        if isinstance(v, list):
            return [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
        return {k: walk(x, f"{path}.{k}") for k, x in v.items()}
    return json.dumps(walk(config, "$"))


def clusters(config, path="$"):
    """[(JSON path, cluster name, authority or None)] of every outbound call the configuration makes."""
    out = []
    if isinstance(config, dict):
        if isinstance(config.get("cluster"), str):
            out.append((path, config["cluster"], config.get("authority")))
        for k, v in config.items():
            out += clusters(v, f"{path}.{k}")
    elif isinstance(config, list):
        for i, v in enumerate(config):
            out += clusters(v, f"{path}[{i}]")
    return out


def config_problems(doc, siblings):
    out = []
    meta_schema = json.loads((harness.ROOT / "agent_iam.meta.json").read_text())["config_schema"]
    for where, config, encoded in plugin_configs(doc):
        if isinstance(encoded, ValueError):
            out.append(f"{where}: {encoded}")
        else:
            proc = harness.cli("validate", "--config", "-", stdin=encoded, check=False)
            if proc.returncode != 0:
                out.append(f"{where}: agent-iam validate: {proc.stderr.strip()}")
        meta = jsonschema.Draft4Validator(meta_schema)
        out += [f"{where}: meta.json schema: {e.message}" for e in meta.iter_errors(config)]
        for i, route in enumerate(config.get("routes", [])):
            if "mcp" in route:
                out.append(f"{where}.routes[{i}].mcp: an MCP route needs allow_on_headers_stop_iteration, which "
                           f"{doc['kind']} cannot set (the request would wait for its body until it times out)")
        for path, cluster, authority in clusters(config):
            if doc["kind"] == "EnvoyExtensionPolicy":
                out.append(f"{where}{path[1:]}: {cluster!r}: an EnvoyExtensionPolicy gives the filter "
                           "no cluster of its own")
            else:
                out += [f"{where}{path[1:]}: {p}" for p in istio_cluster_problems(cluster, authority, siblings)]
    return out


def istio_cluster_problems(cluster, authority, siblings):
    m = ISTIO_CLUSTER.match(cluster)
    if not m:
        return [f"{cluster!r} is not an Istio cluster name (outbound|PORT|SUBSET|HOST)"]
    host, port = m["host"], int(m["port"])
    out = [] if authority in (None, host) else [f"authority {authority!r} is not the cluster's host {host!r}"]
    if IN_MESH_SERVICE.search(host):
        return out  # a Kubernetes Service: Istio makes its clusters
    entries = [d for d in siblings if d["kind"] == "ServiceEntry" and host in d["spec"].get("hosts", [])]
    ports = [p for e in entries for p in e["spec"].get("ports", []) if p.get("number") == port]
    if not ports:
        return out + [f"{cluster!r}: no ServiceEntry in this file gives {host} port {port}"]
    if any(p.get("protocol") != "HTTP" for p in ports):
        out.append(f"{cluster!r}: the ServiceEntry port must say protocol HTTP (the filter's call is plain HTTP)")
    if any(e["spec"].get("location") == "MESH_EXTERNAL" for e in entries):
        modes = []
        for rule in (d for d in siblings if d["kind"] == "DestinationRule" and d["spec"].get("host") == host):
            policy = rule["spec"].get("trafficPolicy", {})
            modes.append(policy.get("tls", {}).get("mode"))
            modes += [p.get("tls", {}).get("mode") for p in policy.get("portLevelSettings", [])
                      if p.get("port", {}).get("number") == port]
        if "SIMPLE" not in modes:
            out.append(f"{cluster!r}: {host} is outside the mesh: a DestinationRule must originate TLS "
                       f"(tls.mode SIMPLE) on port {port}")
    return out


def problems(doc, siblings):
    return schema_problems(doc) + cel_problems(doc) + safety_problems(doc) + config_problems(doc, siblings)


def cases():
    return [(path, i) for path in MANIFESTS for i, _ in enumerate(documents(path))]


def test_the_manifests_are_there_and_name_every_kind():
    kinds = {(d["apiVersion"], d["kind"]) for path in MANIFESTS for d in documents(path)}
    assert kinds == set(SCHEMAS)


@pytest.mark.parametrize("path,index", cases(), ids=[f"{p.parent.name}/{p.name}#{i}" for p, i in cases()])
def test_manifest_is_valid_and_safe(path, index):
    docs = documents(path)
    assert problems(docs[index], docs) == []


def wasmplugin(docs):
    return next(d for d in docs if d["kind"] == "WasmPlugin")


def eep_wasm(docs):
    return next(d for d in docs if d["kind"] == "EnvoyExtensionPolicy")["spec"]["wasm"][0]


def jwks_uri(docs):
    return wasmplugin(docs)["spec"]["pluginConfig"]["issuers"][0]["jwks_uri"]


def serviceentry(docs):
    return next(d for d in docs if d["kind"] == "ServiceEntry")


def drop_destination_rule(docs):
    docs[:] = [d for d in docs if d["kind"] != "DestinationRule"]


# (manifest, what is broken, how, a piece of the problem it must give).
BROKEN = [
    ("istio", "a wrong phase", lambda d: wasmplugin(d)["spec"].update(phase="AUTHENTICATION"),
     "spec.phase: must be equal to one of the allowed values ['UNSPECIFIED_PHASE', 'AUTHN', 'AUTHZ', 'STATS']"),
    ("istio", "a misspelt field", lambda d: wasmplugin(d)["spec"].update(failstrategy="FAIL_CLOSE"),
     "spec: unknown field 'failstrategy'"),
    ("istio", "a misspelt metadata field", lambda d: wasmplugin(d)["metadata"].update(lables={"a": "b"}),
     "metadata: unknown field 'lables'"),
    ("istio", "FAIL_OPEN", lambda d: wasmplugin(d)["spec"].update(failStrategy="FAIL_OPEN"),
     "must say FAIL_CLOSE"),
    ("istio", "no failStrategy", lambda d: wasmplugin(d)["spec"].pop("failStrategy"), "must say FAIL_CLOSE"),
    ("istio", "phase STATS", lambda d: wasmplugin(d)["spec"].update(phase="STATS"), "must be AUTHN"),
    ("istio", "no sha256", lambda d: wasmplugin(d)["spec"].pop("sha256"), "must be pinned"),
    ("istio", "an upper-case sha256", lambda d: wasmplugin(d)["spec"].update(sha256="AB" * 32),
     'spec.sha256: must match pattern "(^$|^[a-f0-9]{64}$)"'),
    ("istio", "selector and targetRefs", lambda d: wasmplugin(d)["spec"].update(
        targetRefs=[{"kind": "Service", "name": "tickets"}]), "only one of targetRefs or selector"),
    ("istio", "an ftp url", lambda d: wasmplugin(d)["spec"].update(url="ftp://x/agent_iam.wasm"),
     "url must have schema one of"),
    ("istio", "another pluginName", lambda d: wasmplugin(d)["spec"].update(pluginName="authz"),
     "must be agent_iam"),
    ("istio", "a misspelt plugin key", lambda d: wasmplugin(d)["spec"]["pluginConfig"].update(clock_skew=5),
     "unknown field `clock_skew`"),
    ("istio", "a fraction where the filter wants an integer",
     lambda d: jwks_uri(d).update(refresh_s=2.5),
     "agent-iam validate"),
    ("istio", "an integer no double holds",
     lambda d: wasmplugin(d)["spec"]["pluginConfig"].update(max_token_lifetime_s=2 ** 53 + 1),
     "does not survive Istio's Struct"),
    ("istio", "an MCP route", lambda d: wasmplugin(d)["spec"]["pluginConfig"]["routes"].append(
        {"name": "mcp", "prefix": "/mcp", "methods": ["POST"], "mcp": {"tools": {"t": ["tickets:read"]}}}),
     "needs allow_on_headers_stop_iteration"),
    ("istio", "a cluster named the plain Envoy way",
     lambda d: wasmplugin(d)["spec"]["pluginConfig"]["agents"]["feed"].update(cluster="agent_iam_control_plane"),
     "is not an Istio cluster name"),
    ("istio", "a cluster on a port no ServiceEntry gives",
     lambda d: jwks_uri(d).update(cluster="outbound|443||idp.example.com"),
     "no ServiceEntry in this file gives idp.example.com port 443"),
    ("istio", "an authority that is not the cluster's host",
     lambda d: jwks_uri(d).update(authority="other.example.com"),
     "is not the cluster's host"),
    ("istio", "no TLS origination to the external IdP", drop_destination_rule, "must originate TLS"),
    ("istio", "a ServiceEntry port that is not HTTP",
     lambda d: serviceentry(d)["spec"]["ports"][0].update(protocol="HTTPS"), "must say protocol HTTP"),
    ("istio", "a misspelt ServiceEntry field", lambda d: serviceentry(d)["spec"].update(resolutions="DNS"),
     "spec: unknown field 'resolutions'"),
    ("istio", "a ServiceEntry port given as a string",
     lambda d: serviceentry(d)["spec"]["ports"][0].update(number="80"), "spec.ports[0].number: must be integer"),
    ("istio", "no name", lambda d: wasmplugin(d)["metadata"].pop("name"), "an object needs a name"),
    ("envoy-gateway", "failOpen true", lambda d: eep_wasm(d).update(failOpen=True), "must say false"),
    ("envoy-gateway", "no failOpen", lambda d: eep_wasm(d).pop("failOpen"), "must say false"),
    ("envoy-gateway", "a misspelt field", lambda d: eep_wasm(d).update(failopen=False),
     "spec.wasm[0]: unknown field 'failopen'"),
    ("envoy-gateway", "a code type the schema does not know", lambda d: eep_wasm(d)["code"].update(type="OCI"),
     "spec.wasm[0].code.type: must be equal to one of the allowed values ['HTTP', 'Image']"),
    ("envoy-gateway", "type HTTP with an image", lambda d: eep_wasm(d)["code"].update(type="HTTP"),
     "If type is HTTP, http field needs to be set."),
    ("envoy-gateway", "an image without sha256", lambda d: eep_wasm(d)["code"]["image"].pop("sha256"),
     "must be pinned by sha256"),
    ("envoy-gateway", "a misspelt plugin key", lambda d: eep_wasm(d)["config"].update(clock_skew=5),
     "unknown field `clock_skew`"),
    ("envoy-gateway", "a feed on a cluster",
     lambda d: eep_wasm(d)["config"]["agents"].update(feed={"cluster": "control", "path": "/registry.json"}),
     "gives the filter no cluster of its own"),
]


@pytest.mark.parametrize("manifest,what,breaks,expected", BROKEN, ids=[f"{m}: {w}" for m, w, _, _ in BROKEN])
def test_a_broken_manifest_is_refused(manifest, what, breaks, expected):
    [path] = [p for p in MANIFESTS if p.parent.name == manifest]
    docs = copy.deepcopy(documents(path))
    breaks(docs)
    found = [p for d in docs for p in problems(d, docs)]
    assert any(expected in p for p in found), found


def test_istio_hands_the_filter_whole_numbers_as_integers():
    """What the Struct encoding does to numbers, and that the filter would refuse the
    other spelling: a config whose integers arrived as `1000.0` would not load."""
    assert istio_json({"a": 1000, "b": [30.0, 0.5], "c": True}) == '{"a": 1000, "b": [30, 0.5], "c": true}'
    config = wasmplugin(documents(MANIFESTS[0]))["spec"]["pluginConfig"]
    as_floats = json.dumps(config).replace('"refresh_s": 300', '"refresh_s": 300.0')
    assert as_floats != json.dumps(config)
    assert harness.cli("validate", "--config", "-", stdin=as_floats, check=False).returncode == 1


def test_unknown_fields_are_errors_except_where_the_schema_keeps_them():
    """Unknown fields are found at every depth, in lists too, and only where the schema keeps
    any field (x-kubernetes-preserve-unknown-fields) and in maps (labels) are they allowed."""
    for path in MANIFESTS:
        for doc in documents(path):
            free = set()
            assert schema_problems(doc, free) == []
            assert free == FREE_FORM.get(doc["kind"], set()), doc["kind"]
    docs = copy.deepcopy(documents(MANIFESTS[0]))
    plugin = wasmplugin(docs)
    plugin["metadata"]["labels"] = {"any-label": "x"}
    plugin["spec"]["selector"]["matchLabels"]["any-key"] = "x"
    plugin["spec"]["pluginConfig"]["anything"] = {"at": {"any": "depth"}}
    assert schema_problems(plugin) == []
    plugin["spec"]["match"][0]["ports"][0]["nmber"] = 8080
    plugin["spec"]["selector"] = {"matchLabel": {"app": "tickets"}}
    plugin["sepc"] = {}
    assert sorted(schema_problems(plugin)) == ["(root): unknown field 'sepc'",
                                               "spec.match[0].ports[0]: unknown field 'nmber'",
                                               "spec.selector: unknown field 'matchLabel'"]


def test_the_packages_are_the_named_versions_of_the_crds():
    """The Istio package names the CRD file it was generated from; the version named in
    GENERATED_FROM (and in docs/deploy-istio.md) must be that one."""
    meta = json.loads((CRD_PACKAGES / "node_modules" / ISTIO / "package.json").read_text())
    istio = GENERATED_FROM[ISTIO][1].removeprefix("Istio ")
    assert f"/istio/istio/{istio}/manifests/charts/base/files/crd-all.gen.yaml" in " ".join(
        meta["crd-generate"]["input"])
    guide = (harness.ROOT / "docs" / "deploy-istio.md").read_text()
    for _, named in GENERATED_FROM.values():
        assert named in guide
