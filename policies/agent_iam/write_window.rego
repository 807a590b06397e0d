# Writes only inside the window data.agent_iam.write_window (UTC hours, start inclusive,
# end exclusive). Reads are never restricted by it.
package agent_iam.authz

import rego.v1

deny contains "time.outside_write_window" if {
	is_write
	not inside_write_window
}

inside_write_window if {
	[hour, _, _] := time.clock([input.time.now_ns, "UTC"])
	hour >= data.agent_iam.write_window.start_hour_utc
	hour < data.agent_iam.write_window.end_hour_utc
}
