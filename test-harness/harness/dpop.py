"""DPoP proofs (RFC 9449) for the tests and the demo, made with an independent JOSE library
(PyPI `joserfc`) or, for the hostile ones, assembled by hand from base64url segments and
signed with `cryptography` directly — never with the project's own code.

  keys()            one fresh key per algorithm: ES256 (P-256), EdDSA/Ed25519, RS256 (2048)
  jkt(key)          the RFC 7638 thumbprint a bound token carries in `cnf.jkt`
  bound(key)        the `dev mint` recipe part binding a token to `key`
  ath(token)        b64url(SHA-256(token)): the proof's `ath`
  proof(...)        a signed proof, any member changed, added or dropped
  raw(...)          a compact JWS from the exact header and payload texts given
  alg_none / hs256_symmetric / private_jwk / duplicate_member / bad_base64url: hostile proofs
"""

import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

TYP = "dpop+jwt"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(segment: str) -> bytes:
    """Decodes base64url with or without padding (lenient: for reading what was made)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def compact_json(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def new_key(alg):
    """A fresh private key for `alg` (ES256, EdDSA, Ed25519 or RS256)."""
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    if alg in ("EdDSA", "Ed25519"):
        return OKPKey.generate_key("Ed25519")
    if alg == "RS256":
        return RSAKey.generate_key(2048)
    raise ValueError(f"no key type for {alg}")


def keys():
    """{alg: key} with one fresh key per proof algorithm (EdDSA and Ed25519 share one)."""
    ed = new_key("EdDSA")
    return {"ES256": new_key("ES256"), "EdDSA": ed, "Ed25519": ed, "RS256": new_key("RS256")}


def public_jwk(key):
    """The public JWK as a proof's header embeds it (`{crv,kty,x[,y]}` or `{e,kty,n}`)."""
    return key.as_dict(private=False)


def jkt(key) -> str:
    """The RFC 7638 SHA-256 thumbprint of `key`, base64url (what `cnf.jkt` holds)."""
    return key.thumbprint()


def bound(key, **claims):
    """A `dev mint` recipe whose token is bound to `key` (`cnf.jkt`), plus `claims`."""
    return {"claims": {"cnf": {"jkt": jkt(key)}, **claims}}


def ath(access_token: str) -> str:
    return b64u(hashlib.sha256(access_token.encode("ascii")).digest())


def proof(key, alg, htm, htu, access_token=None, *, iat=None, jti=None, jwk=None, typ=TYP,
          header_extra=None, claims_extra=None, drop=()):
    """A DPoP proof signed by `key` with `alg` (joserfc). Claims: a fresh `jti`, `htm`,
    `htu`, `iat` (now), and `ath` when `access_token` is given. `jwk` replaces the embedded
    public key (e.g. a private one); `header_extra` / `claims_extra` add or replace members;
    `drop` names members to leave out (header or claims: the names do not overlap)."""
    header = {"typ": typ, "alg": alg, "jwk": public_jwk(key) if jwk is None else jwk}
    claims = {"jti": jti or str(uuid.uuid4()), "htm": htm, "htu": htu,
              "iat": int(time.time()) if iat is None else iat}
    if access_token is not None:
        claims["ath"] = ath(access_token)
    header.update(header_extra or {})
    claims.update(claims_extra or {})
    for name in drop:
        header.pop(name, None)
        claims.pop(name, None)
    with warnings.catch_warnings():  # joserfc warns that RFC 9864 deprecates the name "EdDSA"
        warnings.simplefilter("ignore")
        return jws.serialize_compact(header, compact_json(claims).encode(), key,
                                     algorithms=[header.get("alg", alg)])


def claims_for(htm, htu, access_token=None, *, iat=None, jti=None):
    """The claims of a well-formed proof, as a dict (for the hand-assembled ones)."""
    claims = {"jti": jti or str(uuid.uuid4()), "htm": htm, "htu": htu,
              "iat": int(time.time()) if iat is None else iat}
    if access_token is not None:
        claims["ath"] = ath(access_token)
    return claims


