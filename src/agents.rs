//! Agents as first-class identities: the registry, lifecycle states, delegation rules and
//! the privilege ceiling (RFC 8693 `act` chains; delegation only ever narrows).

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::identity::{is_identity, is_scope_token, matches, MAX_ID_BYTES};
use crate::problem::Problem;

/// One agent in the registry (config `agents.registry[]` or the registry feed).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentRecord {
    /// The agent's identity as it appears in `sub` / `act.sub`: an exact string, or a
    /// prefix ending in `*` for a family of agents (`agent:summarizer-*`).
    pub id: String,
    /// `active`, `suspended` (temporarily refused) or `retired` (refused for good).
    pub status: AgentStatus,
    /// Who answers for this agent (informational, recorded in decisions).
    #[serde(default)]
    pub owner: Option<String>,
    /// The most this agent may ever do: exact scopes or prefixes ending in `*`.
    pub max_scopes: Vec<String>,
    /// Principals (`sub`) this agent may act for, when it appears in an `act` chain.
    #[serde(default)]
    pub may_act_for: Vec<String>,
    /// Agents this agent may delegate to (the next, newer actor in the chain).
    #[serde(default)]
    pub may_delegate_to: Vec<String>,
    /// UNIX seconds after which the enrolment lapses (`agent.expired`).
    #[serde(default)]
    pub not_after: Option<u64>,
    /// UNIX seconds: lifts every quarantine of this agent that began at or before it.
    #[serde(default)]
    pub released_at: Option<u64>,
}

/// Lifecycle state of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Active,
    Suspended,
    Retired,
}

/// How [`is_identity`] reads in configuration errors.
const ID_RULE: &str = "1 to 256 bytes without whitespace, control or invisible characters, `,`, `\"`, `\\` or `*`; a pattern may end in one `*`";

/// An identity pattern: `*` (anyone), an identity value, or an identity value followed by
/// one `*` (a prefix; it matches only longer values).
fn valid_id_pattern(p: &str) -> bool {
    p == "*" || is_identity(p.strip_suffix('*').unwrap_or(p))
}

/// A scope pattern: a scope token, with at most one `*`, at its end.
fn valid_scope_pattern(p: &str) -> bool {
    is_scope_token(p) && !p.trim_end_matches('*').contains('*') && p.matches('*').count() <= 1
}

/// A validated registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub version: String,
    /// SHA-256 (hex) of the feed document it was parsed from; `None` for the inline
    /// `agents.registry`. Workers detect a change by this, not by the version.
    pub digest: Option<String>,
    records: Vec<AgentRecord>,
}

