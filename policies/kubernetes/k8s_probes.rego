# Every serving container has a startupProbe and a readinessProbe on /readyz and a livenessProbe on
# /livez, each an HTTP GET of a port the container declares, which is params.yaml serve.port: a pod
# gets traffic only once its model is loaded, and is restarted only when the process stops answering.
package k8s_probes

import data.k8s_workloads
import rego.v1

expected := {"startupProbe": "/readyz", "livenessProbe": "/livez", "readinessProbe": "/readyz"}

deny contains msg if {
	some c in k8s_workloads.serving
	some probe, path in expected
	not c.container[probe]
	msg := sprintf("k8s_probes: %s container %s has no %s: add one, an HTTP GET of %s", [c.ref, c.container.name, probe, path])
}

deny contains msg if {
	some c in k8s_workloads.serving
	some probe, path in expected
	got := http_path(c.container[probe])
	got != path
	msg := sprintf("k8s_probes: %s container %s: the %s gets %s, not %s", [c.ref, c.container.name, probe, got, path])
}

deny contains msg if {
	some c in k8s_workloads.serving
	some probe, _ in expected
	port := c.container[probe].httpGet.port
	not port_number(c.container, port)
	msg := sprintf("k8s_probes: %s container %s: the %s probes port %v, which the container does not declare", [c.ref, c.container.name, probe, port])
}

deny contains msg if {
	some c in k8s_workloads.serving
	some probe, _ in expected
	port := c.container[probe].httpGet.port
	number := port_number(c.container, port)
	number != input.params.serve.port
	msg := sprintf(
		"k8s_probes: %s container %s: the %s probes port %v (%v), not the service's port %v (params.yaml serve.port)",
		[c.ref, c.container.name, probe, port, number, input.params.serve.port],
	)
}

# Not object.get with a string default: regopy's sprintf quotes one (see k8s_image_digest.rego).
http_path(spec) := spec.httpGet.path

http_path(spec) := "(no HTTP GET)" if not spec.httpGet.path

port_number(container, port) := p.containerPort if {
	some p in object.get(container, "ports", [])
	p.name == port
}

port_number(container, port) := port if {
	some p in object.get(container, "ports", [])
	p.containerPort == port
}
