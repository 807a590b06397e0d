//! Token verification: every rule of DESIGN.md "Token rules" (RFC 7515, RFC 8725, RFC 9068).
//!
//! jwt-compact supplies the signature algorithms only; structure, header and claim rules
//! are enforced here, strictly, because jwt-compact ignores `crit`/`jwk`/`x5c`/`b64`, never
//! checks `iat`/`iss`/`aud`/`typ`, and defaults to a 60 s leeway.
//!
//! Order: structure and header, then issuer, key and every claim (cheap), then the
//! signature (expensive, skipped on a cache hit). Any failure is a [`Reason`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::crypto::SignatureBackend;
pub use crate::delegation::Actor;
use crate::json::parse_strict;
use crate::keys::{Alg, JwksUriConfig, VerifyKey};
use crate::reason::Reason;

/// SHA-256 of a whole bearer token: the key of the verified-signature cache and the
/// token's fingerprint in the audit trail.
pub type TokenHash = [u8; 32];

/// Tokens whose signature verified before (the cache's hash tier): a hit spares the
/// signature check, never a claim rule.
pub trait VerifiedSignatures {
    /// Whether a token with this hash verified and its entry is still live at `now`.
    fn hit(&mut self, hash: &TokenHash, now: f64, skew: f64) -> bool;
    /// Records a verified signature of a token that expires at `exp`.
    fn insert(&mut self, hash: TokenHash, exp: f64);
}

/// What verifying a token needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TokenRules<'a> {
    pub issuers: &'a [Issuer],
    pub clock_skew_s: u64,
    pub max_token_lifetime_s: u64,
    pub max_token_bytes: usize,
    pub max_delegation_depth: usize,
}

/// A validated issuer, ready for the request path.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Lower-case, without an `application/` prefix.
    pub accepted_types: Vec<String>,
    /// Inline keys, or the last good remote keys (empty until the first fetch).
    pub keys: Vec<VerifyKey>,
    /// Set when the keys come from `jwks_uri`.
    pub remote: Option<JwksUriConfig>,
    /// Whether unbound tokens of this issuer pass.
    pub sender_constraint: crate::config::SenderConstraint,
    /// How the issuer's tokens name the agent, its principal and the chain.
    pub profile: crate::profile::Profile,
}

/// Lower-case `typ`, without an optional `application/` prefix (RFC 7515 §4.1.9).
pub fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// Nesting allowed in a JOSE header.
const HEADER_MAX_DEPTH: usize = 4;
/// Nesting allowed in the claims: serde_json's own recursion limit, so that custom claims
/// (`authorization_details` can be deep) nest as deep as any JSON parser allows. The `act`
/// chain keeps its own cap (`delegation.max_depth`) and the token its size cap.
pub const CLAIMS_MAX_DEPTH: usize = 127;

/// Header members that let a token choose its own key or change processing rules.
const FORBIDDEN_HEADER: &[&str] = &[
    "crit", "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc",
];

/// A compact JWS, split and decoded, with its header rules checked.
#[derive(Debug)]
pub struct Jws<'a> {
    pub header: Map<String, Value>,
    pub payload: Vec<u8>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, what the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
    pub alg: Alg,
    pub kid: String,
}

fn b64(segment: &str) -> Result<Vec<u8>, Reason> {
    // The standard engine refuses padding, whitespace, `+`/`/` and non-zero trailing bits.
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Reason::TokenMalformed)
}

/// Splits and decodes a compact JWS and applies the header rules (alg, kid, forbidden
/// members). `typ` is a JWT rule and is checked by [`verify_token`].
pub fn parse_compact(token: &str, max_bytes: usize) -> Result<Jws<'_>, Reason> {
    if token.len() > max_bytes {
        return Err(Reason::TokenTooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::TokenMalformed);
    };
    if h.is_empty() {
        return Err(Reason::TokenMalformed);
    }
    let header = match parse_strict(&b64(h)?, HEADER_MAX_DEPTH) {
        Ok(Value::Object(m)) => m,
        _ => return Err(Reason::TokenMalformed),
    };
    if header
        .keys()
        .any(|k| FORBIDDEN_HEADER.contains(&k.as_str()))
    {
        return Err(Reason::TokenHeaderForbidden);
    }
    // `none` in any casing, HS*, and anything unknown: the same answer, before the
    // (possibly empty) signature is even looked at.
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Alg::from_jose(a).ok_or(Reason::TokenAlg)?,
        _ => return Err(Reason::TokenAlg),
    };
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => return Err(Reason::TokenKid),
    };
    if s.is_empty() {
        return Err(Reason::TokenMalformed);
    }
    let payload = b64(p)?;
    let signature = b64(s)?;
    let signing_input = token
        .get(..h.len().saturating_add(1).saturating_add(p.len()))
        .ok_or(Reason::TokenMalformed)?;
    Ok(Jws {
        header,
        payload,
        signing_input,
        signature,
        alg,
        kid,
    })
}