impl Registry {
    /// Validates `records`; problems carry paths under `base` (e.g. `$.agents.registry`).
    pub fn new(
        version: String,
        records: Vec<AgentRecord>,
        base: &str,
    ) -> Result<Registry, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut bad = |path: String, message: String| problems.push(Problem { path, message });
        for (i, r) in records.iter().enumerate() {
            let p = format!("{base}[{i}]");
            // Values are quoted with `{:?}`: a control character never reaches a log line raw.
            if !valid_id_pattern(&r.id) {
                bad(
                    format!("{p}.id"),
                    format!(
                        "{:?} is not an id or a prefix ending in `*` ({ID_RULE})",
                        r.id
                    ),
                );
            }
            if records.iter().take(i).any(|o| o.id == r.id) {
                bad(format!("{p}.id"), format!("duplicate agent id {:?}", r.id));
            }
            if let Some(owner) = r.owner.as_deref().filter(|o| !is_identity(o)) {
                bad(
                    format!("{p}.owner"),
                    format!("{owner:?} is not an identity ({ID_RULE})"),
                );
            }
            for (j, pat) in r.max_scopes.iter().enumerate() {
                if !valid_scope_pattern(pat) {
                    bad(
                        format!("{p}.max_scopes[{j}]"),
                        format!("{pat:?} is not a scope or a prefix ending in `*`"),
                    );
                }
            }
            for (field, list) in [
                ("may_act_for", &r.may_act_for),
                ("may_delegate_to", &r.may_delegate_to),
            ] {
                for (j, pat) in list.iter().enumerate() {
                    if !valid_id_pattern(pat) {
                        bad(
                            format!("{p}.{field}[{j}]"),
                            format!("{pat:?} is not an id or a prefix ending in `*` ({ID_RULE})"),
                        );
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Registry {
                version,
                digest: None,
                records,
            })
        } else {
            Err(problems)
        }
    }

    /// The record for `id`: an exact entry first, else the longest matching prefix entry.
    pub fn lookup(&self, id: &str) -> Option<&AgentRecord> {
        self.records.iter().find(|r| r.id == id).or_else(|| {
            self.records
                .iter()
                .filter(|r| r.id.ends_with('*') && matches(&r.id, id))
                .max_by_key(|r| r.id.len())
        })
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delegation::*;
    use crate::reason::Reason;

    fn rec(
        id: &str,
        status: AgentStatus,
        max: &[&str],
        act_for: &[&str],
        delegate: &[&str],
    ) -> AgentRecord {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        AgentRecord {
            id: id.into(),
            status,
            owner: Some("team:test".into()),
            max_scopes: v(max),
            may_act_for: v(act_for),
            may_delegate_to: v(delegate),
            not_after: None,
            released_at: None,
        }
    }

    fn registry() -> Registry {
        use AgentStatus::*;
        let mut expired = rec("agent:old", Active, &["*"], &["user:*"], &[]);
        expired.not_after = Some(100);
        Registry::new(
            "1".into(),
            vec![
                rec(
                    "agent:planner",
                    Active,
                    &["tickets:*", "mail:send"],
                    &["user:*"],
                    &["agent:tool-*"],
                ),
                rec(
                    "agent:tool-*",
                    Active,
                    &["tickets:read", "tickets:write"],
                    &["user:*"],
                    &[],
                ),
                rec(
                    "agent:tool-search",
                    Active,
                    &["tickets:read"],
                    &["user:*"],
                    &[],
                ),
                rec("agent:paused", Suspended, &["*"], &["user:*"], &["*"]),
                rec("agent:gone", Retired, &["*"], &["user:*"], &["*"]),
                rec("agent:solo", Active, &["tickets:read"], &[], &[]),
                expired,
            ],
            "$.agents.registry",
        )
        .unwrap()
    }

    fn chain(subs: &[&str]) -> Vec<Actor> {
        subs.iter()
            .map(|s| Actor {
                sub: s.to_string(),
                iss: None,
            })
            .collect()
    }

    fn scopes(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    const DENY: AgentRules = AgentRules {
        allow_unregistered_subjects: false,
        ceiling: CeilingMode::Deny,
    };

    fn run(
        principal: &str,
        c: &[&str],
        s: &[&str],
        rules: AgentRules,
    ) -> Result<AgentContext, Denial> {
        authorize(principal, &chain(c), &scopes(s), &registry(), rules, 1000.0)
    }

    #[test]
    fn patterns_and_lookup() {
        assert!(
            matches("user:*", "user:alice") && !matches("user:*", "agent:x") && matches("a", "a")
        );
        let r = registry();
        assert_eq!(
            r.lookup("agent:tool-search").unwrap().max_scopes,
            vec!["tickets:read"]
        );
        assert_eq!(r.lookup("agent:tool-x").unwrap().id, "agent:tool-*");
        assert!(r.lookup("agent:nobody").is_none());
    }

    #[test]
    fn direct_agent_and_lifecycle() {
        assert!(run("agent:solo", &[], &["tickets:read"], DENY).is_ok());
        assert_eq!(
            run("agent:nobody", &[], &[], DENY).unwrap_err().reason,
            Reason::AgentUnknown
        );
        assert_eq!(
            run("agent:paused", &[], &[], DENY).unwrap_err().reason,
            Reason::AgentSuspended
        );
        assert_eq!(
            run("agent:gone", &[], &[], DENY).unwrap_err().reason,
            Reason::AgentRetired
        );
        assert_eq!(
            run("agent:old", &[], &[], DENY).unwrap_err().reason,
            Reason::AgentExpired
        );
        let open = AgentRules {
            allow_unregistered_subjects: true,
            ..DENY
        };
        let human = run("user:alice", &[], &["profile"], open).unwrap();
        assert_eq!(human.effective, vec!["profile"]);
        assert_eq!(
            run("user:alice", &["agent:nobody"], &[], open)
                .unwrap_err()
                .reason,
            Reason::AgentUnknown
        );
    }

    #[test]
    fn one_and_two_hops() {
        let one = run("user:alice", &["agent:planner"], &["tickets:read"], DENY).unwrap();
        assert_eq!(one.effective, vec!["tickets:read"]);
        let two = run(
            "user:alice",
            &["agent:tool-search", "agent:planner"],
            &["tickets:read"],
            DENY,
        )
        .unwrap();
        assert_eq!(two.record_id.as_deref(), Some("agent:tool-search"));
    }

    #[test]
    fn chain_rules() {
        let r = |c: &[&str]| run("user:alice", c, &[], DENY).unwrap_err().reason;
        assert_eq!(r(&["agent:solo"]), Reason::DelegationPrincipalNotAllowed);
        assert_eq!(
            r(&["agent:planner", "agent:tool-search"]),
            Reason::DelegationNotPermitted
        );
        assert_eq!(
            r(&["agent:tool-search", "agent:ghost"]),
            Reason::DelegationActorUnknown
        );
        assert_eq!(
            r(&["agent:tool-search", "agent:gone"]),
            Reason::DelegationActorInactive
        );
        assert_eq!(
            run("svc:batch", &["agent:planner"], &[], DENY)
                .unwrap_err()
                .reason,
            Reason::DelegationPrincipalNotAllowed
        );
    }

    #[test]
    fn prefix_patterns_need_a_non_empty_suffix() {
        assert!(matches("agent:summarizer-*", "agent:summarizer-x"));
        assert!(!matches("agent:summarizer-*", "agent:summarizer-"));
        assert!(!matches("agent:summarizer-*", "agent:summarizer"));
        assert!(matches("*", "x") && !matches("*", ""));
        assert!(!matches("tickets:*", "tickets:"));
        let r = registry();
        assert!(r.lookup("agent:tool-").is_none());
        assert_eq!(
            run("agent:tool-", &[], &[], DENY).unwrap_err().reason,
            Reason::AgentUnknown
        );
        // Delegation patterns too: `agent:tool-*` in may_delegate_to does not cover `agent:tool-`.
        let mut records = vec![rec(
            "agent:planner",
            AgentStatus::Active,
            &["*"],
            &["user:*"],
            &["agent:tool-*"],
        )];
        records.push(rec(
            "agent:tool-",
            AgentStatus::Active,
            &["*"],
            &["user:*"],
            &[],
        ));
        let reg = Registry::new("1".into(), records, "$").unwrap();
        let got = authorize(
            "user:alice",
            &chain(&["agent:tool-", "agent:planner"]),
            &[],
            &reg,
            DENY,
            1000.0,
        );
        assert_eq!(got.unwrap_err().reason, Reason::DelegationNotPermitted);
    }

    /// A delegated token's principal that is a registered agent must be active: nobody
    /// acts for a suspended, retired or expired agent. The acting agent's and earlier
    /// actors' reasons come first.
    #[test]
    fn principal_lifecycle_is_enforced() {
        use AgentStatus::*;
        let mut old = rec("agent:old", Active, &["*"], &[], &[]);
        old.not_after = Some(100);
        let records = vec![
            rec(
                "agent:relay",
                Active,
                &["*"],
                &["agent:*", "user:*"],
                &["agent:relay-2"],
            ),
            rec("agent:relay-2", Active, &["*"], &["agent:*", "user:*"], &[]),
            rec("agent:paused", Suspended, &["*"], &[], &[]),
            rec(
                "agent:gone",
                Retired,
                &["*"],
                &["agent:*"],
                &["agent:relay"],
            ),
            rec("agent:active", Active, &["*"], &[], &[]),
            old,
        ];
        let reg = Registry::new("1".into(), records, "$").unwrap();
        let run = |principal: &str, c: &[&str]| {
            authorize(principal, &chain(c), &[], &reg, DENY, 1000.0).map(|_| ())
        };
        for principal in ["agent:paused", "agent:gone", "agent:old"] {
            assert_eq!(
                run(principal, &["agent:relay"]).unwrap_err().reason,
                Reason::DelegationPrincipalInactive,
                "{principal}"
            );
            assert_eq!(
                run(principal, &["agent:relay-2", "agent:relay"])
                    .unwrap_err()
                    .reason,
                Reason::DelegationPrincipalInactive,
                "{principal}"
            );
        }
        assert_eq!(run("agent:active", &["agent:relay"]), Ok(()));
        assert_eq!(run("user:alice", &["agent:relay"]), Ok(()));
        // The acting agent's reason, then an earlier actor's, come first.
        assert_eq!(
            run("agent:paused", &["agent:gone"]).unwrap_err().reason,
            Reason::AgentRetired
        );
        assert_eq!(
            run("agent:paused", &["agent:relay", "agent:gone"])
                .unwrap_err()
                .reason,
            Reason::DelegationActorInactive
        );
        // Without delegation the principal is the acting agent: its own reasons.
        assert_eq!(
            run("agent:paused", &[]).unwrap_err().reason,
            Reason::AgentSuspended
        );
    }

    #[test]
    fn scope_tokens_never_carry_a_header_separator() {
        assert!(
            is_scope_token("tickets:read") && is_scope_token("urn:x:a+b/c!#$%&'()*;<=>?@[]^_`{|}~")
        );
        for bad in ["tickets:read,admin", "a b", "a\"b", "a\\b", "a\tb", "é", ""] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
        assert!(!valid_scope_pattern("tickets:,*"));
    }

    #[test]
    fn registry_identities_are_validated() {
        use AgentStatus::*;
        let hostile = [
            "agent:summarizer-x,agent:admin",
            " agent:a",
            "agent:a ",
            "agent:\u{1}a",
            "agent:\u{a0}a",
            "agent:\u{200b}a",
            "agent:\"a",
            "agent:\\a",
            "agent:a**",
            "agent:*a",
            "",
        ];
        for bad in hostile {
            for (field, r) in [
                ("id", rec(bad, Active, &[], &[], &[])),
                ("may_act_for[0]", rec("agent:a", Active, &[], &[bad], &[])),
                (
                    "may_delegate_to[0]",
                    rec("agent:a", Active, &[], &[], &[bad]),
                ),
                ("owner", {
                    let mut r = rec("agent:a", Active, &[], &[], &[]);
                    r.owner = Some(bad.into());
                    r
                }),
            ] {
                let e = Registry::new("1".into(), vec![r], "$.agents.registry").unwrap_err();
                let want = format!("$.agents.registry[0].{field}");
                assert!(e.iter().any(|p| p.path == want), "{bad:?} {field}: {e:?}");
                // The offending value is quoted with escapes, never written raw.
                assert!(e.iter().all(|p| !p.message.contains('\u{1}')), "{e:?}");
            }
        }
        let long = format!("agent:{}", "x".repeat(MAX_ID_BYTES));
        assert!(Registry::new("1".into(), vec![rec(&long, Active, &[], &[], &[])], "$").is_err());
        let good = Registry::new(
            "1".into(),
            vec![
                rec(
                    "agent:summarizer-*",
                    Active,
                    &["tickets:*"],
                    &["user:*"],
                    &["*"],
                ),
                rec("*", Active, &[], &[], &[]),
                rec("agent:josé", Active, &[], &["spiffe://acme/ns/*"], &[]),
            ],
            "$",
        );
        assert!(good.is_ok(), "{good:?}");
    }

    #[test]
    fn ceiling_denies_or_narrows() {
        let c = ["agent:tool-search", "agent:planner"];
        let d = run("user:alice", &c, &["tickets:read", "tickets:write"], DENY).unwrap_err();
        assert_eq!(
            d,
            Denial {
                reason: Reason::DelegationScopeExceedsCeiling,
                scopes: scopes(&["tickets:write"])
            }
        );
        let narrow = AgentRules {
            ceiling: CeilingMode::Narrow,
            ..DENY
        };
        let ok = run("user:alice", &c, &["tickets:read", "tickets:write"], narrow).unwrap();
        assert_eq!(
            (ok.requested.len(), ok.effective),
            (2, scopes(&["tickets:read"]))
        );
    }

    #[test]
    fn registry_validation() {
        use AgentStatus::*;
        let bad = Registry::new(
            "1".into(),
            vec![
                rec("a*b", Active, &["x y"], &[], &[]),
                rec("a", Active, &[], &[], &[]),
                rec("a", Active, &[], &[], &[]),
            ],
            "$.r",
        )
        .unwrap_err();
        let text: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.starts_with("$.r[0].id")), "{text:?}");
        assert!(
            text.iter().any(|t| t.starts_with("$.r[0].max_scopes[0]")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("duplicate agent id")),
            "{text:?}"
        );
    }
}

/// A feed version: 1 to 128 bytes of printable ASCII without space (`!` to `~`), so it
/// can never break a record it is written into, a log line or an audit event.
pub fn valid_version(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 128 {
        return Err(format!("{} bytes; 1 to 128 are allowed", v.len()));
    }
    match v.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "byte {i} is not printable ASCII (no space, control or non-ASCII characters)"
        )),
    }
}

