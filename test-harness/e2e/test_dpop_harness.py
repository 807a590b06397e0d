"""The DPoP and TLS test harness on its own, without the filter: the proofs `harness.dpop`
makes verify with `cryptography` alone (an independent check of joserfc), their
thumbprints are RFC 7638's, each hostile proof is broken in exactly the one way it claims;
the per-run certificates chain to their CA with the right usages, their `x5t#S256` is
openssl's fingerprint, and a real Envoy TLS listener (no filter) sees the client
certificate the `HttpsClient` presents and refuses a handshake without one."""

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import http.client

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jwk import RSAKey

import harness
from harness import dpop
from harness.tls import HttpsClient, x5t_s256

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
HTU = "http://127.0.0.1:1/tickets/1"


def b64d(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def strict_b64d(segment):
    if any(c in segment for c in "=+/"):
        raise ValueError("not base64url")
    return b64d(segment)


def public_key(jwk):
    if jwk["kty"] == "EC":
        x, y = (int.from_bytes(b64d(jwk[c]), "big") for c in "xy")
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    if jwk["kty"] == "OKP":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"]))
    n, e = (int.from_bytes(b64d(jwk[c]), "big") for c in "ne")
    return rsa.RSAPublicNumbers(e, n).public_key()


def check_signature(jwk, alg, signing_input, sig):
    key = public_key(jwk)
    if alg == "ES256":
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    elif alg in ("EdDSA", "Ed25519"):
        key.verify(sig, signing_input)
    else:
        key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())


def verify(proof):
    """Header and claims of a proof whose signature verifies (`cryptography` only)."""
    h, p, s = proof.split(".")
    header, claims = json.loads(strict_b64d(h)), json.loads(strict_b64d(p))
    check_signature(header["jwk"], header["alg"], f"{h}.{p}".encode(), strict_b64d(s))
    return header, claims


def rfc7638(jwk):
    required = {"EC": ["crv", "kty", "x", "y"], "OKP": ["crv", "kty", "x"], "RSA": ["e", "kty", "n"]}[jwk["kty"]]
    text = json.dumps({m: jwk[m] for m in required}, separators=(",", ":"), sort_keys=True)
    return dpop.b64u(hashlib.sha256(text.encode()).digest())


@pytest.fixture(scope="module")
def keys():
    return dpop.keys()


def test_the_thumbprint_is_rfc_7638s():
    example = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n"
        "3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgd"
        "AZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-"
        "kEgU8awapJzKnqDKgw")}
    assert rfc7638(example) == dpop.jkt(RSAKey.import_key(example)) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "Ed25519", "RS256"])
def test_a_proof_verifies_independently_and_carries_the_dpop_members(keys, alg):
    key = keys[alg]
    header, claims = verify(dpop.proof(key, alg, "GET", HTU, TOKEN))
    assert header == {"typ": "dpop+jwt", "alg": alg, "jwk": dpop.public_jwk(key)}
    assert "d" not in header["jwk"] and "kid" not in header["jwk"]
    assert set(claims) == {"jti", "htm", "htu", "iat", "ath"} and claims["htm"] == "GET" and claims["htu"] == HTU
    assert claims["ath"] == dpop.b64u(hashlib.sha256(TOKEN.encode()).digest())
    assert dpop.jkt(key) == rfc7638(header["jwk"]) == rfc7638(key.as_dict(private=True))
    assert dpop.bound(key) == {"claims": {"cnf": {"jkt": dpop.jkt(key)}}}


def test_eddsa_and_ed25519_are_one_key_and_one_thumbprint(keys):
    assert keys["EdDSA"] is keys["Ed25519"]
    a = verify(dpop.proof(keys["EdDSA"], "EdDSA", "GET", HTU))[0]
    b = verify(dpop.proof(keys["Ed25519"], "Ed25519", "GET", HTU))[0]
    assert a["jwk"] == b["jwk"] and (a["alg"], b["alg"]) == ("EdDSA", "Ed25519")


def test_fresh_jtis_and_every_member_can_be_set_added_or_dropped(keys):
    key = keys["ES256"]
    assert len({verify(dpop.proof(key, "ES256", "GET", HTU))[1]["jti"] for _ in range(5)}) == 5
    header, claims = verify(dpop.proof(key, "ES256", "POST", HTU, None, iat=5, jti="j", typ="JWT",
                                       header_extra={"kid": "k"}, claims_extra={"nonce": "n"}, drop=("htu",)))
    assert header["typ"] == "JWT" and header["kid"] == "k"
    assert claims == {"jti": "j", "htm": "POST", "iat": 5, "nonce": "n"}
    header, claims = verify(dpop.proof(key, "ES256", "GET", HTU, TOKEN, drop=("ath", "typ")))
    assert "typ" not in header and "ath" not in claims


def test_the_checker_fails_a_tampered_proof(keys):
    h, _, s = dpop.proof(keys["ES256"], "ES256", "GET", HTU, TOKEN).split(".")
    forged = dpop.b64u(b'{"htm":"POST"}')
    with pytest.raises(InvalidSignature):
        verify(f"{h}.{forged}.{s}")


