package agent_iam.authz_test

import rego.v1

import data.agent_iam.authz

# 2026-11-28T12:00:00Z in nanoseconds.
noon := 1795867200000000000

base := {
	"subject": {"id": "user:alice"},
	"agent": {"id": "agent:planner", "registered": true},
	"chain": [{"sub": "agent:planner", "iss": null}],
	"token": {"sub": "user:alice", "scope": "tickets:read tickets:write"},
	"request": {"method": "GET", "path": "/tickets/42", "host": "api", "headers": {}},
	"route": {"name": "tickets-read", "required_scopes": ["tickets:read"]},
	"scopes": {"requested": ["tickets:read"], "effective": ["tickets:read"]},
	"time": {"now": 1795867200, "now_ns": noon},
}

test_plain_read_is_allowed if {
	authz.decision.allow with input as base
}

test_deny_reason_is_the_first_sorted if {
	req := object.union(base, {
		"chain": [{"sub": "a"}, {"sub": "b"}, {"sub": "c"}, {"sub": "d"}],
		"request": {"method": "POST", "path": "/tickets/42", "headers": {}},
	})
	d := authz.decision with input as req
	d.allow == false
	d.reason == "delegation.too_deep"
	d.status == 403
}

test_tenant_header_added_on_allow if {
	req := object.union(base, {"agent": {"tenant": "acme"}})
	d := authz.decision with input as req
	d.headers == {"x-agent-tenant": "acme"}
}
