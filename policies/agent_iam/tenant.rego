# Per-tenant isolation: under /tenants/<t>/..., <t> must be the agent's tenant:
# `input.agent.tenant`, which the issuer's identity profile reads from the token (the
# `tenant` claim, Entra's `tid`, Auth0's `org_id`, a SPIFFE ID's trust domain), so the rule
# holds alike whichever provider issued the token.
# The filter hands policies the canonical path (dot segments removed, slashes merged), so
# `input.request.segments` is what the upstream routes on. Anything under /tenants without
# a tenant segment that matches is refused, an agent without a tenant included.
package agent_iam.authz

import rego.v1

deny contains "tenant.mismatch" if {
	input.request.segments[0] == "tenants"
	not tenant_matches
}

tenant_matches if {
	valid_tenant(input.agent.tenant)
	input.request.segments[1] == input.agent.tenant
}

# The tenant also becomes the upstream's `x-agent-tenant` header (authz.rego): one plain
# value (letters, digits, `.`, `_`, `:`, `-`; at most 64), never a list an upstream could
# split (`acme,globex`), padded, quoted or with control characters. An agent whose tenant is
# anything else is refused on every route. (The filter already refuses a token whose
# profile maps a tenant with a comma, whitespace, a quote or a control character: 401
# `token.profile_claims`. This rule is the policy's own, stricter, check.)
valid_tenant(t) if {
	is_string(t)
	regex.match(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`, t)
}

# (`object.keys`, not `t := input.agent.tenant`: regorus's RVM, the gateway's engine, lets
# that assignment of an absent member through to the `not`; its interpreter does not.)
deny contains "tenant.invalid" if {
	"tenant" in object.keys(input.agent)
	not input.agent.tenant == null
	not valid_tenant(input.agent.tenant)
}
