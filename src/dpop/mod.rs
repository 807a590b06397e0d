//! Proof of possession for sender-constrained tokens: DPoP proofs (RFC 9449), checked as
//! strictly as access tokens, and their keys' thumbprints (RFC 7638). The caller compares
//! the proof's key with the token's `cnf.jkt`, keeps the replay state and builds the
//! request's own URI ([`request_htu`]); everything here is pure.

mod proof;
mod replay;
mod thumbprint;

pub use proof::{verify_proof, ProofFacts, ProofRequest, ProofRules};
pub use replay::ReplayCache;
pub use thumbprint::{jwk_thumbprint, proof_key};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::reason::Reason;
use crate::target::{canonical, canonical_host, Semicolons};

/// What a token is bound to (its `cnf` claim, RFC 7800): a DPoP key's thumbprint
/// (`jkt`, RFC 9449 §6.1) and/or a client certificate's SHA-256 (`x5t#S256`, RFC 8705 §3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Binding {
    pub jkt: Option<[u8; 32]>,
    pub x5t_s256: Option<[u8; 32]>,
}

impl Binding {
    pub fn is_bound(&self) -> bool {
        self.jkt.is_some() || self.x5t_s256.is_some()
    }

    /// How the decision record names it: `dpop`, `mtls`, `dpop+mtls` (`None`: unbound).
    pub fn method(&self) -> Option<&'static str> {
        match (self.jkt, self.x5t_s256) {
            (Some(_), Some(_)) => Some("dpop+mtls"),
            (Some(_), None) => Some("dpop"),
            (None, Some(_)) => Some("mtls"),
            (None, None) => None,
        }
    }
}

fn sha256_member(cnf: &Map<String, Value>, name: &str) -> Result<Option<[u8; 32]>, Reason> {
    match cnf.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => {
            let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| Reason::TokenCnf)?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map(Some)
                .map_err(|_| Reason::TokenCnf)
        }
        Some(_) => Err(Reason::TokenCnf),
    }
}

/// The binding a token's claims carry. A `cnf` the filter cannot check (another
/// confirmation method such as `jwk` or `jku`, a malformed value, an empty object) is
/// `token.cnf`: a bound token must never pass as a bearer token.
pub fn binding(claims: &Map<String, Value>) -> Result<Binding, Reason> {
    let Some(cnf) = claims.get("cnf") else {
        return Ok(Binding::default());
    };
    let cnf = cnf.as_object().ok_or(Reason::TokenCnf)?;
    if cnf.is_empty() || cnf.keys().any(|k| k != "jkt" && k != "x5t#S256") {
        return Err(Reason::TokenCnf);
    }
    Ok(Binding {
        jkt: sha256_member(cnf, "jkt")?,
        x5t_s256: sha256_member(cnf, "x5t#S256")?,
    })
}

/// The `algs` parameter of a `DPoP` challenge (RFC 9449 §7.1): the JOSE names of
/// `algorithms`, Ed25519 under both of its names (RFC 9864's `Ed25519`, the older `EdDSA`).
pub fn algs_param(algorithms: &[crate::keys::Alg]) -> String {
    use crate::keys::Alg;
    let mut names: Vec<&str> = Vec::new();
    for alg in algorithms {
        let these: &[&str] = match alg {
            Alg::Es256 => &["ES256"],
            Alg::EdDsa => &["EdDSA", "Ed25519"],
            Alg::Rs256 => &["RS256"],
        };
        for n in these {
            if !names.contains(n) {
                names.push(n);
            }
        }
    }
    names.join(" ")
}

/// The client certificate's SHA-256 from Envoy's `connection.sha256_peer_certificate_digest`
/// property (lower-case hex); `None` for anything else.
pub fn peer_certificate_sha256(hex_digest: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(hex_digest).ok()?;
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    <[u8; 32]>::try_from(hex::decode(text).ok()?.as_slice()).ok()
}

/// The URI a request was sent to, as `htu` must name it (RFC 9449 §4.3 with RFC 3986
/// §6.2.2/§6.2.3 normalisation): lower-case scheme and host, no default port, the canonical
/// path, no query. `None` when the parts do not make an http(s) URI.
pub fn request_htu(scheme: &str, authority: &str, canonical_path: &str) -> Option<String> {
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let host = canonical_host(authority);
    if host.is_empty() || host.contains(['@', '/', '?', '#', ' ']) {
        return None;
    }
    let host = match (scheme.as_str(), host.rsplit_once(':')) {
        ("https", Some((name, "443"))) | ("http", Some((name, "80"))) => name.to_owned(),
        _ => host,
    };
    Some(format!("{scheme}://{host}{canonical_path}"))
}

