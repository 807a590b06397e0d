# Per-tenant isolation: under /tenants/<t>/..., <t> must be the agent's `tenant` claim.
# The filter hands policies the canonical path (dot segments removed, slashes merged), so
# `input.request.segments` is what the upstream routes on. Anything under /tenants without
# a tenant segment that matches the claim is refused, a token without the claim included.
package agent_iam.authz

import rego.v1

deny contains "tenant.mismatch" if {
	input.request.segments[0] == "tenants"
	not tenant_matches
}

tenant_matches if {
	valid_tenant(input.token.tenant)
	input.request.segments[1] == input.token.tenant
}

# The claim also becomes the upstream's `x-agent-tenant` header (authz.rego): one plain
# value (letters, digits, `.`, `_`, `:`, `-`; at most 64), never a list an upstream could
# split (`acme,globex`), padded, quoted or with control characters. A token whose `tenant`
# claim is anything else is refused on every route.
valid_tenant(t) if {
	is_string(t)
	regex.match(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`, t)
}

# (`object.keys`, not `t := input.token.tenant`: regorus's RVM, the gateway's engine, lets
# that assignment of an absent claim through to the `not`; its interpreter does not.)
deny contains "tenant.invalid" if {
	"tenant" in object.keys(input.token)
	not valid_tenant(input.token.tenant)
}
