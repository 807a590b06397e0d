# The default agent-iam policy: allow unless a rule in package agent_iam.authz adds a
# reason to `deny`. The example modules in this folder (task binding, tenant isolation,
# write window, delegation depth) each contribute such rules.
package agent_iam.authz

import rego.v1

# Deny with the first reason (sorted, so the answer is deterministic); otherwise allow,
# telling the upstream which tenant the agent works for (when its token names one).
decision := {"allow": false, "reason": sort(deny)[0], "status": 403} if {
	count(deny) > 0
} else := {"allow": true, "headers": {"x-agent-tenant": input.agent.tenant}} if {
	valid_tenant(input.agent.tenant)
} else := {"allow": true, "headers": {}}

# Helpers shared by the modules. `input.request.path` is the canonical path without the
# query (`input.request.query` holds it): what the upstream executes.
path := input.request.path

write_methods := {"POST", "PUT", "PATCH", "DELETE"}

# A request is a write by its method, except on MCP routes (`input.mcp`), where the POST
# carries the call: there only a `tools/call` of a tool not in
# `data.agent_iam.mcp_read_only_tools` writes (lists, reads, prompts, the handshake don't).
is_write if {
	input.request.method in write_methods
	not input.mcp
}

is_write if {
	input.mcp.method == "tools/call"
	not input.mcp.name in data.agent_iam.mcp_read_only_tools
}
