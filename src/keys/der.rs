//! The few DER encodings the host crypto backend hands BoringSSL: SubjectPublicKeyInfo
//! (RFC 5280) for P-256 (RFC 5480), Ed25519 (RFC 8410) and RSA (RFC 3279) keys, and the
//! ECDSA `ECDSA-Sig-Value` of a JWS ES256 signature.
//!
//! Written by hand on purpose: the RustCrypto encoders (`spki`/`pkcs8` through p256,
//! ed25519-dalek and rsa, and ecdsa's `Signature::to_der`) produce the same bytes (the tests
//! check it) but measured 33 KB more `.wasm` (4,476,609 -> 4,510,016 bytes; 11 KB of it the
//! signature alone), which V8 compiles before the first request.

/// SEQUENCE { SEQUENCE { OID id-ecPublicKey, OID prime256v1 }, BIT STRING (0 unused) }
/// header; the uncompressed SEC1 point (65 bytes) follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// SEQUENCE { SEQUENCE { OID id-Ed25519 }, BIT STRING (0 unused) } header; the 32-byte key
/// follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// SEQUENCE { OID rsaEncryption, NULL }.
const RSA_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// The SubjectPublicKeyInfo of a P-256 key, from its uncompressed SEC1 point
/// (`04 || x || y`, 65 bytes, already checked to be on the curve).
pub fn p256_spki(sec1: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(P256_SPKI_PREFIX.len() + sec1.len());
    out.extend_from_slice(&P256_SPKI_PREFIX);
    out.extend_from_slice(sec1);
    out
}

/// The SubjectPublicKeyInfo of an Ed25519 key (32 bytes).
pub fn ed25519_spki(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + key.len());
    out.extend_from_slice(&ED25519_SPKI_PREFIX);
    out.extend_from_slice(key);
    out
}

/// The SubjectPublicKeyInfo of an RSA key: `RSAPublicKey { n, e }` (big-endian magnitudes)
/// in a BIT STRING after the rsaEncryption algorithm.
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut ints = Vec::new();
    uint(&mut ints, n);
    uint(&mut ints, e);
    let rsa_pub = tlv(0x30, &ints);
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(&rsa_pub);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend_from_slice(&tlv(0x03, &bit_string));
    tlv(0x30, &body)
}

/// JWS ES256 `r || s` (64 bytes) to a DER `ECDSA-Sig-Value`. `None` for a wrong length
/// or a zero `r`/`s`, which can never be valid (BoringSSL refuses the rest of the range).
pub fn ecdsa_sig(sig: &[u8]) -> Option<Vec<u8>> {
    if sig.len() != 64 {
        return None;
    }
    let (r, s) = sig.split_at(32);
    if r.iter().all(|&b| b == 0) || s.iter().all(|&b| b == 0) {
        return None;
    }
    let mut ints = Vec::with_capacity(72);
    uint(&mut ints, r);
    uint(&mut ints, s);
    Some(tlv(0x30, &ints))
}

/// The subject public key of a SubjectPublicKeyInfo this module wrote: the BIT STRING's
/// contents after the algorithm (a P-256 SEC1 point, an Ed25519 key, an RSA
/// `RSAPublicKey`), in the form native crypto libraries import. `None` for anything else.
pub fn spki_subject_key(spki: &[u8]) -> Option<&[u8]> {
    let (tag, body, rest) = read_tlv(spki)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (alg_tag, _, body) = read_tlv(body)?;
    let (bits_tag, bits, rest) = read_tlv(body)?;
    if alg_tag != 0x30 || bits_tag != 0x03 || !rest.is_empty() {
        return None;
    }
    match bits.split_first() {
        Some((0, key)) if !key.is_empty() => Some(key),
        _ => None,
    }
}

/// One DER TLV: (tag, contents, what follows).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (n, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (octets, rest) = rest.split_at_checked(count)?;
        let n = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (n, rest)
    };
    let (body, rest) = rest.split_at_checked(n)?;
    Some((tag, body, rest))
}

/// DER length octets.
fn len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let tail = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | tail.len() as u8);
        out.extend_from_slice(tail);
    }
}

