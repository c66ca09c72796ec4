# The container must not run as root: the final stage of the Dockerfile ends with a non-root USER,
# and the image config (what `docker run` uses) names a non-root user. hadolint's DL3002 misses
# a Dockerfile with no USER at all; this rule does not.
package non_root_user

import rego.v1

root_users := {"", "root", "0"}

final_stage := input.dockerfile.stages[count(input.dockerfile.stages) - 1]

users := [i | some i in final_stage.instructions; i.cmd == "USER"]

user_part(value) := trim_space(split(value, ":")[0])

deny contains msg if {
	count(input.dockerfile.stages) == 0
	msg := sprintf("non_root_user: %s has no FROM: nothing to check", [input.dockerfile.path])
}

deny contains msg if {
	count(users) == 0
	msg := sprintf(
		"non_root_user: the final stage of %s has no USER, so the container runs as root: add `USER <uid>`",
		[input.dockerfile.path],
	)
}

deny contains msg if {
	last := users[count(users) - 1]
	user_part(last.value) in root_users
	msg := sprintf(
		"non_root_user: %s line %d ends on `USER %s` (root): switch to a non-root user",
		[input.dockerfile.path, last.line, last.value],
	)
}

deny contains msg if {
	user := object.get(object.get(input.config, "Config", {}), "User", "")
	user_part(user) in root_users
	msg := sprintf(`non_root_user: the image config runs as "%s" (root): rebuild with a non-root USER`, [user])
}
