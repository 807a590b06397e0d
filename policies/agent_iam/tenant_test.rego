package agent_iam.tenant_test

import rego.v1

import data.agent_iam.authz

req(path, tenant) := {"chain": [], "token": {"tenant": tenant}, "request": {"method": "GET", "path": path, "headers": {}}}

test_own_tenant_is_allowed if {
	not "tenant.mismatch" in authz.deny with input as req("/tenants/acme/tickets", "acme")
}

test_other_tenant_is_denied if {
	"tenant.mismatch" in authz.deny with input as req("/tenants/globex/tickets", "acme")
}

test_missing_tenant_claim_is_denied if {
	"tenant.mismatch" in authz.deny with input as {"chain": [], "token": {}, "request": {"method": "GET", "path": "/tenants/acme", "headers": {}}}
}

test_other_paths_are_unaffected if {
	not "tenant.mismatch" in authz.deny with input as req("/tickets/1", "acme")
}
