# The default agent-iam policy: allow unless a rule in package agent_iam.authz adds a
# reason to `deny`. The example modules in this folder (task binding, tenant isolation,
# write window, delegation depth) each contribute such rules.
package agent_iam.authz

import rego.v1

# Deny with the first reason (sorted, so the answer is deterministic).
decision := {"allow": false, "reason": sort(deny)[0], "status": 403} if count(deny) > 0

# Allow, telling the upstream which tenant the agent works for (when the token says so).
decision := {"allow": true, "headers": tenant_header} if count(deny) == 0

tenant_header := {"x-agent-tenant": input.token.tenant} if is_string(input.token.tenant)

tenant_header := {} if not is_string(input.token.tenant)

# Helpers shared by the modules.
path := split(input.request.path, "?")[0]

write_methods := {"POST", "PUT", "PATCH", "DELETE"}

is_write if input.request.method in write_methods
