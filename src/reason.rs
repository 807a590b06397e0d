//! Stable, dotted reason codes. They flow into HTTP responses, the CLI, logs and
//! (later) audit events and metrics. Renaming one is a breaking change: docs/reasons.md
//! lists them all and a test keeps the list and this enum in step.

use serde::Serialize;

/// Why a request was denied. `as_str()` is the contract; variants may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Reason {
    /// The request itself is unusable (several Authorization headers, non-UTF-8, ...).
    RequestMalformed,
    /// The request target is not one canonical origin-form path the upstream would
    /// execute the same way (absolute-form, `%2F`, `\\`, NUL, `;`, fragment, bad escapes).
    RequestTarget,
    /// The method is not an upper-case token the configuration knows.
    RequestMethod,
    /// A header a policy may read was sent more than once.
    RequestHeaderRepeated,
    /// With `route_metadata`: the target is not in canonical form. Envoy chose the route
    /// on the target as sent; its canonical form could be on another Envoy route.
    RequestNotCanonical,
    /// No `Authorization` header.
    TokenMissing,
    /// `Authorization` is not `Bearer <token>`.
    TokenScheme,
    /// The token is longer than `max_token_bytes`.
    TokenTooLarge,
    /// Not a compact JWS: segments, base64url, JSON shape, duplicate members, nesting.
    TokenMalformed,
    /// `alg` missing, `none`, HMAC, unknown, not allowed for the issuer or not the key's.
    TokenAlg,
    /// A header member we never accept: `crit`, `jwk`, `jku`, `x5u`, `x5c`, `b64`, ...
    TokenHeaderForbidden,
    /// `kid` missing, not a string, or not a key of the issuer.
    TokenKid,
    /// The issuer's keys come from `jwks_uri` and no fetch has succeeded yet.
    JwksUnavailable,
    /// `typ` missing or not in the issuer's `accepted_types`.
    TokenTyp,
    /// The signature does not verify.
    TokenSignature,
    /// The client spent its budget of failed signature checks (`verify_budget`): a token
    /// no cache can answer is refused without verifying.
    TokenVerifyBudget,
    /// `iss` missing or not a configured issuer.
    TokenIssuer,
    /// `aud` contains none of the issuer's audiences.
    TokenAudience,
    /// `sub` missing or empty.
    TokenSubject,
    /// A registered claim has the wrong JSON type (never treated as absent).
    TokenClaimType,
    /// `exp` or `iat` missing.
    TokenClaimMissing,
    /// `exp` is in the past (beyond the clock skew).
    TokenExpired,
    /// `nbf` is in the future (beyond the clock skew).
    TokenNotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    TokenIssuedInFuture,
    /// `exp - iat` exceeds `max_token_lifetime_s`.
    TokenLifetime,
    /// An identity assertion authorization grant (`typ` `oauth-id-jag+jwt`) presented as an
    /// access token: it is for an authorization server, never for a resource.
    TokenAssertionGrant,
    /// An OpenID Connect ID token presented as an access token (`nonce`, `at_hash` or
    /// `c_hash`, or `aud` naming the token's own client).
    TokenIdToken,
    /// The issuer's identity profile cannot map the token: a claim it needs is missing or
    /// mistyped, or its claims contradict each other.
    TokenProfileClaims,
    /// A SPIFFE ID (`sub` or an actor) is malformed or outside the issuer's trust domains.
    TokenTrustDomain,
    /// The delegation chain (`act`) is malformed or deeper than `delegation.max_depth`.
    DelegationDepth,
    /// The delegation chain (`act`) is malformed.
    DelegationMalformed,
    /// The same actor appears twice in the chain.
    DelegationCycle,
    /// A top-level `may_act` does not name the current actor.
    DelegationMayAct,
    /// An earlier actor in the chain is not registered.
    DelegationActorUnknown,
    /// An earlier actor in the chain is suspended, retired or expired.
    DelegationActorInactive,
    /// The principal (`sub`) of a delegated token is a registered agent that is
    /// suspended, retired or expired.
    DelegationPrincipalInactive,
    /// An actor's `act.iss` is not a configured issuer.
    DelegationActorIssuer,
    /// An actor may not act for this principal (`may_act_for`).
    DelegationPrincipalNotAllowed,
    /// An earlier actor may not delegate to the next one (`may_delegate_to`).
    DelegationNotPermitted,
    /// The token asks for scopes beyond the chain's ceiling (`max_scopes`).
    DelegationScopeExceedsCeiling,
    /// The acting identity is not a registered agent.
    AgentUnknown,
    /// The acting agent is suspended.
    AgentSuspended,
    /// The acting agent is retired.
    AgentRetired,
    /// The acting agent's enrolment lapsed (`not_after`).
    AgentExpired,
    /// The agent (acting, an actor of the chain, or the principal) is quarantined: on this
    /// Envoy (refused more than `quarantine.denials` times within `quarantine.within_s`), or
    /// by another gateway's report that the revocation feed delivered.
    AgentQuarantined,
    /// The quarantine store in shared data could not be read or written: fail closed.
    AgentQuarantineUnavailable,
    /// No good registry answer for longer than `agents.feed.max_staleness_s`.
    AgentRegistryStale,
    /// The token's `jti` was revoked (revocation feed).
    RevocationJti,
    /// The token's subject or an actor had its sessions revoked after the token was issued.
    RevocationSubject,
    /// The subject or an actor is disabled (RISC `account-disabled`).
    RevocationAgent,
    /// No successful revocation poll for longer than `revocation.max_staleness_s`.
    RevocationStale,
    /// The request matches no configured route.
    RouteUnmatched,
    /// Envoy's route metadata (`filter_metadata.agent_iam.route`) names no configured route.
    RouteMetadata,
    /// The effective scopes lack a scope the route requires.
    ScopeInsufficient,
    /// The Rego policy denied the request.
    /// A configured limit (`limits[]`) refused the request: its rate or budget for this
    /// key is spent. The code on the wire names the limit: `limit.<name>`.
    LimitExceeded,
    /// The limits' shared counters could not be read or written (a missing slot, a
    /// compare-and-swap that kept losing): fail closed.
    LimitUnavailable,
    PolicyDenied,
    /// The policy's decision was undefined, of the wrong shape, or its evaluation failed.
    PolicyError,
    /// The policy ran out of its evaluation budget (`policy.max_eval_ms` or `policy.max_instructions`).
    PolicyLimit,
    /// A DPoP proof that is not one strict compact JWS (segments, base64url, JSON, duplicate members, size, forbidden header members).
    DpopProofMalformed,
    /// A DPoP proof whose `typ` is not `dpop+jwt`.
    DpopTyp,
    /// A DPoP proof `alg` that is none, symmetric, unknown, not in dpop.algorithms or not its key's.
    DpopAlg,
    /// A DPoP proof whose `jwk` is missing, private, symmetric or a key the token rules refuse.
    DpopJwk,
    /// A DPoP proof whose signature does not verify with its own `jwk`.
    DpopSignature,
    /// A DPoP proof without a well-typed `jti`, `htm`, `htu` or `iat`.
    DpopClaims,
    /// A DPoP proof for another HTTP method.
    DpopHtm,
    /// A DPoP proof for another URI (compared normalised, without query and fragment).
    DpopHtu,
    /// A DPoP proof older than dpop.max_proof_age_s (plus the clock skew).
    DpopIatStale,
    /// A DPoP proof issued in the future (beyond the clock skew).
    DpopIatFuture,
    /// A DPoP proof without `ath`, or whose `ath` is not the hash of this access token.
    DpopAth,
    /// A DPoP proof whose `jti` this Envoy has already accepted for that key within the proof's lifetime.
    DpopReplay,
    /// The DPoP replay cache bucket is full of live entries (fail closed; raise dpop.replay_max_entries).
    DpopReplayFull,
    /// The DPoP replay cache could not be read or written (fail closed).
    DpopReplayUnavailable,
    /// A token's `cnf` the filter cannot check (another confirmation method, a malformed
    /// value): refused, never treated as a bearer token.
    TokenCnf,
    /// A DPoP-bound token without a `DPoP` proof header.
    DpopProofMissing,
    /// More than one `DPoP` header (RFC 9449 §4.3: exactly one).
    DpopProofRepeated,
    /// A valid DPoP proof signed by another key than the token's `cnf.jkt`.
    DpopKeyMismatch,
    /// A DPoP-bound token sent as `Bearer` (RFC 9449 §7.2: refused).
    DpopBearerScheme,
    /// An unbound token (no `cnf.jkt`) sent with the `DPoP` scheme.
    DpopTokenUnbound,
    /// A token without `cnf` from an issuer whose `sender_constraint` is `required`.
    TokenUnbound,
    /// A certificate-bound token on a connection without a client certificate (or not TLS).
    MtlsCertificateMissing,
    /// A certificate-bound token on a connection with another client certificate.
    MtlsCertificateMismatch,
    /// The host cannot report the connection's client certificate (fail closed).
    MtlsUnavailable,
    /// An MCP POST's body is over the route's `mcp.max_body_bytes`.
    McpBodyTooLarge,
    /// An MCP POST's body is not one JSON-RPC request: not JSON, duplicate members, a
    /// response, the wrong shape, or trailers after it.
    McpBodyInvalid,
    /// An MCP POST carries a JSON-RPC batch (an array).
    McpBatch,
    /// `MCP-Protocol-Version`, `Mcp-Method` or `Mcp-Name` is missing, repeated or does not
    /// mirror the body.
    McpHeaderMismatch,
    /// The tool, resource or prompt is not listed on a route with `other_tools: "deny"`.
    McpNameUnlisted,
    /// A `GET` with `Last-Event-ID` on an MCP route: a resumed stream may replay results
    /// the filter never saw.
    McpReplay,
    /// A list response the filter must filter but cannot (too large, not the response,
    /// compressed, malformed): refused, never passed unfiltered.
    McpListUnfilterable,
    /// The host failed us (crypto call error, clock): deny, fail closed.
    InternalError,
}

