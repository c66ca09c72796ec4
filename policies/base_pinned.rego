# Every FROM names an immutable base: an image pinned by digest (`name@sha256:...`), `scratch`, an
# earlier stage, or the base this project builds itself from Debian packages (ci/image/base.py:
# `<repository>-base:<sha256 of the rootfs tarball>`, passed in as input.build.local_bases).
# A tag alone (`python:3.11-slim`) can point at different bytes tomorrow.
package base_pinned

import rego.v1

digest := `@sha256:[0-9a-f]{64}$`

earlier_stages(index) := {lower(s.name) | some s in input.dockerfile.stages; s.index < index; s.name != ""}

pinned(stage) if regex.match(digest, stage.image)

pinned(stage) if lower(stage.image) == "scratch"

pinned(stage) if stage.image in input.build.local_bases

pinned(stage) if lower(stage.image) in earlier_stages(stage.index)

deny contains msg if {
	some stage in input.dockerfile.stages
	not pinned(stage)
	msg := sprintf(
		"base_pinned: %s line %d `FROM %s` (= %s) is neither pinned by digest nor built locally: use name@sha256:<digest>",
		[input.dockerfile.path, stage.line, stage.from, stage.image],
	)
}
