//! Delegation (RFC 8693): the `act` chain as the token states it, and whether the
//! registry lets every actor act for the principal and hand over to the next, with the
//! privilege ceiling (delegation only ever narrows).

// The filter reads the schema shipped in agent_iam.meta.json: no schemars code in the .wasm.
#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::agents::{AgentRecord, AgentStatus, Registry};
use crate::identity::{is_identity, matches};
use crate::reason::Reason;

/// One actor of a delegation chain (RFC 8693 `act`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub sub: String,
    pub iss: Option<String>,
}

/// Walks `act` (RFC 8693 §4.1): the current actor first, then earlier ones. Every level
/// is an object with a string `sub` that is an identity value (`agents::is_identity`) and
/// an optional non-empty string `iss` that must name a configured issuer (`trusted`). No
/// actor may appear twice: actors are keyed by `sub` alone, as the registry keys them, so
/// the same `sub` under another (or no) `iss` is a cycle. Nested `may_act` inside `act`
/// is informational and ignored.
pub(crate) fn actor_chain(
    act: Option<&Value>,
    max_depth: usize,
    trusted: &dyn Fn(&str) -> bool,
) -> Result<Vec<Actor>, Reason> {
    let mut chain: Vec<Actor> = Vec::new();
    let mut cur = act;
    while let Some(v) = cur {
        let obj = v.as_object().ok_or(Reason::DelegationMalformed)?;
        let sub = match obj.get("sub") {
            Some(Value::String(s)) if is_identity(s) => s.clone(),
            _ => return Err(Reason::DelegationMalformed),
        };
        let iss = match obj.get("iss") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(Reason::DelegationMalformed),
        };
        if iss.as_deref().is_some_and(|i| !trusted(i)) {
            return Err(Reason::DelegationActorIssuer);
        }
        if chain.iter().any(|a| a.sub == sub) {
            return Err(Reason::DelegationCycle);
        }
        chain.push(Actor { sub, iss });
        if chain.len() > max_depth {
            return Err(Reason::DelegationDepth);
        }
        cur = obj.get("act");
    }
    Ok(chain)
}

/// A top-level `may_act` (RFC 8693 §4.4) must name the current actor: the same `sub`
/// and, when `may_act` gives an `iss`, the actor's issuer (its `act.iss`, else the
/// token's). This is never looser than the registry's keying by `sub`: an `iss` in
/// `may_act` can only refuse more.
pub(crate) fn check_may_act(
    may_act: Option<&Value>,
    current: Option<&Actor>,
    token_iss: &str,
) -> Result<(), Reason> {
    let (Some(v), Some(actor)) = (may_act, current) else {
        return Ok(());
    };
    let obj = v.as_object().ok_or(Reason::DelegationMayAct)?;
    let sub_ok = obj.get("sub").and_then(Value::as_str) == Some(actor.sub.as_str());
    let iss_ok = match obj.get("iss") {
        None => true,
        Some(Value::String(i)) => actor.iss.as_deref().unwrap_or(token_iss) == i,
        Some(_) => false,
    };
    if sub_ok && iss_ok {
        Ok(())
    } else {
        Err(Reason::DelegationMayAct)
    }
}

/// What to do when a token asks for more than the chain's ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum CeilingMode {
    /// Deny with `delegation.scope_exceeds_ceiling` (least privilege, the default).
    #[default]
    Deny,
    /// Narrow the effective scopes to the ceiling and carry on.
    Narrow,
}

/// The outcome of the agent checks.
#[derive(Debug, Clone, Default)]
pub struct AgentContext {
    /// Registry entry id of the acting agent (`None` for an admitted unregistered subject).
    pub record_id: Option<String>,
    pub owner: Option<String>,
    pub requested: Vec<String>,
    pub effective: Vec<String>,
}

/// A denial with the scopes to name in `WWW-Authenticate` (for scope-related reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    pub scopes: Vec<String>,
}

impl From<Reason> for Denial {
    fn from(reason: Reason) -> Self {
        Denial {
            reason,
            scopes: Vec::new(),
        }
    }
}

