//! Enforcement modes: which checks deny and which only report (shadow, or dry run), and
//! what a feed-backed check does when its feed is stale. A leaf below the configuration,
//! the routes and the pipeline.

#[cfg(tools)]
use schemars::JsonSchema;
use serde::Deserialize;

/// Whether a check's deny is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A failed check denies the request.
    #[default]
    Enforce,
    /// A failed check is audited and counted as a shadow deny; the request goes on.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

/// The checks a mode can be set for, in the order the pipeline runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The access token: credentials, signature, claims (`token.*`, `jwks.*`).
    Token,
    /// Proof of possession of a bound token (`dpop.*`, `mtls.*`, `token.unbound`).
    SenderConstraint,
    /// The agent registry and the delegation chain (`agent.*`, `delegation.*`).
    Delegation,
    /// Real-time revocation (`revocation.*`).
    Revocation,
    /// The route table: `route.unmatched`, `scope.insufficient`.
    RouteScopes,
    /// An MCP call's own rules: its body, headers and the tool's scopes (`mcp.*`).
    Mcp,
    /// The configured limits (`limit.*`).
    Limits,
    /// The Rego policy (`policy.*`).
    Policy,
}

impl Check {
    pub const ALL: [Check; 8] = [
        Check::Token,
        Check::SenderConstraint,
        Check::Delegation,
        Check::Revocation,
        Check::RouteScopes,
        Check::Mcp,
        Check::Limits,
        Check::Policy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Token => "token",
            Check::SenderConstraint => "sender_constraint",
            Check::Delegation => "delegation",
            Check::Revocation => "revocation",
            Check::RouteScopes => "route_scopes",
            Check::Mcp => "mcp",
            Check::Limits => "limits",
            Check::Policy => "policy",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The checks whose result this one needs: it cannot run when one of them failed, so
    /// it may only be enforced where they are.
    pub fn needs(self) -> &'static [Check] {
        match self {
            Check::Token => &[],
            Check::SenderConstraint | Check::Delegation | Check::Revocation => &[Check::Token],
            Check::RouteScopes => &[Check::Token, Check::Delegation],
            Check::Mcp => &[Check::Token, Check::Delegation],
            // On an MCP route the limits count the call the MCP check read.
            Check::Limits => &[Check::Token, Check::Delegation, Check::Mcp],
            Check::Policy => &[Check::Token, Check::Delegation, Check::Mcp],
        }
    }
}

/// The checks that ran on a request (passed, failed, or failed in shadow): what
/// `agent-iam check --explain` reports. One byte, set as the pipeline goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckSet(u8);

impl CheckSet {
    pub fn insert(&mut self, check: Check) {
        self.0 |= 1 << check.index();
    }

    pub fn contains(&self, check: Check) -> bool {
        self.0 & (1 << check.index()) != 0
    }
}

/// The mode of every check, for one route (or the configuration's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Modes([Mode; 8]);

impl Modes {
    /// Every check in `mode`.
    pub fn all(mode: Mode) -> Modes {
        Modes([mode; 8])
    }

    pub fn of(&self, check: Check) -> Mode {
        self.0.get(check.index()).copied().unwrap_or(Mode::Enforce)
    }

    pub fn set(&mut self, check: Check, mode: Mode) {
        if let Some(m) = self.0.get_mut(check.index()) {
            *m = mode;
        }
    }

    /// Whether any check is in shadow.
    pub fn any_shadow(&self) -> bool {
        self.0.contains(&Mode::Shadow)
    }

    /// The first enforced check that needs a shadowed one: `(shadowed, enforced)`.
    pub fn inconsistency(&self) -> Option<(Check, Check)> {
        Check::ALL.iter().find_map(|&c| {
            (self.of(c) == Mode::Enforce)
                .then(|| c.needs().iter().find(|&&n| self.of(n) == Mode::Shadow))
                .flatten()
                .map(|&n| (n, c))
        })
    }
}

/// What a feed-backed check does while its feed is stale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(tools, derive(JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Deny every request (`agent.registry_stale`, `revocation.stale`): fail closed.
    #[default]
    Deny,
    /// Keep deciding on the last good state.
    LastGood,
    /// GET and HEAD are decided on the last good state; every other method is denied.
    AllowSafeMethods,
}

impl FailureMode {
    /// Whether a request of `method` is decided on the last good state (else it is denied).
    pub fn keeps(self, method: &str) -> bool {
        match self {
            FailureMode::Deny => false,
            FailureMode::LastGood => true,
            FailureMode::AllowSafeMethods => matches!(method, "GET" | "HEAD"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_may_be_shadowed_only_with_the_checks_that_need_it() {
        let mut m = Modes::all(Mode::Enforce);
        assert_eq!(m.inconsistency(), None);
        m.set(Check::Policy, Mode::Shadow);
        m.set(Check::Revocation, Mode::Shadow);
        m.set(Check::SenderConstraint, Mode::Shadow);
        assert_eq!(m.inconsistency(), None);
        m.set(Check::Delegation, Mode::Shadow);
        assert_eq!(
            m.inconsistency(),
            Some((Check::Delegation, Check::RouteScopes))
        );
        m.set(Check::RouteScopes, Mode::Shadow);
        m.set(Check::Mcp, Mode::Shadow);
        assert_eq!(m.inconsistency(), Some((Check::Delegation, Check::Limits)));
        m.set(Check::Limits, Mode::Shadow);
        let mut mcp_only = Modes::all(Mode::Enforce);
        mcp_only.set(Check::Mcp, Mode::Shadow);
        mcp_only.set(Check::Policy, Mode::Shadow);
        assert_eq!(mcp_only.inconsistency(), Some((Check::Mcp, Check::Limits)));
        assert_eq!(m.inconsistency(), None);
        m.set(Check::Token, Mode::Shadow);
        assert_eq!(
            m.inconsistency(),
            None,
            "everything after the token is shadowed"
        );
        assert_eq!(Modes::all(Mode::Shadow).inconsistency(), None);
        let mut m = Modes::all(Mode::Enforce);
        m.set(Check::Token, Mode::Shadow);
        assert_eq!(
            m.inconsistency(),
            Some((Check::Token, Check::SenderConstraint))
        );
    }

    #[test]
    fn failure_modes() {
        assert!(!FailureMode::Deny.keeps("GET"));
        assert!(FailureMode::LastGood.keeps("POST"));
        assert!(FailureMode::AllowSafeMethods.keeps("HEAD"));
        assert!(!FailureMode::AllowSafeMethods.keeps("POST"));
    }
}
