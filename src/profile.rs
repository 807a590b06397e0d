//! Identity profiles: each identity provider's way of saying "this agent, acting for that
//! principal, through this chain" mapped into the one model the rest of the pipeline uses
//! (DESIGN.md "Token rules"). Registry ids, delegation rules, ceilings, revocation, limits,
//! policy input, identity headers and audit all read the [`Identity`]; the vendor's raw
//! claims stay in `input.token`.
//!
//! Every profile also refuses what is not an access token at all: an identity assertion
//! grant (`typ` `oauth-id-jag+jwt`) and an OpenID Connect ID token.

use serde_json::{Map, Value};

use crate::delegation::{actor_chain, check_may_act, Actor};
use crate::identity::is_identity;
use crate::reason::Reason;

/// The `typ` of an identity assertion JWT authorization grant
/// (draft-ietf-oauth-identity-assertion-authz-grant): a grant for an authorization server.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";

/// A validated `issuers[].profile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Profile {
    #[default]
    Rfc8693,
    EntraAgentId,
    Auth0Agents,
    OktaXaa,
    Spiffe {
        /// Lower-case trust domain names.
        trust_domains: Vec<String>,
    },
    Custom(Custom),
}

/// A validated custom mapping: JSON Pointers into the claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custom {
    pub principal: String,
    pub agent: Option<String>,
    pub actor_chain: Option<String>,
    pub agent_type: Option<String>,
    pub tenant: Option<String>,
    pub client: Option<String>,
    pub require: Vec<Condition>,
}

/// One `require` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub claim: String,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Equals(Value),
    Present(bool),
    Contains(String),
}

impl Profile {
    /// The profile's name in the configuration, the audit event and `input.identity`.
    pub fn name(&self) -> &'static str {
        match self {
            Profile::Rfc8693 => "rfc8693",
            Profile::EntraAgentId => "entra-agent-id",
            Profile::Auth0Agents => "auth0-agents",
            Profile::OktaXaa => "okta-xaa",
            Profile::Spiffe { .. } => "spiffe",
            Profile::Custom(_) => "custom",
        }
    }

    /// `accepted_types` when the issuer does not set them: what the vendor sends.
    pub fn default_types(&self) -> Vec<String> {
        let types: &[&str] = match self {
            Profile::Rfc8693 | Profile::Auth0Agents | Profile::OktaXaa | Profile::Custom(_) => {
                &["at+jwt"]
            }
            // Entra access tokens carry `typ: JWT`.
            Profile::EntraAgentId => &["jwt"],
            // JWT-SVID §3: `typ`, when present, is `JWT` or `JOSE`.
            Profile::Spiffe { .. } => &["jwt", "jose"],
        };
        types.iter().map(|t| (*t).to_owned()).collect()
    }
}

/// The one model every profile maps a token into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Whom the agent acts for; the agent itself when it acts alone.
    pub principal: String,
    /// Actors, current first (empty when the agent acts alone: then it is the principal).
    pub chain: Vec<Actor>,
    pub agent_type: Option<String>,
    pub tenant: Option<String>,
    pub client: Option<String>,
    /// The granted scopes when the profile reads them from elsewhere than `scope`
    /// (Entra `scp` / `roles`, Okta `scp`).
    pub scopes: Option<Vec<String>>,
}

/// What mapping needs besides the claims.
pub struct Context<'a> {
    pub token_iss: &'a str,
    pub max_depth: usize,
    pub trusted: &'a dyn Fn(&str) -> bool,
}

/// Refuses tokens that are not access tokens, whatever the profile: an ID-JAG (by `typ`,
/// checked before `accepted_types` so the reason says what it is) and ID tokens.
pub fn refuse_typ(typ: Option<&str>) -> Result<(), Reason> {
    match typ {
        Some(t) if crate::token::normalize_typ(t) == ID_JAG_TYP => Err(Reason::TokenAssertionGrant),
        _ => Ok(()),
    }
}

