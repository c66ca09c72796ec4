# Shared by the policies of policies/kubernetes/ (no rule of its own): the pod specs of the rendered
# objects, wherever each kind keeps one, and their containers.
package k8s_workloads

import rego.v1

template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

ref(obj) := sprintf("%s/%s", [obj.kind, obj.metadata.name])

pods contains {"ref": ref(obj), "spec": obj.spec.template.spec} if {
	some obj in input.objects
	obj.kind in template_kinds
}

pods contains {"ref": ref(obj), "spec": obj.spec.jobTemplate.spec.template.spec} if {
	some obj in input.objects
	obj.kind == "CronJob"
}

pods contains {"ref": ref(obj), "spec": obj.spec} if {
	some obj in input.objects
	obj.kind == "Pod"
}

# KServe: each component of an InferenceService is a pod spec of its own.
pods contains {"ref": sprintf("%s %s", [ref(obj), component]), "spec": obj.spec[component]} if {
	some obj in input.objects
	obj.kind == "InferenceService"
	some component in ["predictor", "transformer", "explainer"]
	obj.spec[component]
}

# Every container of every pod, init containers too, with its pod spec.
containers contains {"ref": pod.ref, "pod": pod.spec, "container": container, "init": kind == "initContainers"} if {
	some pod in pods
	some kind in ["containers", "initContainers"]
	some container in object.get(pod.spec, kind, [])
}

# The containers that serve (not the init containers).
serving contains c if {
	some c in containers
	not c.init
}