/// How a feed version relates to the one in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrder {
    /// Equal strings, or equal decimal integers (`7` and `007`).
    Same,
    /// Both decimal integers, the new one larger.
    Newer,
    /// Both decimal integers, the new one smaller: a rollback.
    Older,
    /// Different, and not both decimal integers: no order, so a possible rollback.
    Unordered,
}

/// Orders `new` against `current`: numerically when both are decimal integers (ASCII
/// digits only, any length), otherwise only equality means anything.
pub fn compare_versions(new: &str, current: &str) -> VersionOrder {
    let int = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| {
            let t = s.trim_start_matches('0');
            (t.len(), t.to_owned())
        })
    };
    match (int(new), int(current)) {
        (Some(a), Some(b)) => match a.cmp(&b) {
            std::cmp::Ordering::Equal => VersionOrder::Same,
            std::cmp::Ordering::Greater => VersionOrder::Newer,
            std::cmp::Ordering::Less => VersionOrder::Older,
        },
        _ if new == current => VersionOrder::Same,
        _ => VersionOrder::Unordered,
    }
}

/// What the feed poller does with a valid answer, given what is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedVerdict {
    /// The same document as the one published: only its freshness is renewed.
    Unchanged,
    /// A new document (a newer version, or new content under the same version).
    Apply,
    /// A rollback (or an unordered version change) without `allow_rollback`.
    Refuse(String),
}

