//! State every worker of one host shares (proxy-wasm shared data): the publish protocol the
//! feeds (registry, remote JWKS, revocation) use, host-agnostic and tested natively.
//!
//! A feed publishes a document under `<base>/body` (or its own key) and then a short head
//! record `<tag>\n<fresh_ms>` under `<base>/head`: workers read the head on every request
//! and the body only when the tag changed. The tag is the document's version or digest:
//! printable ASCII without whitespace, so the record has one reading. One VM per host polls
//! each interval: the one that wins the lease, a compare-and-swap on `<base>/lease`.

/// A host call that failed (the host's own words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

/// Shared data with compare-and-swap, as proxy-wasm hosts provide it.
pub trait SharedData {
    /// The value under `key` and its CAS token (`None`: never written).
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes `value`; with `cas`, only if the value is still the one that token was read with.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
}

/// Creates each of `keys` that does not hold a slot yet (a value starting with `format`) as
/// an empty slot: the fixed slots of the stores updated with compare-and-swap (the DPoP
/// replay cache, the limits, quarantines). Proxy-wasm's CAS does not guard a key's creation,
/// so slots are created once per host before any request, never on the request path.
pub fn create_slots(
    shared: &dyn SharedData,
    keys: impl IntoIterator<Item = String>,
    format: u8,
) -> Result<(), HostError> {
    for key in keys {
        match shared.get(&key)? {
            (Some(b), _) if b.first() == Some(&format) => {}
            _ => shared.set(&key, &[format], None)?,
        }
    }
    Ok(())
}

/// A head record: the published document's tag and when the feed last confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub tag: String,
    pub fresh_ms: u64,
}

impl Head {
    /// `tag` must be 1..=128 bytes of printable ASCII without space (a version, a digest).
    pub fn new(tag: impl Into<String>, fresh_ms: u64) -> Option<Head> {
        let tag = tag.into();
        valid_tag(&tag).then_some(Head { tag, fresh_ms })
    }

    pub fn parse(bytes: &[u8]) -> Option<Head> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (tag, fresh) = text.split_once('\n')?;
        if !valid_tag(tag) || fresh.is_empty() || !fresh.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Head {
            tag: tag.to_owned(),
            fresh_ms: fresh.parse().ok()?,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        format!("{}\n{}", self.tag, self.fresh_ms).into_bytes()
    }

    /// The tag as a number (the JWKS and revocation feeds count their versions).
    pub fn number(&self) -> Option<u64> {
        self.tag.parse().ok()
    }
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.len() <= 128 && tag.bytes().all(|b| b.is_ascii_graphic())
}

/// The head record under `key`, if there is a well-formed one.
pub fn read_head(host: &dyn SharedData, key: &str) -> Option<Head> {
    match host.get(key) {
        Ok((Some(bytes), _)) => Head::parse(&bytes),
        _ => None,
    }
}

/// Publishes `body` (when given) under `body_key`, then `head` under `head_key`: a reader
/// that sees the new head finds the new body.
pub fn publish(
    host: &dyn SharedData,
    body_key: &str,
    body: Option<&[u8]>,
    head_key: &str,
    head: &Head,
) -> Result<(), HostError> {
    if let Some(body) = body {
        host.set(body_key, body, None)?;
    }
    host.set(head_key, &head.to_bytes(), None)
}

/// Takes the poll lease stored under `key` for this interval: only one VM per host wins it
/// (compare-and-swap). A little slack (a tenth of the interval) lets the holder's own next
/// tick win again.
pub fn take_lease(host: &dyn SharedData, key: &str, interval_ms: u64, now_ms: u64) -> bool {
    let Ok((value, cas)) = host.get(key) else {
        return false;
    };
    let last = value
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if now_ms.saturating_sub(last) < interval_ms.saturating_mul(9) / 10 {
        return false;
    }
    host.set(key, now_ms.to_string().as_bytes(), cas).is_ok()
}

/// Shared data in memory, with proxy-wasm's CAS rules (the in-memory host's, and the
/// tests of the publish protocol).
#[cfg(tools)]
#[derive(Default)]
pub struct Memory {
    data: std::cell::RefCell<std::collections::HashMap<String, (Vec<u8>, u32)>>,
}

#[cfg(tools)]
impl SharedData for Memory {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        let data = self.data.borrow();
        Ok(match data.get(key) {
            // As through proxy-wasm: an empty value reads as no data (with its CAS token).
            Some((v, cas)) if v.is_empty() => (None, Some(*cas)),
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut data = self.data.borrow_mut();
        let current = data.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(HostError("CasMismatch".into()));
        }
        let next = current.map_or(1, |c| c.wrapping_add(1));
        data.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Memory as MockShared;
    use super::*;

    #[test]
    fn one_vm_wins_the_lease_per_interval() {
        let host = MockShared::default();
        assert!(take_lease(&host, "l", 1000, 10_000));
        assert!(
            !take_lease(&host, "l", 1000, 10_500),
            "held for the interval"
        );
        assert!(
            take_lease(&host, "l", 1000, 10_900),
            "slack: the holder's next tick"
        );
        // Two VMs that read the same lease: the second write loses the CAS.
        let (_, cas) = host.get("l").unwrap();
        host.set("l", b"20000", cas).unwrap();
        assert!(host.set("l", b"20000", cas).is_err());
    }

    #[test]
    fn heads_have_one_reading() {
        let h = Head::new("0123abcd", 42).unwrap();
        assert_eq!(Head::parse(&h.to_bytes()), Some(h.clone()));
        assert_eq!(Head::parse(b"7\n100").and_then(|h| h.number()), Some(7));
        for bad in [
            &b"a\nb\n1"[..],
            b"a b\n1",
            b"\n1",
            b"a\n",
            b"a\n-1",
            b"a",
            b"a\n1x",
            b"\xff\n1",
        ] {
            assert_eq!(Head::parse(bad), None, "{bad:?}");
        }
        assert!(Head::new("two\nlines", 1).is_none() && Head::new("", 1).is_none());
        assert!(Head::new("x".repeat(129), 1).is_none());
    }

    #[test]
    fn publish_writes_the_body_before_the_head() {
        let host = MockShared::default();
        let head = Head::new("v1", 5).unwrap();
        publish(&host, "b", Some(b"doc"), "h", &head).unwrap();
        assert_eq!(read_head(&host, "h"), Some(head));
        assert_eq!(host.get("b").unwrap().0.as_deref(), Some(&b"doc"[..]));
        assert_eq!(read_head(&host, "missing"), None);
    }
}