/// A proof's `htu` in the form [`request_htu`] gives: query and fragment dropped, the path
/// made canonical as request targets are. `None`: not an absolute http(s) URI the filter
/// can read (user info, no host, a path the request rules refuse).
pub fn normalize_htu(htu: &str, semicolons: Semicolons) -> Option<String> {
    let (scheme, rest) = htu.split_once("://")?;
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let path = path.split('?').next().unwrap_or_default();
    let path = if path.is_empty() { "/" } else { path };
    let target = canonical(path, semicolons).ok()?;
    request_htu(scheme, authority, &target.path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cnf_binds_to_a_key_thumbprint_or_a_certificate_digest_or_is_refused() {
        let claims = |cnf: Value| json!({"cnf": cnf}).as_object().cloned().unwrap();
        assert_eq!(binding(&Map::new()), Ok(Binding::default()));
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let b = binding(&claims(json!({"jkt": jkt}))).unwrap();
        assert_eq!(
            b.jkt.map(|d| URL_SAFE_NO_PAD.encode(d)).as_deref(),
            Some(jkt)
        );
        assert!(b.is_bound() && b.x5t_s256.is_none());
        let x5t = "bwcK0esc3ACC3DB2Y5nlESsXE8o9ltc05O89jdN-dg0";
        assert!(binding(&claims(json!({"x5t#S256": x5t})))
            .unwrap()
            .x5t_s256
            .is_some());
        for bad in [
            json!({}),
            json!("jkt"),
            json!({"jwk": {"kty": "EC"}}),
            json!({"jkt": jkt, "kid": "k"}),
            json!({"jkt": "short"}),
            json!({"jkt": format!("{jkt}=")}),
            json!({"jkt": 1}),
        ] {
            assert_eq!(
                binding(&claims(bad.clone())),
                Err(Reason::TokenCnf),
                "{bad}"
            );
        }
    }

    #[test]
    fn envoys_certificate_digest_is_lower_case_hex() {
        let hex = b"6f070ad1eb1cdc0082dc30766399e5112b1713ca3d96d734e4ef3d8dd37e760d";
        let d = peer_certificate_sha256(hex).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(d),
            "bwcK0esc3ACC3DB2Y5nlESsXE8o9ltc05O89jdN-dg0"
        );
        for bad in [
            &b""[..],
            b"6f07",
            b"zz070ad1eb1cdc0082dc30766399e5112b1713ca3d96d734e4ef3d8dd37e760d",
        ] {
            assert_eq!(peer_certificate_sha256(bad), None);
        }
    }

    #[test]
    fn htu_is_compared_normalised_without_query_or_fragment() {
        let want = request_htu("https", "API.Example.test:443", "/tickets/1").unwrap();
        assert_eq!(want, "https://api.example.test/tickets/1");
        for same in [
            "https://api.example.test/tickets/1",
            "HTTPS://API.EXAMPLE.TEST:443/tickets/1",
            "https://api.example.test/tickets/./1?page=2#x",
            "https://api.example.test//tickets/%31",
            "https://api.example.test./tickets/1",
        ] {
            assert_eq!(
                normalize_htu(same, Semicolons::Reject).as_deref(),
                Some(want.as_str()),
                "{same}"
            );
        }
        for other in [
            "http://api.example.test/tickets/1",
            "https://api.example.test:8443/tickets/1",
            "https://evil.test/tickets/1",
            "https://api.example.test/tickets/2",
        ] {
            assert_ne!(
                normalize_htu(other, Semicolons::Reject).as_deref(),
                Some(want.as_str()),
                "{other}"
            );
        }
        for bad in [
            "api.example.test/tickets/1",
            "https://user@api.example.test/tickets/1",
            "https:///tickets/1",
            "ftp://api.example.test/tickets/1",
            "https://api.example.test/a%2Fb",
        ] {
            assert_eq!(normalize_htu(bad, Semicolons::Reject), None, "{bad}");
        }
        assert_eq!(
            normalize_htu("https://h.test", Semicolons::Reject).as_deref(),
            Some("https://h.test/")
        );
        assert_eq!(
            request_htu("http", "h.test:80", "/").as_deref(),
            Some("http://h.test/")
        );
        assert_eq!(request_htu("gopher", "h.test", "/"), None);
    }
}
