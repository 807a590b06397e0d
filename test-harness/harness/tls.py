"""TLS material made per run (Python `cryptography`, P-256 keys), and an HTTPS client.

  TlsMaterial(dir)   a CA, Envoy's server certificate (SAN IP:127.0.0.1, serverAuth), two
                     client certificates of that CA (`client`, `other_client`, clientAuth)
                     and one of another CA (`foreign_client`), as PEM files under `dir`
  x5t_s256(cert)     b64url(SHA-256(DER)): what a certificate-bound token's `cnf` holds
  HttpsClient        HTTP/1.1 over TLS to 127.0.0.1, verifying Envoy with the run's CA,
                     presenting a client certificate or none
"""

import base64
import datetime
import hashlib
import http.client
import ipaddress
import os
import ssl
from pathlib import Path

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


class HttpsClient:
    """HTTP/1.1 over TLS to Envoy's TLS listener, one keep-alive connection (reconnects when
    Envoy closes it). `headers` may be a dict or a list of (name, value) pairs (a name may
    repeat). Returns a `harness.Response` (status, lower-cased headers, body)."""

    def __init__(self, port, material, client=None):
        self.port = port
        self.context = material.context(client)
        self.conn = None

    def request(self, path="/", headers=None, method="GET", token=None, body=None):
        from harness import Response, send
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if token is not None:
            pairs.append(("authorization", f"Bearer {token}"))
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.context)
            try:
                status, resp_headers, data, close = send(self.conn, method, path, pairs, body)
                if close:
                    self.close()
                return Response(status, resp_headers, data)
            except (http.client.HTTPException, OSError) as e:
                self.close()
                if attempt or isinstance(e, ssl.SSLError):
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
