# No `ADD <url>`: it downloads at build time with no checksum, so the image depends on whatever the
# server sent that day. Download on the host, check the hash, then COPY. hadolint does not flag it.
package no_add_from_url

import rego.v1

remote := `^(https?|ftp)://|^git@|^git://`

deny contains msg if {
	some stage in input.dockerfile.stages
	some i in stage.instructions
	i.cmd == "ADD"
	some source in i.sources
	regex.match(remote, source)
	msg := sprintf(
		"no_add_from_url: %s line %d ADDs %s from the network: download it on the host, pin its hash, COPY it",
		[input.dockerfile.path, i.line, source],
	)
}