/// Selects the key by exact `kid` and checks `alg` against the key and the allow-list.
pub fn select_key<'k>(
    jws: &Jws<'_>,
    keys: &'k [VerifyKey],
    allowed: &[Alg],
) -> Result<&'k VerifyKey, Reason> {
    let key = keys
        .iter()
        .find(|k| k.kid == jws.kid)
        .ok_or(Reason::TokenKid)?;
    if key.alg != jws.alg || !allowed.contains(&jws.alg) {
        return Err(Reason::TokenAlg);
    }
    Ok(key)
}

/// Checks the signature with `backend`.
pub fn check_signature(
    jws: &Jws<'_>,
    key: &VerifyKey,
    backend: &dyn SignatureBackend,
) -> Result<(), Reason> {
    match backend.verify(key, jws.signing_input.as_bytes(), &jws.signature) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Reason::TokenSignature),
        Err(_) => Err(Reason::InternalError),
    }
}

/// The verified facts about a token that later stages use.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer: String,
    /// `sub`: the principal.
    pub subject: String,
    /// The acting agent: `act.sub`, or `sub` without delegation.
    pub agent: String,
    /// Actors, newest first (empty without delegation).
    pub chain: Vec<Actor>,
    /// The issuer's profile (`rfc8693`, `entra-agent-id`, ...).
    pub profile: &'static str,
    /// The agent's type, when the profile names one (`ai_agent`, `agent_user`, ...).
    pub agent_type: Option<String>,
    /// The tenant, when the profile names one (Entra `tid`, Auth0 `org_id`, the SPIFFE
    /// trust domain, ...).
    pub tenant: Option<String>,
    /// The OAuth client the token was issued to, when the profile names one.
    pub client: Option<String>,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    pub jti: Option<String>,
    pub exp: f64,
    pub iat: f64,
    pub nbf: Option<f64>,
    pub kid: String,
    pub alg: Alg,
    pub sha256: TokenHash,
    /// What the token is bound to (`cnf`): checked on every request, cache hit or not.
    pub binding: crate::dpop::Binding,
    pub claims: Map<String, Value>,
}

/// Full verification of a bearer token at time `now` (UNIX seconds). With `cache`, a
/// token whose hash verified before skips the signature check; the `bool` says so.
pub fn verify_token(
    token: &str,
    cfg: &TokenRules<'_>,
    backend: &dyn SignatureBackend,
    cache: Option<&mut dyn VerifiedSignatures>,
    now: f64,
) -> Result<(VerifiedToken, bool), Reason> {
    let jws = parse_compact(token, cfg.max_token_bytes)?;
    let claims = match parse_strict(&jws.payload, CLAIMS_MAX_DEPTH) {
        Ok(Value::Object(m)) => m,
        _ => return Err(Reason::TokenMalformed),
    };
    let iss = match claims.get("iss") {
        None => return Err(Reason::TokenIssuer),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Reason::TokenClaimType),
    };
    let issuer = cfg
        .issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or(Reason::TokenIssuer)?;
    crate::profile::refuse_typ(jws.header.get("typ").and_then(Value::as_str))?;
    check_typ(&jws, issuer)?;
    if issuer.remote.is_some() && issuer.keys.is_empty() {
        return Err(Reason::JwksUnavailable);
    }
    let key = select_key(&jws, &issuer.keys, &issuer.algorithms)?;
    let facts = check_claims(&claims, issuer, cfg, now)?;
    let binding = crate::dpop::binding(&claims)?;

    let sha256: TokenHash = Sha256::digest(token.as_bytes()).into();
    let skew = cfg.clock_skew_s as f64;
    let cached = match cache {
        Some(c) => {
            let hit = c.hit(&sha256, now, skew);
            if !hit {
                check_signature(&jws, key, backend)?;
                c.insert(sha256, facts.exp);
            }
            hit
        }
        None => {
            check_signature(&jws, key, backend)?;
            false
        }
    };
    let verified = VerifiedToken {
        issuer: issuer.issuer.clone(),
        agent: facts
            .identity
            .chain
            .first()
            .map_or_else(|| facts.identity.principal.clone(), |a| a.sub.clone()),
        subject: facts.identity.principal,
        chain: facts.identity.chain,
        profile: issuer.profile.name(),
        agent_type: facts.identity.agent_type,
        tenant: facts.identity.tenant,
        client: facts.identity.client,
        audiences: facts.audiences,
        scopes: facts.scopes,
        jti: facts.jti,
        exp: facts.exp,
        iat: facts.iat,
        nbf: facts.nbf,
        kid: jws.kid.clone(),
        alg: jws.alg,
        sha256,
        binding,
        claims,
    };
    Ok((verified, cached))
}