impl Reason {
    /// Every reason, in documentation order.
    pub const ALL: &'static [Reason] = &[
        Reason::RequestMalformed,
        Reason::RequestTarget,
        Reason::RequestMethod,
        Reason::RequestHeaderRepeated,
        Reason::RequestNotCanonical,
        Reason::TokenMissing,
        Reason::TokenScheme,
        Reason::TokenTooLarge,
        Reason::TokenMalformed,
        Reason::TokenAlg,
        Reason::TokenHeaderForbidden,
        Reason::TokenKid,
        Reason::JwksUnavailable,
        Reason::TokenTyp,
        Reason::TokenSignature,
        Reason::TokenVerifyBudget,
        Reason::TokenIssuer,
        Reason::TokenAudience,
        Reason::TokenSubject,
        Reason::TokenClaimType,
        Reason::TokenClaimMissing,
        Reason::TokenExpired,
        Reason::TokenNotYetValid,
        Reason::TokenIssuedInFuture,
        Reason::TokenLifetime,
        Reason::TokenAssertionGrant,
        Reason::TokenIdToken,
        Reason::TokenProfileClaims,
        Reason::TokenTrustDomain,
        Reason::DelegationDepth,
        Reason::DelegationMalformed,
        Reason::DelegationCycle,
        Reason::DelegationMayAct,
        Reason::DelegationActorUnknown,
        Reason::DelegationActorInactive,
        Reason::DelegationPrincipalInactive,
        Reason::DelegationActorIssuer,
        Reason::DelegationPrincipalNotAllowed,
        Reason::DelegationNotPermitted,
        Reason::DelegationScopeExceedsCeiling,
        Reason::AgentUnknown,
        Reason::AgentSuspended,
        Reason::AgentRetired,
        Reason::AgentExpired,
        Reason::AgentQuarantined,
        Reason::AgentQuarantineUnavailable,
        Reason::AgentRegistryStale,
        Reason::RevocationJti,
        Reason::RevocationSubject,
        Reason::RevocationAgent,
        Reason::RevocationStale,
        Reason::RouteUnmatched,
        Reason::RouteMetadata,
        Reason::ScopeInsufficient,
        Reason::LimitExceeded,
        Reason::LimitUnavailable,
        Reason::PolicyDenied,
        Reason::PolicyError,
        Reason::PolicyLimit,
        Reason::DpopProofMalformed,
        Reason::DpopTyp,
        Reason::DpopAlg,
        Reason::DpopJwk,
        Reason::DpopSignature,
        Reason::DpopClaims,
        Reason::DpopHtm,
        Reason::DpopHtu,
        Reason::DpopIatStale,
        Reason::DpopIatFuture,
        Reason::DpopAth,
        Reason::DpopReplay,
        Reason::DpopReplayFull,
        Reason::DpopReplayUnavailable,
        Reason::TokenCnf,
        Reason::DpopProofMissing,
        Reason::DpopProofRepeated,
        Reason::DpopKeyMismatch,
        Reason::DpopBearerScheme,
        Reason::DpopTokenUnbound,
        Reason::TokenUnbound,
        Reason::MtlsCertificateMissing,
        Reason::MtlsCertificateMismatch,
        Reason::MtlsUnavailable,
        Reason::McpBodyTooLarge,
        Reason::McpBodyInvalid,
        Reason::McpBatch,
        Reason::McpHeaderMismatch,
        Reason::McpNameUnlisted,
        Reason::McpReplay,
        Reason::McpListUnfilterable,
        Reason::InternalError,
    ];

    /// The stable dotted code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RequestMalformed => "request.malformed",
            Reason::RequestTarget => "request.target",
            Reason::RequestMethod => "request.method",
            Reason::RequestHeaderRepeated => "request.header_repeated",
            Reason::RequestNotCanonical => "request.not_canonical",
            Reason::TokenMissing => "token.missing",
            Reason::TokenScheme => "token.scheme",
            Reason::TokenTooLarge => "token.too_large",
            Reason::TokenMalformed => "token.malformed",
            Reason::TokenAlg => "token.alg",
            Reason::TokenHeaderForbidden => "token.header_forbidden",
            Reason::TokenKid => "token.kid",
            Reason::JwksUnavailable => "jwks.unavailable",
            Reason::TokenTyp => "token.typ",
            Reason::TokenSignature => "token.signature",
            Reason::TokenVerifyBudget => "token.verify_budget",
            Reason::LimitExceeded => "limit.<name>",
            Reason::LimitUnavailable => "limit.unavailable",
            Reason::TokenIssuer => "token.issuer",
            Reason::TokenAudience => "token.audience",
            Reason::TokenSubject => "token.subject",
            Reason::TokenClaimType => "token.claim_type",
            Reason::TokenClaimMissing => "token.claim_missing",
            Reason::TokenExpired => "token.expired",
            Reason::TokenNotYetValid => "token.not_yet_valid",
            Reason::TokenIssuedInFuture => "token.issued_in_future",
            Reason::TokenLifetime => "token.lifetime",
            Reason::TokenAssertionGrant => "token.assertion_grant",
            Reason::TokenIdToken => "token.id_token",
            Reason::TokenProfileClaims => "token.profile_claims",
            Reason::TokenTrustDomain => "token.trust_domain",
            Reason::DelegationDepth => "delegation.depth",
            Reason::DelegationMalformed => "delegation.malformed",
            Reason::DelegationCycle => "delegation.cycle",
            Reason::DelegationMayAct => "delegation.may_act",
            Reason::DelegationActorUnknown => "delegation.actor_unknown",
            Reason::DelegationActorInactive => "delegation.actor_inactive",
            Reason::DelegationPrincipalInactive => "delegation.principal_inactive",
            Reason::DelegationActorIssuer => "delegation.actor_issuer",
            Reason::DelegationPrincipalNotAllowed => "delegation.principal_not_allowed",
            Reason::DelegationNotPermitted => "delegation.not_permitted",
            Reason::DelegationScopeExceedsCeiling => "delegation.scope_exceeds_ceiling",
            Reason::AgentUnknown => "agent.unknown",
            Reason::AgentSuspended => "agent.suspended",
            Reason::AgentQuarantined => "agent.quarantined",
            Reason::AgentQuarantineUnavailable => "agent.quarantine_unavailable",
            Reason::AgentRetired => "agent.retired",
            Reason::AgentExpired => "agent.expired",
            Reason::AgentRegistryStale => "agent.registry_stale",
            Reason::RevocationJti => "revocation.jti",
            Reason::RevocationSubject => "revocation.subject",
            Reason::RevocationAgent => "revocation.agent",
            Reason::RevocationStale => "revocation.stale",
            Reason::RouteUnmatched => "route.unmatched",
            Reason::RouteMetadata => "route.metadata",
            Reason::ScopeInsufficient => "scope.insufficient",
            Reason::PolicyDenied => "policy.denied",
            Reason::PolicyError => "policy.error",
            Reason::PolicyLimit => "policy.limit",
            Reason::DpopProofMalformed => "dpop.proof_malformed",
            Reason::DpopTyp => "dpop.typ",
            Reason::DpopAlg => "dpop.alg",
            Reason::DpopJwk => "dpop.jwk",
            Reason::DpopSignature => "dpop.signature",
            Reason::DpopClaims => "dpop.claims",
            Reason::DpopHtm => "dpop.htm",
            Reason::DpopHtu => "dpop.htu",
            Reason::DpopIatStale => "dpop.iat_stale",
            Reason::DpopIatFuture => "dpop.iat_future",
            Reason::DpopAth => "dpop.ath",
            Reason::DpopReplay => "dpop.replay",
            Reason::DpopReplayFull => "dpop.replay_full",
            Reason::DpopReplayUnavailable => "dpop.replay_unavailable",
            Reason::TokenCnf => "token.cnf",
            Reason::DpopProofMissing => "dpop.proof_missing",
            Reason::DpopProofRepeated => "dpop.proof_repeated",
            Reason::DpopKeyMismatch => "dpop.key_mismatch",
            Reason::DpopBearerScheme => "dpop.bearer_scheme",
            Reason::DpopTokenUnbound => "dpop.token_unbound",
            Reason::TokenUnbound => "token.unbound",
            Reason::MtlsCertificateMissing => "mtls.certificate_missing",
            Reason::MtlsCertificateMismatch => "mtls.certificate_mismatch",
            Reason::MtlsUnavailable => "mtls.unavailable",
            Reason::McpBodyTooLarge => "mcp.body_too_large",
            Reason::McpBodyInvalid => "mcp.body_invalid",
            Reason::McpBatch => "mcp.batch",
            Reason::McpHeaderMismatch => "mcp.header_mismatch",
            Reason::McpNameUnlisted => "mcp.name_unlisted",
            Reason::McpReplay => "mcp.replay",
            Reason::McpListUnfilterable => "mcp.list_unfilterable",
            Reason::InternalError => "internal.error",
        }
    }

    /// Reasons no mode turns into a shadow deny: a request the filter cannot read as one
    /// request (or whose body it did not read), the flood guard, and the filter's own
    /// failures (its replay cache full or unreachable).
    pub fn always_enforced(self) -> bool {
        matches!(
            self,
            Reason::RequestMalformed
                | Reason::RequestHeaderRepeated
                | Reason::RequestNotCanonical
                | Reason::RouteMetadata
                | Reason::TokenVerifyBudget
                | Reason::McpBodyTooLarge
                | Reason::DpopReplayFull
                | Reason::DpopReplayUnavailable
                | Reason::LimitUnavailable
                | Reason::AgentQuarantineUnavailable
                | Reason::InternalError
        )
    }

    /// HTTP status for this reason.
    pub fn status(self) -> u16 {
        match self {
            Reason::RequestMalformed
            | Reason::RequestTarget
            | Reason::RequestMethod
            | Reason::RequestHeaderRepeated
            | Reason::RequestNotCanonical
            | Reason::McpBodyInvalid
            | Reason::McpBatch
            | Reason::McpHeaderMismatch
            | Reason::McpReplay => 400,
            Reason::McpBodyTooLarge => 413,
            Reason::McpListUnfilterable => 502,
            Reason::TokenVerifyBudget | Reason::LimitExceeded => 429,
            Reason::InternalError
            | Reason::RouteMetadata
            | Reason::DpopReplayFull
            | Reason::DpopReplayUnavailable
            | Reason::LimitUnavailable
            | Reason::AgentQuarantineUnavailable
            | Reason::JwksUnavailable
            | Reason::AgentRegistryStale
            | Reason::RevocationStale
            | Reason::PolicyError
            | Reason::PolicyLimit => 503,
            Reason::DelegationActorUnknown
            | Reason::DelegationActorInactive
            | Reason::DelegationPrincipalInactive
            | Reason::DelegationPrincipalNotAllowed
            | Reason::DelegationNotPermitted
            | Reason::DelegationScopeExceedsCeiling
            | Reason::AgentQuarantined
            | Reason::RouteUnmatched
            | Reason::ScopeInsufficient
            | Reason::McpNameUnlisted
            | Reason::PolicyDenied => 403,
            _ => 401,
        }
    }

    /// The `error` member of the JSON body and of `WWW-Authenticate`.
    pub fn error_code(self) -> &'static str {
        match self {
            Reason::RequestMalformed
            | Reason::RequestTarget
            | Reason::RequestMethod
            | Reason::RequestHeaderRepeated
            | Reason::RequestNotCanonical
            | Reason::McpBodyTooLarge
            | Reason::McpBodyInvalid
            | Reason::McpBatch
            | Reason::McpHeaderMismatch
            | Reason::McpReplay => "invalid_request",
            Reason::McpListUnfilterable | Reason::RouteMetadata => "server_error",
            Reason::DpopProofMalformed
            | Reason::DpopTyp
            | Reason::DpopAlg
            | Reason::DpopJwk
            | Reason::DpopSignature
            | Reason::DpopClaims
            | Reason::DpopHtm
            | Reason::DpopHtu
            | Reason::DpopIatStale
            | Reason::DpopIatFuture
            | Reason::DpopAth
            | Reason::DpopReplay
            | Reason::DpopProofMissing
            | Reason::DpopProofRepeated => "invalid_dpop_proof",
            Reason::InternalError
            | Reason::DpopReplayFull
            | Reason::DpopReplayUnavailable
            | Reason::JwksUnavailable
            | Reason::AgentRegistryStale
            | Reason::RevocationStale
            | Reason::PolicyError
            | Reason::PolicyLimit
            | Reason::LimitExceeded
            | Reason::LimitUnavailable
            | Reason::AgentQuarantined
            | Reason::AgentQuarantineUnavailable
            | Reason::TokenVerifyBudget => "temporarily_unavailable",
            r if r.status() == 403 => "insufficient_scope",
            _ => "invalid_token",
        }
    }

    /// One line for operators (docs/reasons.md table, logs). Never contains request data.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::RequestMalformed => {
                "request unusable: several Authorization headers or non-UTF-8 header value"
            }
            Reason::RequestTarget => "the target is not one canonical origin-form path: absolute-form, fragment, %2F, \\, NUL or control escapes, raw bytes outside RFC 3986, `;` (unless allowed)",
            Reason::RequestMethod => "the method is not an upper-case token the configuration knows (RFC 9110 methods and those routes name)",
            Reason::RequestHeaderRepeated => "a header was sent more than once where a policy may read it (only list-valued headers may repeat)",
            Reason::RequestNotCanonical => "route_metadata: the target is not in canonical form (Envoy chose the route on it as sent; its canonical form could be on another route)",
            Reason::TokenMissing => "no Authorization header",
            Reason::TokenScheme => "Authorization is not `Bearer <token>`",
            Reason::TokenTooLarge => "token longer than max_token_bytes",
            Reason::TokenMalformed => {
                "not a strict compact JWS: segments, base64url, JSON, duplicate members, nesting"
            }
            Reason::TokenAlg => {
                "alg missing, none, HMAC, unknown, not allowed for the issuer, or not the key's alg"
            }
            Reason::TokenHeaderForbidden => {
                "header carries crit, jwk, jku, x5u, x5c, x5t, x5t#S256, b64, zip or enc"
            }
            Reason::TokenKid => "kid missing, not a string, or unknown to the issuer",
            Reason::JwksUnavailable => "the issuer's jwks_uri has not been fetched successfully yet",
            Reason::TokenTyp => "typ missing or not in accepted_types",
            Reason::TokenSignature => "signature does not verify with the key kid selects",
            Reason::LimitExceeded => "a configured limit (limits[], named in the code) is spent for this key: its rate or its budget; Retry-After says when it admits again",
            Reason::LimitUnavailable => "the limits' shared counters could not be read or written (fail closed)",
            Reason::TokenVerifyBudget => "this client spent its budget of failed signature checks (verify_budget): tokens no cache answers are refused unverified",
            Reason::TokenIssuer => "iss missing or not a configured issuer",
            Reason::TokenAudience => "aud has none of the issuer's audiences",
            Reason::TokenSubject => "sub missing or empty",
            Reason::TokenClaimType => "a registered claim has the wrong JSON type",
            Reason::TokenClaimMissing => "exp or iat missing",
            Reason::TokenExpired => "exp is past (beyond clock_skew_s)",
            Reason::TokenNotYetValid => "nbf is in the future (beyond clock_skew_s)",
            Reason::TokenIssuedInFuture => "iat is in the future (beyond clock_skew_s)",
            Reason::TokenLifetime => "exp - iat exceeds max_token_lifetime_s",
            Reason::TokenAssertionGrant => "an identity assertion grant is not an access token",
            Reason::TokenIdToken => "an ID token is not an access token",
            Reason::TokenProfileClaims => "the issuer's profile claims are missing or contradict each other",
            Reason::TokenTrustDomain => "SPIFFE ID malformed or outside the trust domains",
            Reason::DelegationDepth => "act chain deeper than delegation.max_depth",
            Reason::DelegationMalformed => "act (at any level) is not an object with a non-empty string sub and optional string iss",
            Reason::DelegationCycle => "the same actor appears twice in the act chain",
            Reason::DelegationMayAct => "top-level may_act does not name the current actor (sub, and iss if given)",
            Reason::DelegationActorUnknown => "an earlier actor in the chain is not in the registry",
            Reason::DelegationActorInactive => "an earlier actor in the chain is suspended, retired or expired",
            Reason::DelegationPrincipalInactive => "the principal (sub) of a delegated token is a registered agent that is suspended, retired or expired",
            Reason::DelegationActorIssuer => "an actor's act.iss is not a configured issuer",
            Reason::DelegationPrincipalNotAllowed => "an actor's may_act_for does not cover the principal (sub)",
            Reason::DelegationNotPermitted => "an earlier actor's may_delegate_to does not cover the next actor",
            Reason::DelegationScopeExceedsCeiling => "token scope exceeds the chain's ceiling (max_scopes of every actor)",
            Reason::AgentUnknown => "the acting identity (act.sub, else sub) is not a registered agent",
            Reason::AgentSuspended => "the acting agent is suspended",
            Reason::AgentQuarantined => "the agent, acting, anywhere in the chain or as the principal, is quarantined: on this Envoy after too many refusals (quarantine), or by another gateway's report through the revocation feed; the registry's released_at lifts it",
            Reason::AgentQuarantineUnavailable => "the quarantine store in shared data could not be read or written (fail closed)",
            Reason::AgentRetired => "the acting agent is retired",
            Reason::AgentExpired => "the acting agent's enrolment lapsed (not_after)",
            Reason::AgentRegistryStale => "no good registry answer for longer than agents.feed.max_staleness_s",
            Reason::RevocationJti => "the token's jti was revoked through the revocation feed",
            Reason::RevocationSubject => "the subject's or an actor's sessions were revoked after the token was issued",
            Reason::RevocationAgent => "the subject or an actor is disabled (RISC account-disabled)",
            Reason::RevocationStale => "no successful revocation poll within revocation.max_staleness_s",
            Reason::RouteUnmatched => "the request matches no configured route (unmatched_route: deny)",
            Reason::RouteMetadata => "Envoy's route metadata (filter_metadata.agent_iam.route) names no configured route (route_metadata: true)",
            Reason::ScopeInsufficient => "the effective scopes lack a scope the route requires",
            Reason::PolicyDenied => "the Rego policy denied (status and policy_reason from the policy; default 403)",
            Reason::PolicyError => "the policy's decision was undefined or malformed, or evaluation failed",
            Reason::PolicyLimit => "the policy exceeded its budget (policy.max_eval_ms or policy.max_instructions)",
            Reason::DpopProofMalformed => "a DPoP proof that is not one strict compact JWS (segments, base64url, JSON, duplicate members, size, forbidden header members)",
            Reason::DpopTyp => "a DPoP proof whose `typ` is not `dpop+jwt`",
            Reason::DpopAlg => "a DPoP proof `alg` that is none, symmetric, unknown, not in dpop.algorithms or not its key's",
            Reason::DpopJwk => "a DPoP proof whose `jwk` is missing, private, symmetric or a key the token rules refuse",
            Reason::DpopSignature => "a DPoP proof whose signature does not verify with its own `jwk`",
            Reason::DpopClaims => "a DPoP proof without a well-typed `jti`, `htm`, `htu` or `iat`",
            Reason::DpopHtm => "a DPoP proof for another HTTP method",
            Reason::DpopHtu => "a DPoP proof for another URI (compared normalised, without query and fragment)",
            Reason::DpopIatStale => "a DPoP proof older than dpop.max_proof_age_s (plus the clock skew)",
            Reason::DpopIatFuture => "a DPoP proof issued in the future (beyond the clock skew)",
            Reason::DpopAth => "a DPoP proof without `ath`, or whose `ath` is not the hash of this access token",
            Reason::DpopReplay => "a DPoP proof whose `jti` this Envoy has already accepted for that key within the proof's lifetime",
            Reason::DpopReplayFull => "the DPoP replay cache bucket is full of live entries (fail closed; raise dpop.replay_max_entries)",
            Reason::DpopReplayUnavailable => "the DPoP replay cache could not be read or written (fail closed)",
            Reason::TokenCnf => "a `cnf` claim the filter cannot check (a confirmation method other than jkt and x5t#S256, or a malformed value)",
            Reason::DpopProofMissing => "a DPoP-bound token without a `DPoP` proof header",
            Reason::DpopProofRepeated => "more than one `DPoP` header (RFC 9449 §4.3: exactly one)",
            Reason::DpopKeyMismatch => "a valid DPoP proof signed by another key than the token's `cnf.jkt`",
            Reason::DpopBearerScheme => "a DPoP-bound token sent with the `Bearer` scheme: it must be sent as `DPoP` with a proof",
            Reason::DpopTokenUnbound => "a token without `cnf.jkt` sent with the `DPoP` scheme",
            Reason::TokenUnbound => "a token without `cnf` from an issuer whose sender_constraint is \"required\"",
            Reason::MtlsCertificateMissing => "a certificate-bound token (`cnf.x5t#S256`) on a connection without a client certificate, or not over TLS",
            Reason::MtlsCertificateMismatch => "a certificate-bound token on a connection whose client certificate is another one",
            Reason::MtlsUnavailable => "the host cannot report the connection's client certificate (fail closed)",
            Reason::McpBodyTooLarge => "an MCP POST's body is over the route's mcp.max_body_bytes",
            Reason::McpBodyInvalid => "an MCP POST's body is not one JSON-RPC request (not JSON, duplicate members, a response, wrong shape, trailers)",
            Reason::McpBatch => "an MCP POST carries a JSON-RPC batch (an array): one message per POST",
            Reason::McpHeaderMismatch => "MCP-Protocol-Version, Mcp-Method or Mcp-Name is missing (2026-07-28), repeated or differs from the body (JSON-RPC -32020)",
            Reason::McpNameUnlisted => "the tool, resource or prompt is not listed on a route with other_tools \"deny\"",
            Reason::McpReplay => "a GET with Last-Event-ID on an MCP route (a resumed stream could replay unfiltered results)",
            Reason::McpListUnfilterable => "a tools/resources/prompts list response the filter cannot filter (too large, compressed, malformed): refused",
            Reason::InternalError => "host failure on the request path (fail closed)",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reason-code table of docs/reasons.md.
pub fn markdown_table() -> String {
    let mut out = String::from("| reason | status | `error` | meaning |\n|---|---|---|---|\n");
    for r in Reason::ALL {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            r.as_str(),
            r.status(),
            r.error_code(),
            r.describe()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_document_every_reason_code() {
        let reasons = include_str!("../docs/reasons.md");
        assert!(
            reasons.contains(&markdown_table()),
            "docs/reasons.md reason table is stale: run python3 test-harness/regen.py"
        );
    }

    #[test]
    fn codes_are_unique_and_dotted() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()));
            assert!(r.as_str().contains('.'));
        }
    }
}