/// OpenID Connect ID token shapes (OIDC Core §2, §3.1.3.6, §3.3.2.11): `nonce`, `at_hash`
/// and `c_hash` never belong in an access token, and an ID token's `aud` is its own client.
fn refuse_id_token(claims: &Map<String, Value>, audiences: &[String]) -> Result<(), Reason> {
    if ["nonce", "at_hash", "c_hash"]
        .iter()
        .any(|c| claims.contains_key(*c))
    {
        return Err(Reason::TokenIdToken);
    }
    for client in ["azp", "client_id"] {
        if let Some(Value::String(c)) = claims.get(client) {
            if audiences.iter().any(|a| a == c) {
                return Err(Reason::TokenIdToken);
            }
        }
    }
    Ok(())
}

/// Maps verified claims (signature aside) into the model. `audiences` is the token's `aud`.
pub fn map(
    profile: &Profile,
    claims: &Map<String, Value>,
    audiences: &[String],
    cx: &Context<'_>,
) -> Result<Identity, Reason> {
    refuse_id_token(claims, audiences)?;
    let identity = match profile {
        Profile::Rfc8693 => rfc8693(claims, cx)?,
        Profile::EntraAgentId => entra(claims)?,
        Profile::Auth0Agents => auth0(claims, cx)?,
        Profile::OktaXaa => okta(claims, cx)?,
        Profile::Spiffe { trust_domains } => spiffe(claims, trust_domains, cx)?,
        Profile::Custom(c) => custom(c, claims, cx)?,
    };
    if !is_identity(&identity.principal) {
        return Err(Reason::TokenSubject);
    }
    for v in [&identity.agent_type, &identity.tenant, &identity.client]
        .into_iter()
        .flatten()
    {
        if !is_identity(v) {
            return Err(Reason::TokenProfileClaims);
        }
    }
    Ok(identity)
}

/// `sub` as an identity value (`token.subject` when missing or not one).
fn subject(claims: &Map<String, Value>) -> Result<String, Reason> {
    match claims.get("sub") {
        None => Err(Reason::TokenSubject),
        Some(Value::String(s)) if !is_identity(s) => Err(Reason::TokenSubject),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Reason::TokenClaimType),
    }
}

/// An optional string claim; any other type contradicts the profile.
fn text<'c>(claims: &'c Map<String, Value>, name: &str) -> Result<Option<&'c str>, Reason> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Reason::TokenProfileClaims),
    }
}

/// The `act` chain and `may_act` (RFC 8693 §4.1, §4.4).
fn act_chain(claims: &Map<String, Value>, cx: &Context<'_>) -> Result<Vec<Actor>, Reason> {
    let chain = actor_chain(claims.get("act"), cx.max_depth, cx.trusted)?;
    check_may_act(claims.get("may_act"), chain.first(), cx.token_iss)?;
    Ok(chain)
}

/// `client_id` (RFC 9068 §2.2), else `azp`; both present must agree.
fn oauth_client(claims: &Map<String, Value>) -> Result<Option<String>, Reason> {
    match (text(claims, "client_id")?, text(claims, "azp")?) {
        (Some(a), Some(b)) if a != b => Err(Reason::TokenProfileClaims),
        (Some(c), _) | (None, Some(c)) => Ok(Some(c.to_owned())),
        (None, None) => Ok(None),
    }
}

fn rfc8693(claims: &Map<String, Value>, cx: &Context<'_>) -> Result<Identity, Reason> {
    Ok(Identity {
        principal: subject(claims)?,
        chain: act_chain(claims, cx)?,
        agent_type: None,
        tenant: None,
        client: oauth_client(claims)?,
        scopes: None,
    })
}

/// A space-separated list of facet numbers (`"3 9 11"`).
fn facets(claims: &Map<String, Value>, name: &str) -> Result<Vec<u32>, Reason> {
    let Some(s) = text(claims, name)? else {
        return Ok(Vec::new());
    };
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse::<u32>().map_err(|_| Reason::TokenProfileClaims))
        .collect()
}

