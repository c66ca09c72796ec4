# Every container image is pinned by digest, repository@sha256:<64 hex> with no tag: what runs is
# the image that was tested, scanned and pushed, and a tag that moves cannot change it. Every
# `containers`, `initContainers` and `ephemeralContainers` list in any object counts, whatever its kind.
package k8s_image_digest

import rego.v1

container_lists := {"containers", "initContainers", "ephemeralContainers"}

# Leading components may carry a registry port (host:5000/...); the last one names no tag.
pinned(image) if regex.match(`^([^/@]+/)*[^/:@]+@sha256:[0-9a-f]{64}$`, image)

deny contains msg if {
	some obj in input.objects
	walk(obj, [path, value])
	count(path) > 0
	path[count(path) - 1] in container_lists
	some container in value
	not pinned(image(container))
	msg := sprintf(
		"k8s_image_digest: %s/%s container %s runs image %s: pin it by digest (repository@sha256:...), never by tag",
		[obj.kind, obj.metadata.name, name(container), image(container)],
	)
}

# Helpers rather than object.get with a default: regopy's sprintf quotes a string default (a known
# rego-cpp quirk that breaks its JSON output, which the evaluator then reports as an error).
image(container) := container.image

image(container) := "(none)" if not container.image

name(container) := container.name

name(container) := "(unnamed)" if not container.name
