# Every container requests and limits its CPU and memory: the scheduler places a pod by its
# requests, the autoscaler's utilization is relative to them, and limits bound what one pod can
# take from the others on its node.
package k8s_resources

import data.k8s_workloads
import rego.v1

deny contains msg if {
	some c in k8s_workloads.containers
	some kind in ["requests", "limits"]
	some resource in ["cpu", "memory"]
	not object.get(object.get(c.container, "resources", {}), kind, {})[resource]
	msg := sprintf("k8s_resources: %s container %s has no %s %s", [c.ref, c.container.name, resource, kind])
}
