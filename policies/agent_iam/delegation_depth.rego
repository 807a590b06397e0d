# Stricter rules for deeper delegation: the further an agent is from the person it acts
# for, the less it may do. Two or more actors: read only. More than
# data.agent_iam.max_chain_for_reads actors: nothing.
package agent_iam.authz

import rego.v1

deny contains "delegation.too_deep_for_writes" if {
	count(input.chain) >= 2
	is_write
}

deny contains "delegation.too_deep" if {
	count(input.chain) > data.agent_iam.max_chain_for_reads
}
