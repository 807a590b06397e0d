package agent_iam.delegation_depth_test

import rego.v1

import data.agent_iam.authz

req(method, n) := {
	"chain": [{"sub": sprintf("agent:%d", [i])} | some i in numbers.range(1, n)],
	"token": {},
	"request": {"method": method, "path": "/tickets/1", "headers": {}},
	"time": {"now_ns": 0},
}

test_one_hop_may_write if {
	count(authz.deny) == 0 with input as req("POST", 1)
}

test_two_hops_may_read if {
	count(authz.deny) == 0 with input as req("GET", 2)
}

test_two_hops_may_not_write if {
	"delegation.too_deep_for_writes" in authz.deny with input as req("POST", 2)
}

test_too_deep_for_anything if {
	"delegation.too_deep" in authz.deny with input as req("GET", 4)
}

mcp(name, n) := object.union(req("POST", n), {"request": {"method": "POST", "path": "/mcp", "headers": {}},
	"mcp": {"method": "tools/call", "name": name}})

test_two_hops_may_call_a_read_only_mcp_tool if {
	count(authz.deny) == 0 with input as mcp("search_tickets", 2)
}

test_two_hops_may_list_mcp_tools if {
	count(authz.deny) == 0 with input as object.union(mcp("x", 2), {"mcp": {"method": "tools/list", "name": null}})
}

test_two_hops_may_not_call_a_writing_mcp_tool if {
	"delegation.too_deep_for_writes" in authz.deny with input as mcp("create_ticket", 2)
}