/// Decides on `answer` against the published `(version, digest)` (`None` before the
/// first answer, when the inline registry is in use: any valid answer applies).
pub fn feed_verdict(
    answer: &Registry,
    published: Option<(&str, &str)>,
    allow_rollback: bool,
) -> FeedVerdict {
    let Some((version, digest)) = published else {
        return FeedVerdict::Apply;
    };
    if answer.digest.as_deref() == Some(digest) {
        return FeedVerdict::Unchanged;
    }
    match compare_versions(&answer.version, version) {
        VersionOrder::Same | VersionOrder::Newer => FeedVerdict::Apply,
        _ if allow_rollback => FeedVerdict::Apply,
        VersionOrder::Older => FeedVerdict::Refuse(format!(
            "version {} is older than version {version} in use (a rollback; agents.feed.allow_rollback is off)",
            answer.version
        )),
        VersionOrder::Unordered => FeedVerdict::Refuse(format!(
            "version {} cannot be ordered against version {version} in use (only decimal integers are ordered; agents.feed.allow_rollback is off)",
            answer.version
        )),
    }
}

/// Parses a registry feed document: `{"version": "<string or integer>", "agents": [...]}`
/// (strict: no other members, duplicate members refused, the version valid per
/// [`valid_version`], every record validated). The registry carries the document's
/// SHA-256.
pub fn parse_feed(bytes: &[u8]) -> Result<Registry, Vec<Problem>> {
    let one = |path: &str, message: String| {
        vec![Problem {
            path: path.into(),
            message,
        }]
    };
    let value = crate::json::parse_strict(bytes, 32).map_err(|e| one("$", e.to_string()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| one("$", "expected a JSON object".into()))?;
    if let Some(k) = obj.keys().find(|k| *k != "version" && *k != "agents") {
        return Err(one(
            &format!("$.{k}"),
            format!("unknown field `{k}`, expected `version` or `agents`"),
        ));
    }
    let version = match obj.get("version") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => {
            return Err(one(
                "$.version",
                "a string or a non-negative integer is required".into(),
            ))
        }
    };
    valid_version(&version).map_err(|e| one("$.version", e))?;
    let agents = obj
        .get("agents")
        .cloned()
        .ok_or_else(|| one("$.agents", "missing".into()))?;
    let records: Vec<AgentRecord> = serde_path_to_error::deserialize(agents).map_err(|e| {
        let path = e.path().to_string();
        let suffix = match path.as_str() {
            "." | "" => String::new(),
            p if p.starts_with('[') => p.to_owned(),
            p => format!(".{p}"),
        };
        one(&format!("$.agents{suffix}"), e.into_inner().to_string())
    })?;
    let mut registry = Registry::new(version, records, "$.agents")?;
    registry.digest = Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)));
    Ok(registry)
}

