//! Signature checks behind one small interface, with two backends:
//!
//! * [`PureRust`]: jwt-compact's algorithms (p256, rsa) and ed25519-dalek. Runs everywhere:
//!   the CLI, Kong, the playground, and for EdDSA on every host.
//! * [`HostCrypto`]: Envoy's BoringSSL through the `verify_signature` foreign function —
//!   ES256 and RS256 only (Envoy always hashes, Ed25519 needs the raw message). About 10x
//!   faster than pure Rust inside V8. The proxy-wasm call itself is injected ([`ForeignCall`])
//!   so everything here is tested natively.

use jwt_compact::alg::{Es256, Rsa, RsaSignature};
use jwt_compact::{Algorithm, AlgorithmSignature};

use crate::keys::{Alg, KeyMaterial, VerifyKey};

/// The host failed to answer: the request is denied with `internal.error`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("host crypto call failed: {0}")]
pub struct CryptoError(pub String);

/// Verifies `sig` over `signing_input` with `key`. `Ok(false)` is a bad signature.
pub trait SignatureBackend {
    fn verify(
        &self,
        key: &VerifyKey,
        signing_input: &[u8],
        sig: &[u8],
    ) -> Result<bool, CryptoError>;
    /// Backend used for `alg`, for the start-up log.
    fn name_for(&self, alg: Alg) -> &'static str;
}

/// Pure-Rust verification through jwt-compact.
#[derive(Debug, Default, Clone, Copy)]
pub struct PureRust;

impl SignatureBackend for PureRust {
    fn verify(
        &self,
        key: &VerifyKey,
        signing_input: &[u8],
        sig: &[u8],
    ) -> Result<bool, CryptoError> {
        Ok(match &key.material {
            KeyMaterial::Es256(vk) => {
                // try_from_slice rejects r = 0 or s = 0 ("psychic signatures") and other lengths.
                sig.len() == 64
                    && <Es256 as Algorithm>::Signature::try_from_slice(sig)
                        .is_ok_and(|s| Es256.verify_signature(&s, vk, signing_input))
            }
            KeyMaterial::Ed25519(pk) => {
                // RFC 8032 strict: canonical S, no small-order key or R (Wycheproof-tested).
                <[u8; 64]>::try_from(sig).is_ok_and(|s| {
                    pk.verify_strict(signing_input, &ed25519_dalek::Signature::from_bytes(&s))
                        .is_ok()
                })
            }
            KeyMaterial::Rs256(pk) => {
                sig.len() == rsa_len(key)
                    && RsaSignature::try_from_slice(sig)
                        .is_ok_and(|s| Rsa::rs256().verify_signature(&s, pk, signing_input))
            }
        })
    }

    fn name_for(&self, _alg: Alg) -> &'static str {
        "pure-rust"
    }
}

/// The one proxy-wasm call the host backend needs, injected by `src/host/`.
pub trait ForeignCall {
    /// Calls the host's foreign function `name`; `Ok(None)` when it returned nothing.
    fn call(&self, name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, String>;
}

/// Envoy's BoringSSL for ES256/RS256; pure Rust for EdDSA.
pub struct HostCrypto<C> {
    call: C,
}

impl<C: ForeignCall> HostCrypto<C> {
    pub fn new(call: C) -> Self {
        HostCrypto { call }
    }

    /// Configure-time check that the host answers `verify_signature` at all (a host
    /// without it answers an error, Envoy `NotFound`): a dummy signature under a fixed
    /// P-256 key (the curve's generator point) must come back as a verdict.
    pub fn probe(&self) -> Result<(), String> {
        let args = encode_verify_args(&PROBE_SPKI, &dummy_es256(), b"agent-iam host crypto probe");
        match self.call.call(VERIFY_FN, &args) {
            Err(e) => Err(e),
            Ok(None) => Err("no result".into()),
            Ok(Some(bytes)) => match parse_verify_result(&bytes) {
                HostVerdict::Valid => Err("it accepted a dummy signature".into()),
                HostVerdict::Invalid(Some(err)) if err.contains("initialize") => {
                    Err(format!("it cannot import a P-256 key: {err}"))
                }
                HostVerdict::Invalid(_) => Ok(()),
            },
        }
    }