fn check_typ(jws: &Jws<'_>, issuer: &Issuer) -> Result<(), Reason> {
    match jws.header.get("typ") {
        Some(Value::String(t)) if issuer.accepted_types.contains(&normalize_typ(t)) => Ok(()),
        _ => Err(Reason::TokenTyp),
    }
}

struct ClaimFacts {
    identity: crate::profile::Identity,
    audiences: Vec<String>,
    scopes: Vec<String>,
    jti: Option<String>,
    exp: f64,
    iat: f64,
    nbf: Option<f64>,
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(Reason::TokenClaimType),
        Some(_) => Err(Reason::TokenClaimType),
    }
}

fn opt_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Reason::TokenClaimType),
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    issuer: &Issuer,
    cfg: &TokenRules<'_>,
    now: f64,
) -> Result<ClaimFacts, Reason> {
    let audiences: Vec<String> = match claims.get("aud") {
        None => return Err(Reason::TokenAudience),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(item.as_str().ok_or(Reason::TokenClaimType)?.to_owned());
            }
            out
        }
        Some(_) => return Err(Reason::TokenClaimType),
    };
    let exp = numeric_date(claims, "exp")?;
    let iat = numeric_date(claims, "iat")?;
    let nbf = numeric_date(claims, "nbf")?;
    let jti = opt_string(claims, "jti")?;
    let scope = opt_string(claims, "scope")?;
    let trusted = |iss: &str| cfg.issuers.iter().any(|i| i.issuer == iss);
    let token_iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Principal, agent and chain as the issuer's profile names them. `sub` and every actor
    // reach the identity headers and the audit trail: each must be an identity value (no
    // separator, whitespace or control character; see `agents::is_identity`).
    let cx = crate::profile::Context {
        token_iss,
        max_depth: cfg.max_delegation_depth,
        trusted: &trusted,
    };
    let mut identity = crate::profile::map(&issuer.profile, claims, &audiences, &cx)?;
    let scopes: Vec<String> = match identity.scopes.take() {
        Some(s) => s,
        None => scope
            .as_deref()
            .map(crate::profile::scope_list)
            .unwrap_or_default(),
    };
    if !scopes.iter().all(|s| crate::agents::is_scope_token(s)) {
        return Err(Reason::TokenClaimType);
    }

    let (Some(exp), Some(iat)) = (exp, iat) else {
        return Err(Reason::TokenClaimMissing);
    };
    check_times(exp, nbf, iat, now, cfg.clock_skew_s as f64)?;
    if exp < iat || exp - iat > cfg.max_token_lifetime_s as f64 {
        return Err(Reason::TokenLifetime);
    }
    if !audiences.iter().any(|a| issuer.audiences.contains(a)) {
        return Err(Reason::TokenAudience);
    }
    Ok(ClaimFacts {
        identity,
        audiences,
        scopes,
        jti,
        exp,
        iat,
        nbf,
    })
}

