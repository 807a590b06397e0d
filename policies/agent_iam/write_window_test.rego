package agent_iam.write_window_test

import rego.v1

import data.agent_iam.authz

# 2026-11-28 at 03:00 and 12:00 UTC, in nanoseconds.
three_am := 1795834800000000000

noon := 1795867200000000000

req(method, now_ns) := {"chain": [], "token": {}, "request": {"method": method, "path": "/tickets/1", "headers": {}}, "time": {"now_ns": now_ns}}

office_hours := {"start_hour_utc": 6, "end_hour_utc": 22}

test_write_inside_window if {
	not "time.outside_write_window" in authz.deny with input as req("POST", noon)
		with data.agent_iam.write_window as office_hours
}

test_write_outside_window if {
	"time.outside_write_window" in authz.deny with input as req("POST", three_am)
		with data.agent_iam.write_window as office_hours
}

test_read_outside_window if {
	not "time.outside_write_window" in authz.deny with input as req("GET", three_am)
		with data.agent_iam.write_window as office_hours
}