def sign(key, alg, signing_input: bytes) -> bytes:
    """The JWS signature of `signing_input` with `cryptography` alone (ES256 as r||s)."""
    private = key.private_key
    if alg == "ES256":
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg in ("EdDSA", "Ed25519"):
        return private.sign(signing_input)
    if alg == "RS256":
        return private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(f"cannot sign {alg}")


def raw(header_text: str, payload_text: str, key=None, alg=None, *, signature=None,
        header_segment=None, payload_segment=None):
    """A compact JWS from these exact texts: the segments are their base64url (or the
    `*_segment` given verbatim), signed over the segments as sent with `key`/`alg`, or
    carrying `signature` (bytes) as is."""
    h = header_segment if header_segment is not None else b64u(header_text.encode())
    p = payload_segment if payload_segment is not None else b64u(payload_text.encode())
    if signature is None:
        signature = sign(key, alg, f"{h}.{p}".encode())
    return f"{h}.{p}.{b64u(signature)}"


# ---- hostile proofs ----------------------------------------------------------------------

def alg_none(key, htm, htu, access_token, *, signature=b"\x00" * 32):
    """`alg: none` with the real public key and a non-empty signature segment (an empty one
    is not a compact JWS the filter reads at all)."""
    header = compact_json({"typ": TYP, "alg": "none", "jwk": public_jwk(key)})
    return raw(header, compact_json(claims_for(htm, htu, access_token)), signature=signature)


def hs256_symmetric(htm, htu, access_token, secret=b"attacker-chosen-secret-0123456789"):
    """HS256 over a symmetric `jwk` (`kty: oct`) that carries its own secret: a valid HMAC,
    so only the algorithm rule refuses it."""
    header = compact_json({"typ": TYP, "alg": "HS256", "jwk": {"kty": "oct", "k": b64u(secret)}})
    h, p = b64u(header.encode()), b64u(compact_json(claims_for(htm, htu, access_token)).encode())
    mac = hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64u(mac)}"


def private_jwk(key, alg, htm, htu, access_token):
    """A correctly signed proof whose `jwk` is the whole private key (`d`, and `p`, `q`...
    for RSA)."""
    header = compact_json({"typ": TYP, "alg": alg, "jwk": key.as_dict(private=True)})
    return raw(header, compact_json(claims_for(htm, htu, access_token)), key, alg)


def duplicate_member(key, alg, htm, htu, access_token, where="claims"):
    """A correctly signed proof with a member twice: `htm` in the claims (the request's
    method first, another one last), or `alg` in the header."""
    claims = claims_for(htm, htu, access_token)
    payload = compact_json(claims)
    header = compact_json({"typ": TYP, "alg": alg, "jwk": public_jwk(key)})
    if where == "claims":
        other = "DELETE" if htm != "DELETE" else "GET"
        payload = payload[:-1] + f',"htm":"{other}"}}'
    else:
        header = header.replace(f'"alg":"{alg}"', f'"alg":"{alg}","alg":"{alg}"', 1)
    return raw(header, payload, key, alg)


def bad_base64url(key, alg, htm, htu, access_token, how="padded"):
    """A correctly signed proof (over the segments as sent) that is not strict base64url:
    `padded` (a payload segment with `=` padding), `alphabet` (a payload segment in the
    standard alphabet, with a `/`), or `segments` (four segments)."""
    header = compact_json({"typ": TYP, "alg": alg, "jwk": public_jwk(key)})
    claims = claims_for(htm, htu, access_token)
    if how == "padded":
        # The payload's length is adjusted so that its base64 needs padding.
        while len(compact_json(claims).encode()) % 3 == 0:
            claims["jti"] += "x"
        payload = compact_json(claims)
        return raw(header, payload, key, alg,
                   payload_segment=base64.urlsafe_b64encode(payload.encode()).decode())
    if how == "alphabet":
        # A `jti` whose base64 holds a `/` (from "???"), the payload sent in the standard
        # alphabet.
        claims["jti"] += "-???"
        while "/" not in base64.b64encode(compact_json(claims).encode()).decode():
            claims["jti"] += "?"
        payload = compact_json(claims)
        segment = base64.b64encode(payload.encode()).rstrip(b"=").decode()
        return raw(header, payload, key, alg, payload_segment=segment)
    if how == "segments":
        return raw(header, compact_json(claims), key, alg) + ".AAAA"
    raise ValueError(how)
