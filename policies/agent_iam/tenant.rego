# Per-tenant isolation: under /tenants/<t>/..., <t> must be the agent's `tenant` claim.
package agent_iam.authz

import rego.v1

deny contains "tenant.mismatch" if {
	parts := split(trim_prefix(path, "/"), "/")
	parts[0] == "tenants"
	parts[1] != object.get(input.token, "tenant", "")
}