/// DER INTEGER from an unsigned big-endian magnitude (minimal, sign-safe).
fn uint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let first = magnitude
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(magnitude.len());
    let m = magnitude.get(first..).unwrap_or_default();
    let pad = m.first().is_none_or(|&b| b & 0x80 != 0);
    out.push(0x02);
    len(out, m.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(m);
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rsa::pkcs8::der::asn1::BitStringRef;
    use rsa::pkcs8::der::Encode;
    use rsa::pkcs8::spki::{AlgorithmIdentifierRef, ObjectIdentifier, SubjectPublicKeyInfoRef};
    use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};

    const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

    /// The `spki` crate's encoding of a key under an algorithm.
    fn spki_crate(oid: ObjectIdentifier, curve: Option<&ObjectIdentifier>, key: &[u8]) -> Vec<u8> {
        SubjectPublicKeyInfoRef {
            algorithm: AlgorithmIdentifierRef {
                oid,
                parameters: curve.map(Into::into),
            },
            subject_public_key: BitStringRef::from_bytes(key).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn der_integers_are_minimal() {
        let mut out = Vec::new();
        uint(&mut out, &[0, 0, 0x80]);
        assert_eq!(out, [2, 2, 0, 0x80]);
        out.clear();
        uint(&mut out, &[0, 0x7f]);
        assert_eq!(out, [2, 1, 0x7f]);
        out.clear();
        uint(&mut out, &[0, 0]);
        assert_eq!(out, [2, 1, 0]);
        let mut long = Vec::new();
        len(&mut long, 0x1234);
        assert_eq!(long, [0x82, 0x12, 0x34]);
    }

    #[test]
    fn p256_spki_is_the_spki_crates() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let point = p256::EncodedPoint::from(secret.public_key());
        let ours = p256_spki(point.as_bytes());
        assert_eq!(
            ours,
            spki_crate(ID_EC_PUBLIC_KEY, Some(&PRIME256V1), point.as_bytes())
        );
        assert_eq!(ours.len(), 91);
    }

    #[test]
    fn ed25519_spki_is_the_spki_crates() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        let ours = ed25519_spki(key.as_bytes());
        assert_eq!(ours, spki_crate(ID_ED25519, None, key.as_bytes()));
        assert_eq!(ours.len(), 44);
    }

    #[test]
    fn rsa_spki_is_the_rsa_crates() {
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys =
            crate::dev::DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let jwks = keys.public_jwks();
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kty"] == "RSA")
            .unwrap();
        let b64 = |m: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jwk[m].as_str().unwrap())
                .unwrap()
        };
        let (n, e) = (b64("n"), b64("e"));
        let key = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&n),
            rsa::BigUint::from_bytes_be(&e),
        )
        .unwrap();
        let ours = rsa_spki(&n, &e);
        assert_eq!(ours, key.to_public_key_der().unwrap().as_bytes());
        assert_eq!(rsa::RsaPublicKey::from_public_key_der(&ours).unwrap(), key);
        // Leading zero bytes in the JWK's magnitudes do not change the encoding.
        assert_eq!(rsa_spki(&[&[0, 0][..], &n].concat(), &[0, 1, 0, 1]), ours);
        // The subject key is the PKCS#1 RSAPublicKey.
        assert_eq!(
            spki_subject_key(&ours).unwrap(),
            rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_der(&key)
                .unwrap()
                .as_bytes()
        );
    }

    #[test]
    fn the_subject_key_is_what_the_spki_wraps() {
        let point = [4u8; 65];
        assert_eq!(spki_subject_key(&p256_spki(&point)), Some(&point[..]));
        let ed = [9u8; 32];
        assert_eq!(spki_subject_key(&ed25519_spki(&ed)), Some(&ed[..]));
        let good = p256_spki(&point);
        // Truncated, trailing bytes, a non-zero unused-bits octet, an empty key: refused.
        assert_eq!(spki_subject_key(&good[..good.len() - 1]), None);
        assert_eq!(spki_subject_key(&[&good[..], &[0]].concat()), None);
        let mut unused = good.clone();
        unused[25] = 1;
        assert_eq!(spki_subject_key(&unused), None);
        assert_eq!(
            spki_subject_key(&[0x30, 0x04, 0x30, 0x00, 0x03, 0x00]),
            None
        );
        assert_eq!(spki_subject_key(&[]), None);
        assert_eq!(spki_subject_key(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
    }

    #[test]
    fn ecdsa_sig_refuses_what_can_never_verify() {
        let mut sig = [0u8; 64];
        sig[0] = 0x80; // high bit: needs a 00 prefix
        sig[63] = 1; // s = 1: leading zeros stripped
        let der = ecdsa_sig(&sig).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
        assert_eq!(ecdsa_sig(&[0u8; 64]), None);
        let mut r_only = [0u8; 64];
        r_only[5] = 9;
        assert_eq!(ecdsa_sig(&r_only), None);
        assert_eq!(ecdsa_sig(&[1u8; 63]), None);
        assert_eq!(ecdsa_sig(&[1u8; 65]), None);
    }

    proptest! {
        /// Every signature ecdsa accepts as `r || s` encodes as ecdsa encodes it.
        #[test]
        fn ecdsa_sig_is_the_ecdsa_crates(
            r in proptest::collection::vec(any::<u8>(), 32),
            s in proptest::collection::vec(any::<u8>(), 32),
            zeros in 0usize..32,
        ) {
            let mut sig = [r, s].concat();
            // Short magnitudes (leading zero bytes) are where encoders differ.
            for b in sig.iter_mut().take(zeros) {
                *b = 0;
            }
            if let Ok(parsed) = p256::ecdsa::Signature::from_slice(&sig) {
                prop_assert_eq!(ecdsa_sig(&sig).unwrap(), parsed.to_der().as_bytes().to_vec());
            }
        }
    }
}
