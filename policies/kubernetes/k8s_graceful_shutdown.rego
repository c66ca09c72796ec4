# Every serving container drains before it is killed: a preStop hook that waits while the pod
# leaves the Service's endpoints, and a terminationGracePeriodSeconds longer than that wait plus
# params.yaml serve.timeout_s, the longest a request in flight can take.
package k8s_graceful_shutdown

import data.k8s_workloads
import rego.v1

# The wait of a `sleep` preStop hook; an `exec` one is not counted (its duration is unknown).
prestop_seconds(container) := object.get(object.get(object.get(object.get(container, "lifecycle", {}), "preStop", {}), "sleep", {}), "seconds", 0)

deny contains msg if {
	some c in k8s_workloads.serving
	not c.container.lifecycle.preStop
	msg := sprintf("k8s_graceful_shutdown: %s container %s has no preStop hook: traffic would still arrive after SIGTERM", [c.ref, c.container.name])
}

deny contains msg if {
	some c in k8s_workloads.serving
	wait := prestop_seconds(c.container)
	grace := object.get(c.pod, "terminationGracePeriodSeconds", 30)
	grace <= wait + input.params.serve.timeout_s
	msg := sprintf(
		"k8s_graceful_shutdown: %s: terminationGracePeriodSeconds %v does not exceed the preStop wait (%v s) plus serve.timeout_s (%v s): requests in flight would be killed",
		[c.ref, grace, wait, input.params.serve.timeout_s],
	)
}
