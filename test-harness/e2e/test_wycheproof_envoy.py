"""Wycheproof vectors inside Envoy, through the test-only hook build of the filter
(`--features test-hooks`): the host backend (Envoy's BoringSSL in the Wasm build, native
ring in the dynamic module) and the pure-Rust backend must both give the expected verdict on
every vector."""

import base64
import json

import pytest

import harness

DIR = harness.ROOT / "test-harness" / "wycheproof"


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def hooks():
    module = harness.HOOKS_DYNAMIC_MODULE if harness.BUILD == "dynamic-module" else harness.HOOKS_WASM
    if not module.exists():
        pytest.fail(f"{module} missing; run ./test-harness/test.sh")
    with harness.stack(wasm=harness.HOOKS_WASM, name="test-hooks") as e:
        c = harness.Client(e.listen_port)
        c.envoy = e
        yield c
        c.close()


def verdict(client, value):
    r = client.request("/", headers={"x-agent-iam-test-vector": value})
    assert r.status == 200, r
    return r.body.decode()


def raw_vectors(name):
    doc = json.loads((DIR / name).read_text())
    for g in doc["groups"]:
        jwk = dict(g["key"]["jwk"])
        jwk.setdefault("kid", "wycheproof")
        for t in g["tests"]:
            yield jwk, t


@pytest.mark.parametrize("backend", ["host", "pure"])
@pytest.mark.parametrize("name,count", [("ecdsa_p256_sha256_p1363.json", 252), ("ed25519.json", 150),
                                        ("rsa_pkcs1v15_2048_sha256.json", 259)])
def test_raw_vectors(hooks, backend, name, count):
    seen, wrong = 0, []
    for jwk, t in raw_vectors(name):
        seen += 1
        got = verdict(hooks, f"raw;{backend};{b64(jwk)};{t['msg']};{t['sig']}")
        want = t["result"]
        if want == "acceptable":
            assert got in ("valid", "invalid"), got
        elif got != want:
            wrong.append((t["tcId"], want, got, t["comment"]))
    assert seen == count
    assert not wrong, wrong


def test_backends_agree_on_acceptable_vectors(hooks):
    for jwk, t in raw_vectors("rsa_pkcs1v15_2048_sha256.json"):
        if t["result"] == "acceptable":
            host = verdict(hooks, f"raw;host;{b64(jwk)};{t['msg']};{t['sig']}")
            pure = verdict(hooks, f"raw;pure;{b64(jwk)};{t['msg']};{t['sig']}")
            assert host == pure, (t["tcId"], host, pure)


@pytest.mark.parametrize("backend", ["host", "pure"])
def test_jws_vectors(hooks, backend):
    doc = json.loads((DIR / "jws_es256_rs256.json").read_text())
    seen, wrong = 0, []
    for g in doc["groups"]:
        for t in g["tests"]:
            seen += 1
            jws = t["jws"]
            if not isinstance(jws, str):
                got = "invalid"  # JSON serialization is never compact: cannot even be sent as a bearer
            else:
                got = verdict(hooks, f"jws;{backend};{b64(g['public_jwk'])};{jws}")
            if got != t["result"]:
                wrong.append((g["comment"], t["tcId"], t["result"], got, t["comment"]))
    assert seen == 272
    assert not wrong, wrong
