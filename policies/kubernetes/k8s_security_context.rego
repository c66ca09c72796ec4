# Every container runs restricted: non-root, as the image's own user (params.yaml image.user_uid),
# without privilege escalation, on a read-only root filesystem, with every capability dropped and
# the runtime's default seccomp profile, and no pod shares the node's network, PID or IPC namespace.
package k8s_security_context

import data.k8s_workloads
import rego.v1

# A container's setting, else its pod's (Kubernetes' own precedence), else null.
setting(c, key) := object.get(
	object.get(c.container, "securityContext", {}), key,
	object.get(object.get(c.pod, "securityContext", {}), key, null),
)

# Not object.get with a string default: regopy's sprintf quotes one (see k8s_image_digest.rego).
seccomp(c) := setting(c, "seccompProfile").type

seccomp(c) := "(none)" if not setting(c, "seccompProfile").type

container_setting(c, key) := object.get(object.get(c.container, "securityContext", {}), key, null)

deny contains msg if {
	some c in k8s_workloads.containers
	setting(c, "runAsNonRoot") != true
	msg := sprintf("k8s_security_context: %s container %s: runAsNonRoot is not true", [c.ref, c.container.name])
}

deny contains msg if {
	some c in k8s_workloads.containers
	uid := setting(c, "runAsUser")
	uid != input.params.image.user_uid
	msg := sprintf(
		"k8s_security_context: %s container %s runs as user %v, not the image's %v (params.yaml image.user_uid)",
		[c.ref, c.container.name, uid, input.params.image.user_uid],
	)
}

deny contains msg if {
	some c in k8s_workloads.containers
	container_setting(c, "allowPrivilegeEscalation") != false
	msg := sprintf("k8s_security_context: %s container %s: allowPrivilegeEscalation is not false", [c.ref, c.container.name])
}

deny contains msg if {
	some c in k8s_workloads.containers
	container_setting(c, "privileged") == true
	msg := sprintf("k8s_security_context: %s container %s is privileged", [c.ref, c.container.name])
}

deny contains msg if {
	some c in k8s_workloads.containers
	container_setting(c, "readOnlyRootFilesystem") != true
	msg := sprintf("k8s_security_context: %s container %s: readOnlyRootFilesystem is not true", [c.ref, c.container.name])
}

deny contains msg if {
	some c in k8s_workloads.containers
	capabilities := object.get(object.get(c.container, "securityContext", {}), "capabilities", {})
	not "ALL" in object.get(capabilities, "drop", [])
	msg := sprintf("k8s_security_context: %s container %s does not drop ALL capabilities", [c.ref, c.container.name])
}

deny contains msg if {
	some c in k8s_workloads.containers
	capabilities := object.get(object.get(c.container, "securityContext", {}), "capabilities", {})
	count(object.get(capabilities, "add", [])) > 0
	msg := sprintf("k8s_security_context: %s container %s adds capabilities %v", [c.ref, c.container.name, capabilities.add])
}

deny contains msg if {
	some c in k8s_workloads.containers
	profile := seccomp(c)
	not profile in {"RuntimeDefault", "Localhost"}
	msg := sprintf(
		"k8s_security_context: %s container %s has seccomp profile %s: use RuntimeDefault",
		[c.ref, c.container.name, profile],
	)
}

deny contains msg if {
	some pod in k8s_workloads.pods
	some key in ["hostNetwork", "hostPID", "hostIPC"]
	object.get(pod.spec, key, false) == true
	msg := sprintf("k8s_security_context: %s sets %s: a model server shares nothing with its node", [pod.ref, key])
}