/// Entra facet: the identity is an agent identity.
const ENTRA_AGENT_IDENTITY: u32 = 11;
/// Entra facet: the identity is an agent's user account.
const ENTRA_AGENT_USER: u32 = 13;

/// Microsoft Entra Agent ID. `idtyp` says who the subject is: `app` (an application or an
/// agent identity acting alone: `oid` = `sub` = its object id) or `user` (`oid` the user,
/// `azp` the application or agent acting for them). The facets (`xms_sub_fct`,
/// `xms_act_fct`) say which of them is an agent; they must agree with `idtyp`. Scopes come
/// from `scp` (delegated) or `roles` (application permissions).
fn entra(claims: &Map<String, Value>) -> Result<Identity, Reason> {
    if claims.contains_key("act") || claims.contains_key("scope") {
        // Entra never sends these: a token with them is not what the profile reads.
        return Err(Reason::TokenProfileClaims);
    }
    let oid = text(claims, "oid")?.ok_or(Reason::TokenProfileClaims)?;
    let sub = subject(claims)?;
    let tenant = text(claims, "tid")?.map(str::to_owned);
    let client = match (text(claims, "azp")?, text(claims, "appid")?) {
        (Some(a), Some(b)) if a != b => return Err(Reason::TokenProfileClaims),
        (Some(c), _) | (None, Some(c)) => c.to_owned(),
        (None, None) => return Err(Reason::TokenProfileClaims),
    };
    let sub_fct = facets(claims, "xms_sub_fct")?;
    let act_fct = facets(claims, "xms_act_fct")?;
    let sub_is_agent = sub_fct.contains(&ENTRA_AGENT_IDENTITY);
    let sub_is_agent_user = sub_fct.contains(&ENTRA_AGENT_USER);
    let actor_is_agent = act_fct.contains(&ENTRA_AGENT_IDENTITY);
    if sub_is_agent && sub_is_agent_user {
        return Err(Reason::TokenProfileClaims);
    }
    let scp = text(claims, "scp")?;
    let roles = match claims.get("roles") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or(Reason::TokenProfileClaims)?,
        ),
        Some(_) => return Err(Reason::TokenProfileClaims),
    };
    match text(claims, "idtyp")? {
        Some("app") => {
            // An application token: no user, no delegated scopes, and the subject is the
            // application itself (its object id, an agent identity when faceted so).
            if scp.is_some() || sub_is_agent_user || sub != oid {
                return Err(Reason::TokenProfileClaims);
            }
            // The actor of an app token is its subject: the facets must say the same.
            if actor_is_agent != sub_is_agent && !act_fct.is_empty() {
                return Err(Reason::TokenProfileClaims);
            }
            Ok(Identity {
                principal: oid.to_owned(),
                chain: Vec::new(),
                agent_type: sub_is_agent.then(|| "ai_agent".to_owned()),
                tenant,
                client: Some(client),
                scopes: Some(roles.unwrap_or_default()),
            })
        }
        Some("user") => {
            if sub_is_agent || roles.is_some() && scp.is_none() {
                return Err(Reason::TokenProfileClaims);
            }
            let scopes = scp
                .map(|s| {
                    s.split(' ')
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if sub_is_agent_user {
                // The agent's own user account, signed in as itself.
                return Ok(Identity {
                    principal: oid.to_owned(),
                    chain: Vec::new(),
                    agent_type: Some("agent_user".to_owned()),
                    tenant,
                    client: Some(client),
                    scopes: Some(scopes),
                });
            }
            // A person; the application (an agent identity when faceted so) acts for them.
            if !is_identity(&client) {
                return Err(Reason::DelegationMalformed);
            }
            Ok(Identity {
                principal: oid.to_owned(),
                chain: vec![Actor {
                    sub: client.clone(),
                    iss: None,
                }],
                agent_type: actor_is_agent.then(|| "ai_agent".to_owned()),
                tenant,
                client: Some(client),
                scopes: Some(scopes),
            })
        }
        _ => Err(Reason::TokenProfileClaims),
    }
}

/// Auth0 for AI Agents. A client-credentials token names the agent alone as
/// `sub` = `<client_id>@clients` (the agent's id is its client id, the same id `act.sub`
/// carries when it acts for a user); a user-delegated token has `act`, nested for each hop.
/// `sub_profile` / `client_profile` (opt-in) type the subject and the client.
fn auth0(claims: &Map<String, Value>, cx: &Context<'_>) -> Result<Identity, Reason> {
    let sub = subject(claims)?;
    let chain = act_chain(claims, cx)?;
    let client = oauth_client(claims)?;
    let sub_profile = text(claims, "sub_profile")?;
    let client_profile = text(claims, "client_profile")?;
    let tenant = text(claims, "org_id")?.map(str::to_owned);
    let alone = sub.strip_suffix("@clients");
    let (principal, agent_type) = match alone {
        Some(id) => {
            // The client acting for itself: `sub` and the client must be the same, and
            // nobody can act for it.
            if !chain.is_empty() || client.as_deref().is_some_and(|c| c != id) {
                return Err(Reason::TokenProfileClaims);
            }
            if let (Some(s), Some(c)) = (sub_profile, client_profile) {
                if s != c {
                    return Err(Reason::TokenProfileClaims);
                }
            }
            (id.to_owned(), sub_profile.or(client_profile))
        }
        None if chain.is_empty() => {
            // A user token without an actor: the user, through an ordinary client.
            (sub, sub_profile)
        }
        None => {
            // The current actor is the client that asked for the token.
            if client.as_deref().is_some_and(|c| chain.iter().all(|a| a.sub != c)) {
                return Err(Reason::TokenProfileClaims);
            }
            (sub, client_profile)
        }
    };
    Ok(Identity {
        principal,
        chain,
        agent_type: agent_type.map(str::to_owned),
        tenant,
        client,
        scopes: None,
    })
}

/// Scopes from `scope` (a string) or `scp` (Okta: an array); both is ambiguous.
fn scope_or_scp(claims: &Map<String, Value>) -> Result<Option<Vec<String>>, Reason> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(_), Some(_)) => Err(Reason::TokenProfileClaims),
        (None, Some(Value::Array(items))) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .map(Some)
            .ok_or(Reason::TokenProfileClaims),
        (None, Some(_)) => Err(Reason::TokenProfileClaims),
        _ => Ok(None),
    }
}

