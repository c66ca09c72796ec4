# The image says where it comes from: the OCI annotations a registry, a scanner or a person reads
# to trace an image back to its source, commit and version (ci/image/build.py sets them).
package oci_labels

import rego.v1

required := [
	"org.opencontainers.image.title",
	"org.opencontainers.image.source",
	"org.opencontainers.image.revision",
	"org.opencontainers.image.version",
	"org.opencontainers.image.created",
]

labels := object.get(object.get(input.config, "Config", {}), "Labels", {})

present(key) if {
	is_object(labels)
	trim_space(object.get(labels, key, "")) != ""
}

deny contains msg if {
	some key in required
	not present(key)
	msg := sprintf("oci_labels: the image has no %s label: set it at build time (`docker build --label`)", [key])
}
