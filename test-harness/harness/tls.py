"""TLS material made per run (Python `cryptography`, P-256 keys), and an HTTPS client.

  TlsMaterial(dir)   a CA, Envoy's server certificate (SAN IP:127.0.0.1, serverAuth), two
                     client certificates of that CA (`client`, `other_client`, clientAuth)
                     and one of another CA (`foreign_client`), as PEM files under `dir`
  x5t_s256(cert)     b64url(SHA-256(DER)): what a certificate-bound token's `cnf` holds
  HttpsClient        HTTP/1.1 over TLS to 127.0.0.1, verifying Envoy with the run's CA,
                     presenting a client certificate or none
"""

import base64
import copy
import datetime
import hashlib
import http.client
import ipaddress
import os
import ssl
from pathlib import Path

import harness
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=1)


def x5t_s256(cert) -> str:
    """The RFC 8705 `x5t#S256` of a certificate (a `cryptography` certificate, a `Cert`,
    or a PEM file's path): base64url of the SHA-256 of its DER."""
    if isinstance(cert, Cert):
        cert = cert.certificate
    elif isinstance(cert, (str, Path)):
        cert = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


class Cert:
    """A certificate and its private key, written as `<name>.pem` and `<name>.key`."""

    def __init__(self, dir, name, certificate, key):
        self.name, self.certificate, self.key = name, certificate, key
        self.cert_path = Path(dir) / f"{name}.pem"
        self.key_path = Path(dir) / f"{name}.key"
        self.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

    @property
    def x5t_s256(self):
        return x5t_s256(self.certificate)

    @property
    def sha256_hex(self):
        """The digest as Envoy reports it (`connection.sha256_peer_certificate_digest`)."""
        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agent-iam test harness"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject_cn, subject_key, issuer_cn, issuer_key, *, ca=False, san=None, usage=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder()
         .subject_name(_name(subject_cn))
         .issuer_name(_name(issuer_cn))
         .public_key(subject_key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + VALID_FOR)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _key():
    return ec.generate_private_key(ec.SECP256R1())


