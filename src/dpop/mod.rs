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

use crate::target::{canonical, canonical_host, Semicolons};

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
