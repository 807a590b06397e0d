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
	is_string(input.token.tenant)
	input.token.tenant != ""
	input.request.segments[1] == input.token.tenant
}
