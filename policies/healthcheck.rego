# A served model needs a HEALTHCHECK, so an orchestrator can tell a loaded model from a starting
# one: in the Dockerfile's final stage and in the image config. hadolint's DL3057 is off by default.
package healthcheck

import rego.v1

final_stage := input.dockerfile.stages[count(input.dockerfile.stages) - 1]

checks := [i | some i in final_stage.instructions; i.cmd == "HEALTHCHECK"]

deny contains msg if {
	count(checks) == 0
	msg := sprintf("healthcheck: the final stage of %s has no HEALTHCHECK: add one that probes readiness", [input.dockerfile.path])
}

deny contains msg if {
	last := checks[count(checks) - 1]
	upper(trim_space(last.value)) == "NONE"
	msg := sprintf("healthcheck: %s line %d turns the health check off (HEALTHCHECK NONE)", [input.dockerfile.path, last.line])
}

deny contains msg if {
	test := object.get(object.get(object.get(input.config, "Config", {}), "Healthcheck", {}), "Test", [])
	not has_check(test)
	msg := "healthcheck: the image config has no health check (Config.Healthcheck.Test): rebuild from a Dockerfile with HEALTHCHECK"
}

has_check(test) if {
	count(test) > 0
	test[0] != "NONE"
}
