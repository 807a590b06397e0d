"""Certificate-bound tokens (RFC 8705) end to end through a real Envoy with a second, mTLS
listener (`generate envoy --tls-listen`, certificates made for the run): a token whose
`cnf["x5t#S256"]` names a client certificate is served only on a TLS connection that
presented that certificate. Envoy itself refuses a handshake without a certificate of the
trusted CA; a token bound to a certificate sent over plain HTTP is refused by the filter.
Each test checks what the recording upstream received, the reason and the challenge."""

import http.client
import ssl

import pytest
import yaml

import harness
from harness import dpop
from harness.bound import assert_allowed, assert_denied, reached, send
from harness.tls import HttpsClient, tls_listener_problems


@pytest.fixture(scope="module")
def envoy():
    """The shipped plugin, a plain listener and an mTLS one."""
    with harness.stack(name="mtls", tls=True) as e:
        yield e


@pytest.fixture(scope="module")
def material(envoy):
    return envoy.tls


def https(envoy, cert):
    return HttpsClient(envoy.tls_port, envoy.tls, cert)


@pytest.fixture(scope="module")
def token(material):
    """A token bound to the `client` certificate."""
    [t] = harness.mint([{"claims": {"cnf": {"x5t#S256": material.client.x5t_s256}}}])
    return t


def test_the_generated_tls_listener_is_the_contracts(envoy, material):
    doc = yaml.safe_load(envoy.config.read_text())
    assert tls_listener_problems(doc, material.server.cert_path, material.server.key_path, material.ca.cert_path) == []
    ports = {l["address"]["socket_address"]["port_value"] for l in doc["static_resources"]["listeners"]}
    assert ports == {envoy.listen_port, envoy.tls_port}


def test_the_bound_certificate_is_allowed_and_a_forged_xfcc_never_reaches_the_upstream(envoy, material, token):
    c = https(envoy, material.client)
    forged = [("x-forwarded-client-cert", f"Hash={material.other_client.sha256_hex};Subject=\"CN=thief\"")]
    r = send(c, token, scheme="Bearer", headers=forged)
    e = assert_allowed(envoy, r, token, scheme="Bearer")
    assert e["binding"] == {"method": "mtls", "x5t#S256": material.client.x5t_s256,
                            "peer_certificate": material.client.x5t_s256}
    [seen] = reached(envoy, r)
    assert "x-forwarded-client-cert" not in seen, seen
    assert seen["x-forwarded-proto"] == ["https"]
    c.close()


def test_another_certificate_of_the_trusted_ca_is_refused(envoy, material, token):
    c = https(envoy, material.other_client)
    e = assert_denied(envoy, send(c, token, scheme="Bearer"), "mtls.certificate_mismatch", on="Bearer")
    # Which certificate was presented instead is recorded.
    assert e["binding"] == {"method": "mtls", "x5t#S256": material.client.x5t_s256,
                            "peer_certificate": material.other_client.x5t_s256}
    c.close()


@pytest.mark.parametrize("forged", [False, True], ids=["plain", "with forged XFCC and x-forwarded-proto"])
def test_the_bound_token_over_plain_http_is_refused(envoy, material, token, forged):
    c = harness.Client(envoy.listen_port)
    headers = [("x-forwarded-client-cert", f"Hash={material.client.sha256_hex}"),
               ("x-forwarded-proto", "https")] if forged else []
    r = send(c, token, scheme="Bearer", headers=headers)
    assert_denied(envoy, r, "mtls.certificate_missing", on="Bearer")
    c.close()


@pytest.mark.parametrize("who", ["no certificate", "a certificate of another CA"])
def test_envoy_refuses_the_handshake_without_a_trusted_client_certificate(envoy, material, token, who):
    cert = None if who == "no certificate" else material.foreign_client
    before = len(envoy.upstream.server.seen)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        https(envoy, cert).request("/tickets/1", token=token)
    assert len(envoy.upstream.server.seen) == before


def test_an_unbound_token_over_tls_is_allowed(envoy, material):
    [unbound] = harness.mint([{}])
    c = https(envoy, material.other_client)
    e = assert_allowed(envoy, send(c, unbound, scheme="Bearer"), unbound, scheme="Bearer")
    assert "binding" not in e, e
    c.close()


def test_a_dpop_proof_on_the_tls_listener_names_https(envoy, material):
    key = dpop.new_key("ES256")
    [token] = harness.mint([dpop.bound(key)])
    c = https(envoy, material.client)
    url = f"https://127.0.0.1:{envoy.tls_port}/tickets/1"
    proof = dpop.proof(key, "ES256", "GET", url, token)
    assert_allowed(envoy, send(c, token, proof), token, proof)
    proof = dpop.proof(key, "ES256", "GET", url.replace("https:", "http:"), token)
    assert_denied(envoy, send(c, token, proof), "dpop.htu", on="DPoP")
    c.close()
