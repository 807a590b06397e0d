package agent_iam.tenant_test

import rego.v1

import data.agent_iam.authz

req(segments, agent) := {"chain": [], "agent": agent, "token": {}, "request": {"method": "GET", "path": concat("/", array.concat([""], segments)), "segments": segments, "headers": {}}}

test_own_tenant_is_allowed if {
	not "tenant.mismatch" in authz.deny with input as req(["tenants", "acme", "tickets"], {"tenant": "acme"})
}

test_other_tenant_is_denied if {
	"tenant.mismatch" in authz.deny with input as req(["tenants", "globex", "tickets"], {"tenant": "acme"})
}

test_missing_tenant_is_denied if {
	"tenant.mismatch" in authz.deny with input as req(["tenants", "acme"], {})
}

test_empty_tenant_is_denied if {
	"tenant.mismatch" in authz.deny with input as req(["tenants", ""], {"tenant": ""})
}

test_tenants_root_is_denied if {
	"tenant.mismatch" in authz.deny with input as req(["tenants"], {"tenant": "acme"})
}

test_non_string_tenant_is_denied if {
	"tenant.mismatch" in authz.deny with input as req(["tenants", "1"], {"tenant": 1})
}

test_other_paths_are_unaffected if {
	not "tenant.mismatch" in authz.deny with input as req(["tickets", "1"], {"tenant": "acme"})
}

test_a_tenant_that_is_not_one_plain_value_is_denied_everywhere if {
	every t in ["acme,globex", " acme", "acme ", "ac me", "acme\u0001", "\"acme\"", "", "-acme", 1, ["acme"]] {
		"tenant.invalid" in authz.deny with input as req(["tickets", "1"], {"tenant": t})
	}
}

test_plain_tenants_are_valid if {
	every t in ["acme", "acme-eu.1", "org:acme_2"] {
		not "tenant.invalid" in authz.deny with input as req(["tenants", t], {"tenant": t})
	}
}

test_no_tenant_is_not_invalid if {
	not "tenant.invalid" in authz.deny with input as req(["tickets", "1"], {})
	not "tenant.invalid" in authz.deny with input as req(["tickets", "1"], {"tenant": null})
}

# The raw claims are the vendor's: the rule reads the model's tenant only.
test_a_tenant_claim_alone_is_not_the_agents_tenant if {
	r := object.union(req(["tenants", "acme"], {"tenant": null}), {"token": {"tenant": "acme"}})
	"tenant.mismatch" in authz.deny with input as r
}