    /// Configure-time check that BoringSSL imports `key`: a dummy signature must be
    /// *rejected as a signature*, not fail key import. Envoy does not check keys itself.
    pub fn self_test(&self, key: &VerifyKey) -> Result<(), String> {
        let dummy = match key.alg {
            Alg::EdDsa => return Ok(()),
            Alg::Es256 => dummy_es256(),
            Alg::Rs256 => vec![1u8; rsa_len(key)],
        };
        let args = encode_verify_args(&key.spki_der, &dummy, b"agent-iam key self-test");
        match self.call.call(VERIFY_FN, &args) {
            Err(e) => Err(format!(
                "host crypto unavailable ({e}); set \"signature_backend\": \"pure\""
            )),
            Ok(None) => Err("host crypto returned nothing for the key self-test".into()),
            Ok(Some(bytes)) => match parse_verify_result(&bytes) {
                HostVerdict::Valid => Err("host crypto accepted a dummy signature".into()),
                HostVerdict::Invalid(Some(err)) if err.contains("initialize") => {
                    Err(format!("host crypto cannot import the key: {err}"))
                }
                HostVerdict::Invalid(_) => Ok(()),
            },
        }
    }
}

/// SubjectPublicKeyInfo (DER) of the P-256 public key that is the curve's generator point
/// (private key 1): a valid key no signature in the probe can verify under.
const PROBE_SPKI: [u8; 91] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1,
    0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d,
    0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe,
    0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b,
    0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
];

/// r = s = 1 (DER): a well-formed ECDSA signature that can never verify.
fn dummy_es256() -> Vec<u8> {
    let mut sig = [0u8; 64];
    for i in [31, 63] {
        if let Some(b) = sig.get_mut(i) {
            *b = 1;
        }
    }
    p1363_to_der(&sig).unwrap_or_default()
}

fn rsa_len(key: &VerifyKey) -> usize {
    match &key.material {
        KeyMaterial::Rs256(pk) => rsa::traits::PublicKeyParts::size(pk),
        _ => 0,
    }
}

impl<C: ForeignCall> SignatureBackend for HostCrypto<C> {
    fn verify(
        &self,
        key: &VerifyKey,
        signing_input: &[u8],
        sig: &[u8],
    ) -> Result<bool, CryptoError> {
        let host_sig = match key.alg {
            Alg::EdDsa => return PureRust.verify(key, signing_input, sig),
            Alg::Es256 => match p1363_to_der(sig) {
                Some(der) => der,
                None => return Ok(false),
            },
            Alg::Rs256 => {
                if sig.len() != rsa_len(key) {
                    return Ok(false);
                }
                sig.to_vec()
            }
        };
        let args = encode_verify_args(&key.spki_der, &host_sig, signing_input);
        match self.call.call(VERIFY_FN, &args) {
            Err(e) => Err(CryptoError(e)),
            Ok(None) => Err(CryptoError("empty result".into())),
            Ok(Some(bytes)) => Ok(parse_verify_result(&bytes) == HostVerdict::Valid),
        }
    }

    fn name_for(&self, alg: Alg) -> &'static str {
        match alg {
            Alg::EdDsa => "pure-rust",
            Alg::Es256 | Alg::Rs256 => "host",
        }
    }
}

/// Envoy's foreign function name.
pub const VERIFY_FN: &str = "verify_signature";

/// JWS ES256 `r || s` (64 bytes) to a DER `ECDSA-Sig-Value`. `None` for a wrong length
/// or a zero `r`/`s`, which can never be valid.
pub use crate::keys::der::ecdsa_sig as p1363_to_der;