/// Inputs of [`authorize`] that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct AgentRules {
    pub allow_unregistered_subjects: bool,
    pub ceiling: CeilingMode,
}

/// Which identity of the token a registry record stands for (it picks the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The acting agent: `act.sub`, or `sub` without delegation.
    Acting,
    /// An earlier actor of the chain.
    EarlierActor,
    /// The principal (`sub`) of a delegated token.
    Principal,
}

fn lifecycle(rec: &AgentRecord, now: f64, role: Role) -> Result<(), Reason> {
    let expired = rec.not_after.is_some_and(|t| now > t as f64);
    let problem = match rec.status {
        AgentStatus::Suspended => Some(Reason::AgentSuspended),
        AgentStatus::Retired => Some(Reason::AgentRetired),
        AgentStatus::Active if expired => Some(Reason::AgentExpired),
        AgentStatus::Active => None,
    };
    match (problem, role) {
        (None, _) => Ok(()),
        (Some(r), Role::Acting) => Err(r),
        // An earlier actor that is no longer active breaks the chain.
        (Some(_), Role::EarlierActor) => Err(Reason::DelegationActorInactive),
        // Nobody acts for an agent that may not act itself.
        (Some(_), Role::Principal) => Err(Reason::DelegationPrincipalInactive),
    }
}

/// Checks the acting agent and the delegation chain against the registry and computes
/// the effective scopes (token scopes ∩ every actor's `max_scopes`).
pub fn authorize(
    principal: &str,
    chain: &[Actor],
    scopes: &[String],
    registry: &Registry,
    rules: AgentRules,
    now: f64,
) -> Result<AgentContext, Denial> {
    let acting = chain.first().map_or(principal, |a| a.sub.as_str());
    let Some(current) = registry.lookup(acting) else {
        if chain.is_empty() && rules.allow_unregistered_subjects {
            return Ok(AgentContext {
                record_id: None,
                owner: None,
                requested: scopes.to_vec(),
                effective: scopes.to_vec(),
            });
        }
        return Err(Reason::AgentUnknown.into());
    };
    lifecycle(current, now, Role::Acting)?;

    let mut records = vec![current];
    for actor in chain.iter().skip(1) {
        let rec = registry
            .lookup(&actor.sub)
            .ok_or(Reason::DelegationActorUnknown)?;
        lifecycle(rec, now, Role::EarlierActor)?;
        records.push(rec);
    }
    if !chain.is_empty() {
        // A principal that is a registered agent must be active too (an unregistered
        // principal, e.g. a human, has no lifecycle here).
        if let Some(rec) = registry.lookup(principal) {
            lifecycle(rec, now, Role::Principal)?;
        }
        for rec in &records {
            if !rec.may_act_for.iter().any(|p| matches(p, principal)) {
                return Err(Reason::DelegationPrincipalNotAllowed.into());
            }
        }
        // chain[i + 1] handed over to chain[i].
        for (i, actor) in chain.iter().enumerate() {
            if let (Some(delegator), true) = (records.get(i + 1), i + 1 < chain.len()) {
                if !delegator
                    .may_delegate_to
                    .iter()
                    .any(|p| matches(p, &actor.sub))
                {
                    return Err(Reason::DelegationNotPermitted.into());
                }
            }
        }
    }
    let within = |s: &String| {
        records
            .iter()
            .all(|r| r.max_scopes.iter().any(|p| matches(p, s)))
    };
    let effective: Vec<String> = scopes.iter().filter(|s| within(s)).cloned().collect();
    if effective.len() != scopes.len() && rules.ceiling == CeilingMode::Deny {
        let over: Vec<String> = scopes.iter().filter(|s| !within(s)).cloned().collect();
        return Err(Denial {
            reason: Reason::DelegationScopeExceedsCeiling,
            scopes: over,
        });
    }
    Ok(AgentContext {
        record_id: Some(current.id.clone()),
        owner: current.owner.clone(),
        requested: scopes.to_vec(),
        effective,
    })
}