def test_each_hostile_proof_is_broken_only_the_way_it_says(keys):
    key = keys["ES256"]
    h, p, s = dpop.alg_none(key, "GET", HTU, TOKEN).split(".")
    assert json.loads(b64d(h))["alg"] == "none" and s and json.loads(b64d(p))["htm"] == "GET"

    h, p, s = dpop.hs256_symmetric("GET", HTU, TOKEN).split(".")
    header = json.loads(b64d(h))
    assert header["alg"] == "HS256" and header["jwk"]["kty"] == "oct"
    assert hmac.compare_digest(b64d(s), hmac.new(b64d(header["jwk"]["k"]), f"{h}.{p}".encode(), hashlib.sha256).digest())

    for k, alg in ((key, "ES256"), (keys["RS256"], "RS256")):
        header, _ = verify(dpop.private_jwk(k, alg, "GET", HTU, TOKEN))
        assert "d" in header["jwk"]

    for where, member in (("claims", '"htm"'), ("header", '"alg"')):
        proof = dpop.duplicate_member(key, "ES256", "GET", HTU, TOKEN, where=where)
        h, p, _ = proof.split(".")
        assert (b64d(p) if where == "claims" else b64d(h)).decode().count(member) == 2
        verify(proof)  # correctly signed: only the duplicate is wrong

    assert len(dpop.bad_base64url(key, "ES256", "GET", HTU, TOKEN, how="segments").split(".")) == 4
    for how in ("padded", "alphabet"):
        h, p, s = dpop.bad_base64url(key, "ES256", "GET", HTU, TOKEN, how=how).split(".")
        with pytest.raises(ValueError):
            strict_b64d(p)
        check_signature(dpop.public_jwk(key), "ES256", f"{h}.{p}".encode(), strict_b64d(s))
        assert json.loads(base64.b64decode(p + "=" * (-len(p) % 4)))["htm"] == "GET"


@pytest.fixture(scope="module")
def material():
    return harness.tls_material()


def openssl(*args):
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)


def test_x5t_s256_is_openssls_sha256_fingerprint(material):
    certs = [material.client, material.other_client, material.foreign_client, material.server]
    for c in certs:
        fp = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", c.cert_path).stdout.strip().split("=", 1)[1]
        digest = bytes.fromhex(fp.replace(":", ""))
        assert x5t_s256(c) == x5t_s256(c.cert_path) == x5t_s256(c.certificate) == c.x5t_s256 == dpop.b64u(digest)
        assert c.sha256_hex == digest.hex()
    assert len({c.x5t_s256 for c in certs}) == len(certs)


def test_certificates_chain_to_their_ca_with_their_usages(material):
    m = material
    for cert, ca, purpose in ((m.server, m.ca, "sslserver"), (m.client, m.ca, "sslclient"),
                              (m.other_client, m.ca, "sslclient"), (m.foreign_client, m.other_ca, "sslclient")):
        r = openssl("verify", "-CAfile", ca.cert_path, "-purpose", purpose, cert.cert_path)
        assert r.returncode == 0, r.stdout + r.stderr
    assert openssl("verify", "-CAfile", m.ca.cert_path, m.foreign_client.cert_path).returncode != 0
    assert openssl("verify", "-CAfile", m.ca.cert_path, "-purpose", "sslclient", m.server.cert_path).returncode != 0
    ext = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", m.server.cert_path).stdout
    assert "IP Address:127.0.0.1" in ext
    assert (m.client.key_path.stat().st_mode & 0o777) == 0o600
    assert material.dir.is_relative_to(harness.OUT)


def mtls_listener_yaml(m, port, admin):
    """An Envoy TLS listener requiring a client certificate, answering itself with the peer
    certificate's SHA-256 and the `x-forwarded-proto` it set."""
    return f"""admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: agents_mtls
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: {{filename: {m.server.cert_path}}}
              private_key: {{filename: {m.server.key_path}}}
            validation_context:
              trusted_ca: {{filename: {m.ca.cert_path}}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: agents_mtls
          use_remote_address: true
          xff_num_trusted_hops: 0
          route_config:
            virtual_hosts:
            - name: api
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 200, body: {{inline_string: "ok"}}}}
                response_headers_to_add:
                - header: {{key: x-peer-sha256, value: "%DOWNSTREAM_PEER_FINGERPRINT_256%"}}
                - header: {{key: x-proto, value: "%REQ(X-FORWARDED-PROTO)%"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


def test_envoy_sees_the_presented_certificate_and_refuses_none_or_a_strangers(material):
    port, admin = harness.free_port(), harness.free_port()
    with harness.Envoy(mtls_listener_yaml(material, port, admin), name="tls-harness"):
        for cert in (material.client, material.other_client):
            c = HttpsClient(port, material, cert)
            r = c.request("/tickets/1", headers=[("x-a", "1"), ("x-a", "2")])
            assert r.status == 200 and r.headers["x-peer-sha256"] == cert.sha256_hex, r
            assert r.headers["x-proto"] == "https"
            c.close()
        for cert in (None, material.foreign_client):
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                HttpsClient(port, material, cert).request("/tickets/1")
