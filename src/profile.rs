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
        tenant: text(claims, "tenant")?.map(str::to_owned),
        client: oauth_client(claims)?,
        scopes: None,
    })
}

/// An RFC 6749 §3.3 scope string as its scope tokens.
pub fn scope_list(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
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

/// Microsoft Entra Agent ID. The agent is always the application the token was issued to,
/// by its app (client) id (`azp`, v1 `appid`): the one id an agent identity carries whether
/// it acts alone or for someone. `idtyp` says who the subject is: `app` (the agent acting
/// alone) or `user` (`oid` a person, or the agent's own agent user account, for whom the
/// agent acts). The facets (`xms_sub_fct`, `xms_act_fct`: 11 agent identity, 13 agent user)
/// must agree with `idtyp`. Scopes come from `scp` (delegated) or `roles` (application
/// permissions). Source: learn.microsoft.com/en-us/entra/agent-id/identity-platform/agent-token-claims
fn entra(claims: &Map<String, Value>) -> Result<Identity, Reason> {
    if claims.contains_key("act") || claims.contains_key("scope") {
        // Entra never sends these: a token with them is not what the profile reads.
        return Err(Reason::TokenProfileClaims);
    }
    let oid = text(claims, "oid")?.ok_or(Reason::TokenProfileClaims)?;
    subject(claims)?;
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
            // Microsoft: `scp` in an app-only token is absent, empty or `/`.
            if scp.is_some_and(|s| !s.is_empty() && s != "/") || sub_is_agent_user {
                return Err(Reason::TokenProfileClaims);
            }
            if !is_identity(&client) {
                return Err(Reason::TokenSubject);
            }
            // The actor of an app token is its subject: the facets must say the same.
            if actor_is_agent != sub_is_agent && !act_fct.is_empty() {
                return Err(Reason::TokenProfileClaims);
            }
            Ok(Identity {
                principal: client.clone(),
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
            let scopes = scp.map(scope_list).unwrap_or_default();
            // The user (a person, or the agent's own agent user account); the application
            // (an agent identity when faceted so) acts for them.
            if sub_is_agent_user && !actor_is_agent {
                return Err(Reason::TokenProfileClaims);
            }
            if !is_identity(&client) {
                return Err(Reason::DelegationMalformed);
            }
            Ok(Identity {
                principal: oid.to_owned(),
                chain: vec![Actor {
                    sub: client.clone(),
                    iss: None,
                }],
                agent_type: if sub_is_agent_user {
                    Some("agent_user".to_owned())
                } else {
                    actor_is_agent.then(|| "ai_agent".to_owned())
                },
                tenant,
                client: Some(client),
                scopes: Some(scopes),
            })
        }
        _ => Err(Reason::TokenProfileClaims),
    }
}

/// Auth0 for AI Agents. An agent acting alone is `sub` (its agent id, `agt_…`; a classic
/// machine-to-machine client `<client_id>@clients`, read as its client id); acting for a
/// user it is `act.sub`, with earlier hops nested (at most four). `sub_profile` (on the
/// token and on each `act`) types each identity: `user`, `ai_agent`, `service`, ...;
/// `client_profile` types the client and may list several. Source:
/// auth0.com/docs/ai-agents-mcp/agents-as-principal/agent-identity-in-tokens
fn auth0(claims: &Map<String, Value>, cx: &Context<'_>) -> Result<Identity, Reason> {
    let sub = subject(claims)?;
    let chain = act_chain(claims, cx)?;
    let client = oauth_client(claims)?;
    let sub_profile = text(claims, "sub_profile")?;
    let client_profile = text(claims, "client_profile")?;
    let tenant = text(claims, "org_id")?.map(str::to_owned);
    let act = claims.get("act").and_then(Value::as_object);
    let actor_profile = match act {
        Some(a) => text(a, "sub_profile")?,
        None => None,
    };
    let (principal, agent_type) = if let Some(actor) = act {
        // The current actor is never a user, and the client it used is the token's.
        let actor_client = text(actor, "client_id")?;
        if actor_profile == Some("user")
            || matches!((actor_client, client.as_deref()), (Some(a), Some(c)) if a != c)
        {
            return Err(Reason::TokenProfileClaims);
        }
        (sub, actor_profile)
    } else {
        // Alone: an agent's token comes from an agent's client.
        let client_is_agent = client_profile.map(|c| c.split(' ').any(|p| p == "ai_agent"));
        if sub_profile == Some("ai_agent") && client_is_agent == Some(false) {
            return Err(Reason::TokenProfileClaims);
        }
        match sub.strip_suffix("@clients") {
            // A classic client-credentials token: `sub` and the client must be the same.
            Some(id) if client.as_deref().is_some_and(|c| c != id) => {
                return Err(Reason::TokenProfileClaims);
            }
            Some(id) => (id.to_owned(), sub_profile),
            None => (sub, sub_profile),
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
    let agent_type = match claims.get("act").and_then(Value::as_object) {
        Some(a) => text(a, "sub_profile")?.map(str::to_owned),
        None => None,
    };
    Ok(Identity {
        principal: sub,
        chain,
        agent_type,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(profile: &Profile, claims: Value) -> Result<Identity, Reason> {
        let claims = claims.as_object().cloned().unwrap_or_default();
        let aud: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        let trusted = |_: &str| true;
        let cx = Context {
            token_iss: "https://idp.test",
            max_depth: 4,
            trusted: &trusted,
        };
        map(profile, &claims, &aud, &cx)
    }

    fn agent(id: &Identity) -> &str {
        id.chain
            .first()
            .map_or(id.principal.as_str(), |a| a.sub.as_str())
    }

    /// The sample autonomous agent token of "Token claims reference for agent IDs"
    /// (learn.microsoft.com/en-us/entra/agent-id/identity-platform/agent-token-claims).
    fn entra_autonomous() -> Value {
        json!({"aud":"f2510d34-8dca-4ab8-a0bc-aaec4d3a3e36",
            "iss":"https://sts.windows.net/00000001-0000-0ff1-ce00-000000000000/",
            "iat":1753392285,"nbf":1753392285,"exp":1753421385,
            "aio":"Y2JgYGhn1nzmErKqi0vc4Fr6H22/C5/4FP+xZbZYpik8nRkp+gEA",
            "appid":"aaaaaaaa-1111-2222-3333-444444444444","appidacr":"2",
            "idp":"https://sts.windows.net/00000001-0000-0ff1-ce00-000000000000/",
            "idtyp":"app","oid":"bbbbbbbb-1111-2222-3333-444444444444",
            "rh":"1.AAAAAQAAAAAA8Q_OAAAAAAAAADQNUfLKjbhKoLyq7E06PjYAAAAAAA.",
            "sub":"cccccccc-1111-2222-3333-444444444444",
            "tid":"00000001-0000-0ff1-ce00-000000000000","uti":"m5RaaRnoFUyp2TbSCAAAAA",
            "ver":"1.0","xms_act_fct":"3 9 11",
            "xms_ftd":"Z5DrW4HFOkR_Lz0M5qETa260d2-fO6seMZJ_tOwRNuc","xms_idrel":"7 10",
            "xms_sub_fct":"9 3 11","xms_tnt_fct":"3 9",
            "xms_par_app_azp":"30cf4c22-9985-4ef7-8756-91cc888176bd"})
    }

    /// The same agent for a user, per the page's on-behalf-of claim table (Microsoft
    /// publishes no decoded example): `idtyp` user, `oid` the user, `azp` the agent.
    fn entra_obo() -> Value {
        json!({"aud":"f2510d34-8dca-4ab8-a0bc-aaec4d3a3e36",
            "iss":"https://login.microsoftonline.com/00000001-0000-0ff1-ce00-000000000000/v2.0",
            "iat":1753392285,"exp":1753421385,"ver":"2.0","idtyp":"user",
            "azp":"aaaaaaaa-1111-2222-3333-444444444444","oid":"dddddddd-1111-2222-3333-444444444444",
            "sub":"eeeeeeee-1111-2222-3333-444444444444","scp":"tickets.read",
            "tid":"00000001-0000-0ff1-ce00-000000000000","xms_idrel":"1","xms_act_fct":"11",
            "xms_par_app_azp":"30cf4c22-9985-4ef7-8756-91cc888176bd"})
    }

    #[test]
    fn entra_names_the_agent_by_its_app_id_alone_and_for_a_user() {
        let alone = run(&Profile::EntraAgentId, entra_autonomous()).unwrap();
        assert_eq!(alone.principal, "aaaaaaaa-1111-2222-3333-444444444444");
        assert!(alone.chain.is_empty());
        assert_eq!(alone.agent_type.as_deref(), Some("ai_agent"));
        assert_eq!(
            alone.tenant.as_deref(),
            Some("00000001-0000-0ff1-ce00-000000000000")
        );
        assert_eq!(alone.scopes, Some(vec![]));

        let obo = run(&Profile::EntraAgentId, entra_obo()).unwrap();
        assert_eq!(obo.principal, "dddddddd-1111-2222-3333-444444444444");
        assert_eq!(agent(&obo), agent(&alone));
        assert_eq!(obo.agent_type.as_deref(), Some("ai_agent"));
        assert_eq!(obo.scopes, Some(vec!["tickets.read".to_owned()]));

        let mut agent_user = entra_obo();
        agent_user["xms_sub_fct"] = json!("13");
        let au = run(&Profile::EntraAgentId, agent_user).unwrap();
        assert_eq!(au.agent_type.as_deref(), Some("agent_user"));
        assert_eq!(agent(&au), agent(&alone));
    }

    #[test]
    fn entra_refuses_contradicting_claims() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"xms_sub_fct": "13"}),
                "app token whose subject is an agent user",
            ),
            (
                json!({"xms_sub_fct": "11 13"}),
                "agent identity and agent user at once",
            ),
            (
                json!({"xms_act_fct": "3 9"}),
                "actor facets that deny the agent subject",
            ),
            (
                json!({"scp": "tickets.read"}),
                "delegated scopes in an app token",
            ),
            (json!({"idtyp": "device"}), "unknown idtyp"),
            (json!({"idtyp": null}), "no idtyp"),
            (
                json!({"azp": "ffffffff-0000-0000-0000-000000000000"}),
                "azp and appid differ",
            ),
            (json!({"act": {"sub": "x"}}), "act in an Entra token"),
            (
                json!({"xms_act_fct": "11 x"}),
                "a facet that is not a number",
            ),
            (json!({"oid": null}), "no oid"),
        ];
        for (patch, why) in cases {
            let mut t = entra_autonomous();
            for (k, v) in patch.as_object().unwrap() {
                if v.is_null() {
                    t.as_object_mut().unwrap().remove(k);
                } else {
                    t[k] = v.clone();
                }
            }
            assert_eq!(
                run(&Profile::EntraAgentId, t),
                Err(Reason::TokenProfileClaims),
                "{why}"
            );
        }
        let mut user_as_agent = entra_obo();
        user_as_agent["xms_sub_fct"] = json!("11");
        assert_eq!(
            run(&Profile::EntraAgentId, user_as_agent),
            Err(Reason::TokenProfileClaims)
        );
        let mut agent_user_without_agent = entra_obo();
        agent_user_without_agent["xms_sub_fct"] = json!("13");
        agent_user_without_agent["xms_act_fct"] = json!("3");
        assert_eq!(
            run(&Profile::EntraAgentId, agent_user_without_agent),
            Err(Reason::TokenProfileClaims)
        );
    }

    /// "Agent Identity in Tokens", auth0.com/docs/ai-agents-mcp/agents-as-principal/agent-identity-in-tokens:
    /// client credentials and the on-behalf-of exchange.
    fn auth0_alone() -> Value {
        json!({"iss":"https://YOUR_AUTH0_DOMAIN/","sub":"agt_1a2b3c","sub_profile":"ai_agent",
            "client_id":"YOUR_CLIENT_ID","client_profile":"service ai_agent",
            "aud":"https://your-resource-api.example.com","scope":"read:data",
            "exp":1711820400,"iat":1711816800})
    }

    fn auth0_obo() -> Value {
        json!({"iss":"https://YOUR_AUTH0_DOMAIN/","sub":"auth0|user123","sub_profile":"user",
            "client_id":"agent-client-id","client_profile":"service ai_agent",
            "aud":"https://resource-api.example.com","scope":"read:data",
            "cnf":{"jkt":"NzbLsXh8uDCcd7MNwrnNZpX0ak8ACQ"},"exp":1711820400,"iat":1711816800,
            "act":{"sub":"agt_1a2b3c","sub_profile":"ai_agent","client_id":"agent-client-id",
                "act":{"sub":"spa-client-id","sub_profile":"browser_app","client_id":"spa-client-id"}}})
    }

    #[test]
    fn auth0_names_the_agent_by_its_agent_id_alone_and_for_a_user() {
        let alone = run(&Profile::Auth0Agents, auth0_alone()).unwrap();
        assert_eq!(alone.principal, "agt_1a2b3c");
        assert_eq!(alone.agent_type.as_deref(), Some("ai_agent"));
        assert_eq!(alone.client.as_deref(), Some("YOUR_CLIENT_ID"));
        let obo = run(&Profile::Auth0Agents, auth0_obo()).unwrap();
        assert_eq!(obo.principal, "auth0|user123");
        assert_eq!(agent(&obo), "agt_1a2b3c");
        let subs: Vec<&str> = obo.chain.iter().map(|a| a.sub.as_str()).collect();
        assert_eq!(subs, ["agt_1a2b3c", "spa-client-id"]);
        assert_eq!(obo.agent_type.as_deref(), Some("ai_agent"));

        // "Work with Tokens and Organizations" (auth0.com/docs/manage-users/organizations/using-tokens).
        let m2m = json!({"iss":"https://exampleco.auth0.com/",
            "sub":"CS2MNgcX1VZFCJaEzfKw2VPAAS0gzhqP@clients","aud":"https://example-api",
            "iat":1727782196,"exp":1727868596,"scope":"scope1 scope2",
            "org_id":"org_vIK75NKFvaozQsFy","org_name":"acme","gty":"client-credentials",
            "azp":"CS2MNgcX1VZFCJaEzfKw2VPAAS0gzhqP"});
        let m = run(&Profile::Auth0Agents, m2m.clone()).unwrap();
        assert_eq!(m.principal, "CS2MNgcX1VZFCJaEzfKw2VPAAS0gzhqP");
        assert_eq!(m.tenant.as_deref(), Some("org_vIK75NKFvaozQsFy"));
        let mut other = m2m;
        other["azp"] = json!("someone-else");
        assert_eq!(
            run(&Profile::Auth0Agents, other),
            Err(Reason::TokenProfileClaims)
        );

        let mut user_actor = auth0_obo();
        user_actor["act"]["sub_profile"] = json!("user");
        assert_eq!(
            run(&Profile::Auth0Agents, user_actor),
            Err(Reason::TokenProfileClaims)
        );
        let mut other_client = auth0_obo();
        other_client["act"]["client_id"] = json!("spa-client-id");
        assert_eq!(
            run(&Profile::Auth0Agents, other_client),
            Err(Reason::TokenProfileClaims)
        );
        let mut not_an_agent_client = auth0_alone();
        not_an_agent_client["client_profile"] = json!("browser_app");
        assert_eq!(
            run(&Profile::Auth0Agents, not_an_agent_client),
            Err(Reason::TokenProfileClaims)
        );
    }

    #[test]
    fn okta_reads_act_or_the_client_and_an_id_jag_is_never_an_access_token() {
        assert_eq!(
            refuse_typ(Some("oauth-id-jag+jwt")),
            Err(Reason::TokenAssertionGrant)
        );
        assert_eq!(
            refuse_typ(Some("application/OAuth-ID-JAG+JWT")),
            Err(Reason::TokenAssertionGrant)
        );
        assert_eq!(refuse_typ(Some("at+jwt")), Ok(()));
        // The claims of Okta's ID-JAG example (developer.okta.com/docs/guides/xaa-request-token-ex/saml2/main/),
        // as the resource's authorization server carries them into its access token.
        let t = json!({"iss":"https://as.myresource.com","sub":"00uzkk8ctx1WtQ8fy1d7",
            "aud":"https://api.myresource.com","client_id":"0oaa0esowyOyPreaI0g7",
            "scope":"my.xaa.a.read my.xaa.b.manage","iat":1781223753,"exp":1781224053,
            "act":{"sub":"wlpa0eiuaoCNrpoaE0g7","sub_profile":"ai_agent"}});
        let id = run(&Profile::OktaXaa, t.clone()).unwrap();
        assert_eq!(id.principal, "00uzkk8ctx1WtQ8fy1d7");
        assert_eq!(agent(&id), "wlpa0eiuaoCNrpoaE0g7");
        assert_eq!(id.agent_type.as_deref(), Some("ai_agent"));
        let mut no_act = t.clone();
        no_act.as_object_mut().unwrap().remove("act");
        assert_eq!(
            agent(&run(&Profile::OktaXaa, no_act).unwrap()),
            "0oaa0esowyOyPreaI0g7"
        );
        let mut scp = t;
        scp["scp"] = json!(["my.xaa.a.read"]);
        assert_eq!(run(&Profile::OktaXaa, scp), Err(Reason::TokenProfileClaims));
    }

    #[test]
    fn id_tokens_are_refused_under_every_profile() {
        let spiffe = Profile::Spiffe {
            trust_domains: vec!["example.org".into()],
        };
        for p in [
            Profile::Rfc8693,
            Profile::Auth0Agents,
            Profile::OktaXaa,
            spiffe,
        ] {
            for extra in [
                json!({"nonce": "n"}),
                json!({"at_hash": "h"}),
                json!({"c_hash": "h"}),
                json!({"azp": "https://api.test"}),
            ] {
                let mut t = json!({"sub": "spiffe://example.org/a", "aud": "https://api.test"});
                for (k, v) in extra.as_object().unwrap() {
                    t[k] = v.clone();
                }
                assert_eq!(run(&p, t), Err(Reason::TokenIdToken), "{p:?} {extra}");
            }
        }
    }

    #[test]
    fn spiffe_ids_must_be_well_formed_and_in_a_trust_domain() {
        // Google's agent identity form (GoogleCloudPlatform/iam-federation-tools).
        let google = "spiffe://agents.global.org-123456789.system.id.goog/resources/aiplatform/projects/42/locations/us-central1/reasoningEngines/777";
        let p = Profile::Spiffe {
            trust_domains: vec![
                "agents.global.org-123456789.system.id.goog".into(),
                "example.org".into(),
            ],
        };
        let ok = run(&p, json!({"sub": google, "aud": ["https://api.test"]})).unwrap();
        assert_eq!(ok.principal, google);
        assert_eq!(
            ok.tenant.as_deref(),
            Some("agents.global.org-123456789.system.id.goog")
        );
        for bad in [
            "spiffe://evil.org/a",
            "spiffe://Example.org/a",
            "spiffe://example.org:443/a",
            "spiffe://user@example.org/a",
            "spiffe://example.org/a/../b",
            "spiffe://example.org//a",
            "spiffe://example.org/a/",
            "spiffe://example.org/a?x=1",
            "spiffe://example.org/a#f",
            "spiffe://example.org.evil/a",
            "https://example.org/a",
            "spiffe:///a",
        ] {
            assert_eq!(
                run(&p, json!({"sub": bad, "aud": "x"})),
                Err(Reason::TokenTrustDomain),
                "{bad}"
            );
        }
        let actor_outside = json!({"sub": "spiffe://example.org/user", "aud": "x",
            "act": {"sub": "spiffe://evil.org/agent"}});
        assert_eq!(run(&p, actor_outside), Err(Reason::TokenTrustDomain));
    }

    #[test]
    fn custom_profiles_map_pointers_under_conditions() {
        let c = Profile::Custom(Custom {
            principal: "/sub".into(),
            agent: Some("/ext/agent".into()),
            actor_chain: None,
            agent_type: Some("/ext/kind".into()),
            tenant: Some("/https:~1~1acme.test~1tenant".into()),
            client: Some("/cid".into()),
            require: vec![Condition {
                claim: "/ext/kind".into(),
                test: Test::Equals(json!("ai_agent")),
            }],
        });
        let t = json!({"sub": "user:alice", "ext": {"agent": "agent:planner", "kind": "ai_agent"},
            "https://acme.test/tenant": "acme", "cid": "planner-app", "aud": "x"});
        let id = run(&c, t.clone()).unwrap();
        assert_eq!(id.principal, "user:alice");
        assert_eq!(agent(&id), "agent:planner");
        assert_eq!(id.tenant.as_deref(), Some("acme"));
        let mut wrong_kind = t.clone();
        wrong_kind["ext"]["kind"] = json!("service");
        assert_eq!(run(&c, wrong_kind), Err(Reason::TokenProfileClaims));
        let mut typed = t;
        typed["cid"] = json!(7);
        assert_eq!(run(&c, typed), Err(Reason::TokenProfileClaims));
    }
}