class TlsMaterial:
    """Everything an mTLS listener and its clients need, fresh, under `dir`."""

    def __init__(self, dir):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        ca_key, other_ca_key = _key(), _key()
        self.ca = Cert(self.dir, "ca", _issue("agent-iam test CA", ca_key, "agent-iam test CA", ca_key, ca=True),
                       ca_key)
        other_ca = _issue("another CA", other_ca_key, "another CA", other_ca_key, ca=True)
        self.other_ca = Cert(self.dir, "other-ca", other_ca, other_ca_key)
        server_key = _key()
        self.server = Cert(self.dir, "server", _issue(
            "gateway.agent-iam.test", server_key, "agent-iam test CA", ca_key,
            san=[x509.DNSName("gateway.agent-iam.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            usage=[ExtendedKeyUsageOID.SERVER_AUTH]), server_key)

        def client(name, spiffe, issuer_cn, issuer_key):
            k = _key()
            return Cert(self.dir, name, _issue(name, k, issuer_cn, issuer_key,
                                               san=[x509.UniformResourceIdentifier(spiffe)],
                                               usage=[ExtendedKeyUsageOID.CLIENT_AUTH]), k)

        self.client = client("build-bot-7", "spiffe://agent-iam.test/agent/build-bot-7", "agent-iam test CA", ca_key)
        self.other_client = client("thief", "spiffe://agent-iam.test/agent/thief", "agent-iam test CA", ca_key)
        self.foreign_client = client("stranger", "spiffe://elsewhere.test/agent/stranger", "another CA", other_ca_key)

    def listener(self, port):
        """The `tls` argument of `harness.envoy_yaml`: a TLS listener on `port`."""
        return {"port": port, "cert": self.server.cert_path, "key": self.server.key_path,
                "client_ca": self.ca.cert_path}

    def context(self, client=None):
        """A client `SSLContext` trusting the run's CA only (hostname checked: 127.0.0.1),
        presenting `client` (a `Cert`) or no certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca.cert_path))
        ctx.set_alpn_protocols(["http/1.1"])
        if client is not None:
            ctx.load_cert_chain(str(client.cert_path), str(client.key_path))
        return ctx


class HttpsClient(harness.Client):
    """HTTP/1.1 over TLS to Envoy's TLS listener, one keep-alive connection (reconnects when
    Envoy closes it). `headers` may be a dict or a list of (name, value) pairs (a name may
    repeat). Returns a `harness.Response` (status, lower-cased headers, body). A refused
    handshake is raised at once, never retried."""

    def __init__(self, port, material, client=None):
        super().__init__(port)
        self.context = material.context(client)

    def _connect(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.context)

    def _retry(self, error):
        return not isinstance(error, ssl.SSLError)



HCM = "envoy.filters.network.http_connection_manager"
TLS_CONTEXT = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"


def _hcm(chain):
    [f] = [f for f in chain.get("filters", []) if f.get("name") == HCM]
    return f["typed_config"]


def tls_listener_problems(doc, cert=None, key=None, client_ca=None):
    """What is wrong with the mTLS listener of an Envoy bootstrap (parsed YAML), per the
    filter's contract: a plain listener and a TLS one, the TLS one requiring a client
    certificate (of `client_ca`, with Envoy's certificate `cert`/`key` when given), ALPN h2
    and http/1.1, the client's XFCC sanitised, `x-forwarded-proto` set by Envoy, and the
    same filters and routes as the plain listener. An empty list: nothing."""
    problems = []
    listeners = doc.get("static_resources", {}).get("listeners", [])
    plain = [l for l in listeners if not any("transport_socket" in c for c in l.get("filter_chains", []))]
    tls = [l for l in listeners if any("transport_socket" in c for c in l.get("filter_chains", []))]
    if len(plain) != 1 or len(tls) != 1:
        return [f"expected one plain and one TLS listener, got {len(plain)} and {len(tls)}"]
    chains = tls[0]["filter_chains"]
    if len(chains) != 1:
        return [f"the TLS listener has {len(chains)} filter chains"]
    chain = chains[0]
    if "trust_chain_verification" in repr(doc) or "ACCEPT_UNTRUSTED" in repr(doc):
        problems.append("trust_chain_verification set (never ACCEPT_UNTRUSTED in a shipped config)")
    ts = chain["transport_socket"]
    ctx = ts.get("typed_config", {})
    if ts.get("name") != "envoy.transport_sockets.tls" or ctx.get("@type") != TLS_CONTEXT:
        problems.append(f"transport socket {ts.get('name')} {ctx.get('@type')}")
    if ctx.get("require_client_certificate") is not True:
        problems.append("require_client_certificate is not true")
    common = ctx.get("common_tls_context", {})
    if common.get("alpn_protocols") != ["h2", "http/1.1"]:
        problems.append(f"alpn_protocols {common.get('alpn_protocols')}")
    certs = common.get("tls_certificates", [])
    if len(certs) != 1:
        problems.append(f"{len(certs)} server certificates")
    elif cert is not None and (certs[0].get("certificate_chain", {}).get("filename") != str(cert)
                               or certs[0].get("private_key", {}).get("filename") != str(key)):
        problems.append(f"server certificate {certs[0]}")
    trusted = common.get("validation_context", {}).get("trusted_ca", {}).get("filename")
    if not trusted or (client_ca is not None and trusted != str(client_ca)):
        problems.append(f"validation_context.trusted_ca {trusted}")
    try:
        hcm, plain_hcm = _hcm(chain), _hcm(plain[0]["filter_chains"][0])
    except (KeyError, ValueError):
        return problems + ["no single http_connection_manager on each listener"]
    want = {"forward_client_cert_details": "SANITIZE", "use_remote_address": True, "xff_num_trusted_hops": 0}
    for name, value in want.items():
        if hcm.get(name) != value:
            problems.append(f"{name} is {hcm.get(name)!r}, not {value!r}")
    for name in ("http_filters", "route_config"):
        if hcm.get(name) != plain_hcm.get(name):
            problems.append(f"{name} differs from the plain listener's")
    if not any(f.get("name") == "envoy.filters.http.wasm" for f in hcm.get("http_filters", [])):
        problems.append("no Wasm filter on the TLS listener")
    return problems


def with_material(doc, material):
    """A copy of a bootstrap (parsed YAML) whose TLS listener uses `material`'s files."""
    doc = copy.deepcopy(doc)
    for listener in doc.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            if "transport_socket" not in chain:
                continue
            common = chain["transport_socket"]["typed_config"]["common_tls_context"]
            common["tls_certificates"] = [{"certificate_chain": {"filename": str(material.server.cert_path)},
                                           "private_key": {"filename": str(material.server.key_path)}}]
            common.setdefault("validation_context", {})["trusted_ca"] = {"filename": str(material.ca.cert_path)}
    return doc
