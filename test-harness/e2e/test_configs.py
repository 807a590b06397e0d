"""Every configuration we ship is loaded by something: Envoy itself, the filter's own
parser, or the JSON Schema Kong validates with."""

import json
import subprocess

import jsonschema
import pytest
import yaml

import harness
from harness.tls import tls_listener_problems, with_material

ENVOY_CONFIGS = sorted((harness.ROOT / "envoy").glob("*.yaml"))
KONG_CONFIGS = sorted((harness.ROOT / "kong").glob("*.yaml"))
MTLS_CONFIG = harness.ROOT / "envoy" / "envoy.mtls.yaml"


def has_tls_listener(doc):
    return any("transport_socket" in chain for listener in doc.get("static_resources", {}).get("listeners", [])
               for chain in listener.get("filter_chains", []))


def test_there_are_configs_to_check():
    assert ENVOY_CONFIGS and KONG_CONFIGS


@pytest.mark.parametrize("path", ENVOY_CONFIGS, ids=[p.name for p in ENVOY_CONFIGS])
def test_envoy_config_validates(path):
    """Envoy loads it. A TLS listener's certificate files are the operator's: it is loaded
    with this run's certificates in their place."""
    doc = yaml.safe_load(path.read_text())
    if has_tls_listener(doc):
        copy = harness.OUT / f"validate-{path.name}"
        harness.OUT.mkdir(parents=True, exist_ok=True)
        copy.write_text(yaml.safe_dump(with_material(doc, harness.tls_material())))
        path = copy
    proc = subprocess.run(["envoy", "--mode", "validate", "-c", str(path)], capture_output=True, text=True,
                          cwd=harness.ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "agent-iam 0.1.0 configured" in proc.stdout + proc.stderr


@pytest.mark.parametrize("path", ENVOY_CONFIGS, ids=[p.name for p in ENVOY_CONFIGS])
def test_every_shipped_envoy_config_fails_closed(path):
    """Each Wasm filter in a shipped bootstrap says FAIL_CLOSED (a trapped VM denies) and
    lets the filter hold the headers while it reads an MCP body (without the knob, Envoy
    turns the filter's pause into "stop everything" and an MCP POST hangs)."""
    text = path.read_text()
    filters = text.count("envoy.filters.http.wasm")
    assert filters >= 1 and text.count("failure_policy: FAIL_CLOSED") == filters
    assert text.count("allow_on_headers_stop_iteration: true") == filters


def test_shipped_envoy_yaml_is_generated_from_plugin_json():
    generated = harness.cli("generate", "envoy", "--no-module-sha256", "--config", harness.PLUGIN).stdout
    assert (harness.ROOT / "envoy" / "envoy.yaml").read_text() == generated


@pytest.mark.skipif(not MTLS_CONFIG.exists(), reason="no envoy/envoy.mtls.yaml shipped")
def test_shipped_mtls_config_requires_client_certificates_with_the_filter_of_envoy_yaml():
    """The mTLS bootstrap: its TLS listener is the contract's (a client certificate required,
    XFCC sanitised, never ACCEPT_UNTRUSTED, the plain listener's filters and routes), and it
    runs the same filter configuration as envoy/envoy.yaml."""
    doc = yaml.safe_load(MTLS_CONFIG.read_text())
    assert tls_listener_problems(doc) == []
    plain = yaml.safe_load((harness.ROOT / "envoy" / "envoy.yaml").read_text())

    def filters(d):
        [hcm] = [f["typed_config"] for f in d["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                 if f["name"] == "envoy.filters.network.http_connection_manager"]
        return hcm["http_filters"]

    assert filters(doc) == filters(plain)


@pytest.mark.parametrize("base", ["envoy/plugin.base.json", "examples/profiles/plugin.base.json"])
def test_rendered_plugin_configs_hold_the_shipped_policies(base):
    rendered = harness.ROOT / base.replace("plugin.base.json", "plugin.json")
    assert rendered.read_text() == harness.cli("policy", "render", "--config", base, "policies").stdout


def test_plugin_json_is_valid():
    harness.cli("validate", "--config", harness.PLUGIN)


def kong_filter_configs():
    for path in KONG_CONFIGS:
        doc = yaml.safe_load(path.read_text())
        for chain in doc.get("filter_chains", []):
            for f in chain["filters"]:
                if f["name"] == "agent_iam":
                    yield path.name, f["config"]


def test_kong_meta_schema_is_draft4_and_current():
    meta = json.loads((harness.ROOT / "agent_iam.meta.json").read_text())
    jsonschema.Draft4Validator.check_schema(meta["config_schema"])
    generated = json.loads(harness.cli("generate", "kong-meta").stdout)
    assert meta == generated


def test_kong_examples_match_the_schema_and_the_filter():
    meta = json.loads((harness.ROOT / "agent_iam.meta.json").read_text())
    validator = jsonschema.Draft4Validator(meta["config_schema"])
    configs = list(kong_filter_configs())
    assert configs
    for name, config in configs:
        errors = [e.message for e in validator.iter_errors(config)]
        assert not errors, (name, errors)
        tmp = harness.OUT / f"kong-{name}.json"
        harness.OUT.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(config))
        harness.cli("validate", "--config", tmp)


def test_schema_rejects_what_the_filter_rejects():
    meta = json.loads((harness.ROOT / "agent_iam.meta.json").read_text())
    validator = jsonschema.Draft4Validator(meta["config_schema"])
    config = json.loads(harness.PLUGIN.read_text())
    assert validator.is_valid(config)
    config["clock_skew"] = 1
    assert not validator.is_valid(config)