#[cfg(test)]
mod feed_tests {
    use super::*;

    #[test]
    fn feed_identities_are_validated() {
        let e = parse_feed(
            br#"{"version": "2", "agents": [{"id": "agent:x,agent:admin", "status": "active", "max_scopes": []}]}"#,
        )
        .unwrap_err();
        assert_eq!(e[0].path, "$.agents[0].id", "{e:?}");
        let e = parse_feed(
            br#"{"version": "2", "agents": [{"id": "agent:a", "status": "active", "max_scopes": [], "may_act_for": ["user:\u0000*"]}]}"#,
        )
        .unwrap_err();
        assert_eq!(e[0].path, "$.agents[0].may_act_for[0]", "{e:?}");
    }

    #[test]
    fn feed_documents_are_strict() {
        let ok = br#"{"version": 7, "agents": [{"id": "agent:a", "status": "retired", "max_scopes": []}]}"#;
        let r = parse_feed(ok).unwrap();
        assert_eq!((r.version.as_str(), r.len()), ("7", 1));
        assert_eq!(
            r.digest.as_deref(),
            Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ok)).as_str())
        );
        assert!(parse_feed(br#"{"version": "1", "agents": [], "extra": 1}"#).is_err());
        assert!(parse_feed(br#"{"agents": []}"#).is_err());
        let e = parse_feed(
            br#"{"version": "1", "agents": [{"id": "a", "status": "gone", "max_scopes": []}]}"#,
        )
        .unwrap_err();
        assert!(e[0].path.starts_with("$.agents[0]"), "{e:?}");
        assert!(parse_feed(br#"{"version": "1", "version": "2", "agents": []}"#).is_err());
        assert!(parse_feed(b"not json").is_err());
    }

    #[test]
    fn versions_are_printable_ascii_without_whitespace() {
        let doc = |v: &str| format!(r#"{{"version": {v}, "agents": []}}"#);
        for good in [r#""1""#, r#""2026-12-01T10:00:00Z""#, r#""a~!""#, "42"] {
            assert!(parse_feed(doc(good).as_bytes()).is_ok(), "{good}");
        }
        let long = format!("\"{}\"", "9".repeat(129));
        for bad in [
            r#""1\n2""#,
            r#""2\n1800000000000""#,
            r#""""#,
            r#""a b""#,
            r#""tab\t""#,
            r#""\u0000""#,
            r#""caf\u00e9""#,
            r#""\u007f""#,
            "-1",
            "1.5",
            "1e3",
            "null",
            long.as_str(),
        ] {
            let e = parse_feed(doc(bad).as_bytes()).unwrap_err();
            assert_eq!(e[0].path, "$.version", "{bad}: {e:?}");
        }
        assert!(valid_version(&"9".repeat(128)).is_ok());
    }

    #[test]
    fn versions_order_numerically_or_only_by_equality() {
        use VersionOrder::*;
        for (new, current, want) in [
            ("2", "1", Newer),
            ("10", "9", Newer),
            ("9", "10", Older),
            ("007", "7", Same),
            ("123456789012345678901234567890", "99", Newer),
            ("1", "1", Same),
            ("v2", "v2", Same),
            ("v2", "v1", Unordered),
            ("2", "v1", Unordered),
            ("1.10", "1.9", Unordered),
        ] {
            assert_eq!(compare_versions(new, current), want, "{new} vs {current}");
        }
    }

    #[test]
    fn feed_verdicts() {
        let doc = |v: &str, status: &str| {
            parse_feed(
                format!(r#"{{"version": "{v}", "agents": [{{"id": "agent:a", "status": "{status}", "max_scopes": []}}]}}"#)
                    .as_bytes(),
            )
            .unwrap()
        };
        let v3 = doc("3", "active");
        let d3 = v3.digest.clone().unwrap();
        let published = Some(("3", d3.as_str()));
        // First answer (inline registry in use), whatever its version.
        assert_eq!(
            feed_verdict(&doc("config", "active"), None, false),
            FeedVerdict::Apply
        );
        assert_eq!(feed_verdict(&v3, published, false), FeedVerdict::Unchanged);
        // New content under the same version is a change.
        assert_eq!(
            feed_verdict(&doc("3", "retired"), published, false),
            FeedVerdict::Apply
        );
        assert_eq!(
            feed_verdict(&doc("4", "active"), published, false),
            FeedVerdict::Apply
        );
        let FeedVerdict::Refuse(why) = feed_verdict(&doc("2", "active"), published, false) else {
            panic!("a rollback was taken");
        };
        assert!(why.contains("older than version 3"), "{why}");
        assert!(matches!(
            feed_verdict(&doc("abc", "active"), published, false),
            FeedVerdict::Refuse(_)
        ));
        assert_eq!(
            feed_verdict(&doc("2", "active"), published, true),
            FeedVerdict::Apply
        );
        assert_eq!(
            feed_verdict(&doc("abc", "active"), published, true),
            FeedVerdict::Apply
        );
    }
}