/// The claim rules that depend on the clock, in the order a full verification applies
/// them (a cached token gets the same answer as a fresh one).
pub fn check_times(
    exp: f64,
    nbf: Option<f64>,
    iat: f64,
    now: f64,
    skew: f64,
) -> Result<(), Reason> {
    if now > exp + skew {
        return Err(Reason::TokenExpired);
    }
    if nbf.is_some_and(|nbf| nbf > now + skew) {
        return Err(Reason::TokenNotYetValid);
    }
    if iat > now + skew {
        return Err(Reason::TokenIssuedInFuture);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::crypto::PureRust;
    use crate::dev::{mint, DevKeys, Recipe};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const PARTNER: &str = "https://partner.agent-iam.test";

    /// The demo keys, and a configuration trusting the demo issuer and a second one.
    fn setup() -> (DevKeys, Config) {
        let text = std::fs::read_to_string("test-harness/keys/demo-private.json").unwrap();
        let keys = DevKeys::from_private_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut plugin = crate::dev::demo_plugin_config(&keys);
        let mut partner = plugin["issuers"][0].clone();
        partner["issuer"] = json!(PARTNER);
        plugin["issuers"].as_array_mut().unwrap().push(partner);
        let cfg = Config::from_json(plugin.to_string().as_bytes()).unwrap();
        (keys, cfg)
    }

    fn verify(recipe: Value) -> Result<VerifiedToken, Reason> {
        let (keys, cfg) = setup();
        let r: Recipe = serde_json::from_value(recipe).unwrap();
        let token = mint(&keys, &r, NOW).unwrap();
        verify_token(&token, &cfg.token_rules(), &PureRust, None, NOW as f64).map(|(t, _)| t)
    }

    fn with_claims(claims: Value) -> Result<VerifiedToken, Reason> {
        verify(json!({ "claims": claims }))
    }

    /// Values that must never become an identity: header separators, whitespace that
    /// Envoy trims or that splits a value, control and invisible characters, quoting,
    /// pattern syntax, and anything over the length cap.
    fn hostile_ids() -> Vec<String> {
        let mut v: Vec<String> = [
            "agent:summarizer-x,agent:admin",
            " agent:legacy-bot",
            "agent:legacy-bot ",
            "agent:legacy-bot\t",
            "agent: admin",
            "agent:\u{1}x",
            "agent:x\r\nx-agent-id: admin",
            "agent:x\u{7f}",
            "agent:x\u{85}",
            "agent:\u{a0}x",
            "agent:\u{2003}x",
            "agent:\u{3000}x",
            "agent:\u{200b}x",
            "agent:\u{202e}x",
            "agent:\u{feff}x",
            "agent:\"x",
            "agent:\\x",
            "agent:*",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("agent:{}", "x".repeat(crate::agents::MAX_ID_BYTES)));
        v
    }

    #[test]
    fn sub_must_be_an_identity_value() {
        for bad in hostile_ids() {
            let got = with_claims(json!({ "sub": bad })).map(|t| t.subject);
            assert_eq!(got, Err(Reason::TokenSubject), "{bad:?}");
        }
        let longest = "x".repeat(crate::agents::MAX_ID_BYTES);
        for good in [
            "user:alice",
            "agent:summarizer-3",
            "spiffe://acme/ns/a",
            "José",
            longest.as_str(),
        ] {
            assert_eq!(with_claims(json!({ "sub": good })).unwrap().subject, good);
        }
        assert_eq!(
            with_claims(json!({"sub": 7})).unwrap_err(),
            Reason::TokenClaimType
        );
    }

    #[test]
    fn every_actor_must_be_an_identity_value() {
        for bad in hostile_ids() {
            let current = with_claims(json!({"sub": "user:alice", "act": {"sub": bad}}));
            assert_eq!(current.unwrap_err(), Reason::DelegationMalformed, "{bad:?}");
            let earlier =
                json!({"sub": "user:alice", "act": {"sub": "agent:a", "act": {"sub": bad}}});
            assert_eq!(
                with_claims(earlier).unwrap_err(),
                Reason::DelegationMalformed,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn actor_issuers_must_be_configured() {
        let act = |outer: Value, inner: Value| {
            with_claims(
                json!({"sub": "user:alice", "act": {"sub": "agent:a", "iss": outer,
                "act": {"sub": "agent:b", "iss": inner}}}),
            )
        };
        let ok = act(json!(DEMO_ISSUER), json!(PARTNER)).unwrap();
        assert_eq!(ok.chain[1].iss.as_deref(), Some(PARTNER));
        for (outer, inner) in [
            (json!("https://evil.test"), json!(DEMO_ISSUER)),
            (json!(DEMO_ISSUER), json!("https://evil.test")),
            (json!(format!("{DEMO_ISSUER}/")), json!(PARTNER)),
            (json!("HTTPS://IDP.AGENT-IAM.TEST"), json!(PARTNER)),
        ] {
            assert_eq!(
                act(outer, inner).unwrap_err(),
                Reason::DelegationActorIssuer
            );
        }
        assert_eq!(
            act(json!(""), json!(PARTNER)).unwrap_err(),
            Reason::DelegationMalformed
        );
        assert_eq!(
            act(json!(1), json!(PARTNER)).unwrap_err(),
            Reason::DelegationMalformed
        );
    }

    const DEMO_ISSUER: &str = crate::dev::DEMO_ISSUER;

    /// Actors are keyed by `sub`, as the registry keys them: an `iss` variant of the same
    /// `sub` is the same actor.
    #[test]
    fn cycles_are_keyed_by_sub() {
        let chain = |inner_iss: Option<&str>, outer_iss: Option<&str>| {
            let mut inner = json!({"sub": "agent:relay"});
            if let Some(i) = inner_iss {
                inner["iss"] = json!(i);
            }
            let mut outer = json!({"sub": "agent:relay", "act": inner});
            if let Some(i) = outer_iss {
                outer["iss"] = json!(i);
            }
            with_claims(json!({"sub": "user:alice", "act": outer})).map(|t| t.chain.len())
        };
        for (a, b) in [
            (None, None),
            (Some(DEMO_ISSUER), None),
            (None, Some(DEMO_ISSUER)),
            (Some(PARTNER), Some(DEMO_ISSUER)),
        ] {
            assert_eq!(chain(a, b), Err(Reason::DelegationCycle), "{a:?} {b:?}");
        }
        let deep = json!({"sub": "user:alice", "act": {"sub": "agent:a", "act": {"sub": "agent:b",
            "act": {"sub": "agent:a", "iss": PARTNER}}}});
        assert_eq!(with_claims(deep).unwrap_err(), Reason::DelegationCycle);
    }

    /// `may_act` names the current actor by `sub`; an `iss` in it must be the actor's.
    #[test]
    fn may_act_is_never_looser_than_the_registry() {
        let run = |act: Value, may_act: Value| {
            with_claims(json!({"sub": "user:alice", "act": act, "may_act": may_act})).map(|_| ())
        };
        let planner = json!({"sub": "agent:planner"});
        let partner_planner = json!({"sub": "agent:planner", "iss": PARTNER});
        assert_eq!(
            run(planner.clone(), json!({"sub": "agent:planner"})),
            Ok(())
        );
        assert_eq!(
            run(
                planner.clone(),
                json!({"sub": "agent:planner", "iss": DEMO_ISSUER})
            ),
            Ok(())
        );
        assert_eq!(
            run(partner_planner.clone(), json!({"sub": "agent:planner"})),
            Ok(())
        );
        assert_eq!(
            run(
                partner_planner.clone(),
                json!({"sub": "agent:planner", "iss": PARTNER})
            ),
            Ok(())
        );
        for (act, may_act) in [
            (
                planner.clone(),
                json!({"sub": "agent:planner", "iss": PARTNER}),
            ),
            (
                partner_planner,
                json!({"sub": "agent:planner", "iss": DEMO_ISSUER}),
            ),
            (planner.clone(), json!({"sub": "agent:planner,agent:admin"})),
            (planner.clone(), json!({"sub": "agent:planner "})),
            (planner.clone(), json!({"iss": DEMO_ISSUER})),
            (planner, json!("agent:planner")),
        ] {
            assert_eq!(run(act, may_act), Err(Reason::DelegationMayAct));
        }
    }

    /// Custom claims nest as deep as serde_json parses; the JOSE header and the `act`
    /// chain keep their own caps.
    #[test]
    fn claim_nesting_follows_the_token_rules() {
        for depth in [20, CLAIMS_MAX_DEPTH - 1] {
            // The claims object itself is one level.
            assert!(verify(json!({ "nest": depth })).is_ok(), "{depth}");
        }
        let details =
            json!([{"type": "payment", "locations": [[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]}]);
        assert!(with_claims(json!({ "authorization_details": details })).is_ok());
        assert_eq!(
            verify(json!({ "nest": CLAIMS_MAX_DEPTH })).unwrap_err(),
            Reason::TokenMalformed
        );
        assert_eq!(
            verify(json!({ "nest": 200 })).unwrap_err(),
            Reason::TokenMalformed
        );
        let deep_header = json!({"header": {"x": {"a": {"b": {"c": {}}}}}});
        assert_eq!(verify(deep_header).unwrap_err(), Reason::TokenMalformed);
        let mut act = json!({"sub": "agent:a0"});
        for i in 1..6 {
            act = json!({"sub": format!("agent:a{i}"), "act": act});
        }
        assert_eq!(
            with_claims(json!({"sub": "user:alice", "act": act})).unwrap_err(),
            Reason::DelegationDepth
        );
    }
}
