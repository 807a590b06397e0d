package agent_iam.task_binding_test

import rego.v1

import data.agent_iam.authz

req(method, path, details) := {
	"chain": [],
	"token": {"authorization_details": details},
	"request": {"method": method, "path": path, "headers": {}},
	"time": {"now_ns": 0},
}

task := [{"type": "agent_task", "actions": ["GET"], "locations": ["/tickets/*"]}]

test_covered_request_passes if {
	not "task.not_covered" in authz.deny with input as req("GET", "/tickets/42", task)
}

test_other_method_is_not_covered if {
	"task.not_covered" in authz.deny with input as req("DELETE", "/tickets/42", task)
}

test_other_path_is_not_covered if {
	"task.not_covered" in authz.deny with input as req("GET", "/tickets/42/attachments", task)
}

test_other_type_is_not_covered if {
	details := [{"type": "payment", "actions": ["GET"], "locations": ["/tickets/*"]}]
	"task.not_covered" in authz.deny with input as req("GET", "/tickets/42", details)
}

test_binding_required_by_data if {
	"task.binding_required" in authz.deny with input as {"chain": [], "token": {}, "request": {"method": "GET", "path": "/", "headers": {}}}
		with data.agent_iam.require_task_binding as true
}
