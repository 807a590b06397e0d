# Task binding (RFC 9396 Rich Authorization Requests): when the token carries
# `authorization_details`, one `agent_task` entry must cover the request's method and path
# (`locations` are globs over `/`-separated paths). With data.agent_iam.require_task_binding
# every token must carry one.
package agent_iam.authz

import rego.v1

deny contains "task.not_covered" if {
	is_array(input.token.authorization_details)
	not task_covers(input.token.authorization_details)
}

deny contains "task.binding_required" if {
	data.agent_iam.require_task_binding == true
	not input.token.authorization_details
}

task_covers(details) if {
	some d in details
	d.type == "agent_task"
	input.request.method in d.actions
	some location in d.locations
	glob.match(location, ["/"], path)
}