/// Okta Cross App Access: the resource's authorization server exchanged an ID-JAG for this
/// token. `sub` is the user; the agent is `act.sub` when the token has `act`, else the
/// client the token was issued to (`client_id`, Okta's `cid`).
fn okta(claims: &Map<String, Value>, cx: &Context<'_>) -> Result<Identity, Reason> {
    let sub = subject(claims)?;
    let mut chain = act_chain(claims, cx)?;
    let client = match (oauth_client(claims)?, text(claims, "cid")?) {
        (Some(a), Some(b)) if a != b => return Err(Reason::TokenProfileClaims),
        (Some(c), _) => Some(c),
        (None, c) => c.map(str::to_owned),
    };
    if chain.is_empty() {
        if let Some(c) = client.as_deref().filter(|c| *c != sub) {
            if !is_identity(c) {
                return Err(Reason::DelegationMalformed);
            }
            chain.push(Actor {
                sub: c.to_owned(),
                iss: None,
            });
        }
    }
    Ok(Identity {
        principal: sub,
        chain,
        agent_type: None,
        tenant: text(claims, "tenant")?.map(str::to_owned),
        client,
        scopes: scope_or_scp(claims)?,
    })
}

/// The trust domain of a SPIFFE ID (SPIFFE-ID §2), or `None` when `id` is not one:
/// `spiffe://` + a lower-case trust domain of `[a-z0-9.-_]` + a path of non-empty
/// segments of `[A-Za-z0-9.-_]`, none `.` or `..`; no port, user info, query or fragment.
pub fn spiffe_trust_domain(id: &str) -> Option<&str> {
    if id.len() > 2048 {
        return None;
    }
    let rest = id.strip_prefix("spiffe://")?;
    let (td, path) = match rest.find('/') {
        Some(i) => (rest.get(..i)?, rest.get(i..)?),
        None => (rest, ""),
    };
    let td_ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if !td_ok {
        return None;
    }
    if !path.is_empty() {
        for seg in path.get(1..)?.split('/') {
            let ok = !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                return None;
            }
        }
    }
    Some(td)
}