fn put_bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    let mut len = bytes.len();
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(bytes);
}

/// `envoy.source.extensions.common.wasm.VerifySignatureArguments`, hand-encoded proto3:
/// 1 hash_function, 2 public_key (DER), 3 signature, 4 text.
pub fn encode_verify_args(spki_der: &[u8], sig: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki_der.len() + sig.len() + text.len() + 24);
    put_bytes_field(&mut out, 1, b"sha256");
    put_bytes_field(&mut out, 2, spki_der);
    put_bytes_field(&mut out, 3, sig);
    put_bytes_field(&mut out, 4, text);
    out
}

/// What the host said.
#[derive(Debug, PartialEq, Eq)]
pub enum HostVerdict {
    Valid,
    Invalid(Option<String>),
}

/// Decodes `VerifySignatureResult {bool result = 1; string error = 2;}`. Anything that is
/// not a clean `result = true` without an error is `Invalid`.
pub fn parse_verify_result(bytes: &[u8]) -> HostVerdict {
    let mut result = false;
    let mut error: Option<String> = None;
    let mut rest = bytes;
    while let Some((&tag, tail)) = rest.split_first() {
        match tag {
            0x08 => {
                let Some((v, t)) = read_varint(tail) else {
                    return HostVerdict::Invalid(error);
                };
                result = v == 1;
                rest = t;
            }
            0x12 => {
                let Some((len, t)) = read_varint(tail) else {
                    return HostVerdict::Invalid(error);
                };
                let Some((msg, t)) = usize::try_from(len)
                    .ok()
                    .and_then(|l| (l <= t.len()).then(|| t.split_at(l)))
                else {
                    return HostVerdict::Invalid(error);
                };
                error = Some(String::from_utf8_lossy(msg).into_owned());
                rest = t;
            }
            _ => return HostVerdict::Invalid(Some("unexpected field in host result".into())),
        }
    }
    match (result, error) {
        (true, None) => HostVerdict::Valid,
        (_, e) => HostVerdict::Invalid(e),
    }
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, bytes.get(i + 1..)?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_conversion_is_minimal_and_refuses_zero() {
        let mut sig = [0u8; 64];
        sig[0] = 0x80; // high bit: needs a 00 prefix
        sig[63] = 1; // s = 1: leading zeros stripped
        let der = p1363_to_der(&sig).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert_eq!(p1363_to_der(&[0u8; 64]), None);
        let mut r_only = [0u8; 64];
        r_only[5] = 9;
        assert_eq!(p1363_to_der(&r_only), None);
        assert_eq!(p1363_to_der(&[1u8; 63]), None);
    }

    #[test]
    fn host_result_decoding_fails_closed() {
        assert_eq!(parse_verify_result(&[0x08, 0x01]), HostVerdict::Valid);
        assert_eq!(parse_verify_result(&[]), HostVerdict::Invalid(None));
        assert_eq!(
            parse_verify_result(&[0x08, 0x00]),
            HostVerdict::Invalid(None)
        );
        let with_err = [0x08, 0x01, 0x12, 0x02, b'n', b'o'];
        assert_eq!(
            parse_verify_result(&with_err),
            HostVerdict::Invalid(Some("no".into()))
        );
        assert!(matches!(
            parse_verify_result(&[0x12, 0x09, b'x']),
            HostVerdict::Invalid(_)
        ));
        assert!(matches!(
            parse_verify_result(&[0x08]),
            HostVerdict::Invalid(_)
        ));
        assert!(matches!(
            parse_verify_result(&[0x1a, 0x00]),
            HostVerdict::Invalid(_)
        ));
    }

    #[test]
    fn args_encode_long_lengths_as_varints() {
        let args = encode_verify_args(&[7u8; 300], b"s", b"t");
        assert_eq!(&args[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&args[8..11], &[0x12, 0xac, 0x02]);
    }
}