/// SPIFFE JWT-SVIDs: `sub` is the workload's SPIFFE ID, which must be in a configured trust
/// domain; so must every actor's (an `act` chain is read as RFC 8693).
fn spiffe(
    claims: &Map<String, Value>,
    trust_domains: &[String],
    cx: &Context<'_>,
) -> Result<Identity, Reason> {
    let sub = subject(claims)?;
    let chain = act_chain(claims, cx)?;
    let in_domain = |id: &str| {
        spiffe_trust_domain(id)
            .filter(|td| trust_domains.iter().any(|t| t == td))
            .map(str::to_owned)
            .ok_or(Reason::TokenTrustDomain)
    };
    let tenant = in_domain(&sub)?;
    for actor in &chain {
        in_domain(&actor.sub)?;
    }
    Ok(Identity {
        principal: sub,
        chain,
        agent_type: None,
        tenant: Some(tenant),
        client: None,
        scopes: None,
    })
}

fn pointer_text(claims: &Value, path: &str) -> Result<Option<String>, Reason> {
    match claims.pointer(path) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Reason::TokenProfileClaims),
    }
}

fn holds(claims: &Value, c: &Condition) -> bool {
    let v = claims.pointer(&c.claim);
    match &c.test {
        Test::Present(p) => v.is_some() == *p,
        Test::Equals(want) => v == Some(want),
        Test::Contains(item) => match v {
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(item)),
            Some(Value::String(s)) => s.split(' ').any(|x| x == item),
            _ => false,
        },
    }
}

/// A mapping from JSON Pointers: every `require` condition must hold, `principal` must be
/// a string, and an `agent` that differs from the principal acts for it (the current actor
/// of `actor_chain`, when there is one).
fn custom(c: &Custom, claims: &Map<String, Value>, cx: &Context<'_>) -> Result<Identity, Reason> {
    // Pointers resolve against the claims object; it is cloned only for custom profiles.
    let root = Value::Object(claims.clone());
    if !c.require.iter().all(|cond| holds(&root, cond)) {
        return Err(Reason::TokenProfileClaims);
    }
    let principal = match root.pointer(&c.principal) {
        None => return Err(Reason::TokenSubject),
        Some(Value::String(s)) if is_identity(s) => s.clone(),
        Some(Value::String(_)) => return Err(Reason::TokenSubject),
        Some(_) => return Err(Reason::TokenClaimType),
    };
    let mut chain = match &c.actor_chain {
        Some(p) => actor_chain(root.pointer(p), cx.max_depth, cx.trusted)?,
        None => Vec::new(),
    };
    if let Some(p) = &c.agent {
        let agent = pointer_text(&root, p)?.ok_or(Reason::TokenProfileClaims)?;
        match chain.first() {
            Some(current) if current.sub != agent => return Err(Reason::TokenProfileClaims),
            Some(_) => {}
            None if agent == principal => {}
            None => {
                if !is_identity(&agent) {
                    return Err(Reason::DelegationMalformed);
                }
                chain.push(Actor {
                    sub: agent,
                    iss: None,
                });
            }
        }
    }
    if chain.iter().any(|a| a.sub == principal) {
        return Err(Reason::DelegationCycle);
    }
    let opt = |p: &Option<String>| match p {
        Some(p) => pointer_text(&root, p),
        None => Ok(None),
    };
    Ok(Identity {
        principal,
        chain,
        agent_type: opt(&c.agent_type)?,
        tenant: opt(&c.tenant)?,
        client: opt(&c.client)?,
        scopes: None,
    })
}
