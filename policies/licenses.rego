# Every Python package in the image has a licence that policies/licenses.yaml allows (read by the
# scan into data.licenses), as the SBOM (syft) lists it. A package whose metadata names no licence
# syft can read, or an ambiguous one, is checked by a person once and recorded under `reviewed`
# with its version: a new version is reviewed again. Debian's packages are not checked here: they
# come from Debian main, whose packages all meet the Debian Free Software Guidelines.
package licenses

import rego.v1

python_packages := [p | some p in input.packages; p.type == "python"]

reviewed(pkg) := [r.license] if {
	some r in data.licenses.reviewed
	r.package == pkg.name
	r.version == pkg.version
}

effective(pkg) := reviewed(pkg) if reviewed(pkg)

effective(pkg) := pkg.licenses if not reviewed(pkg)

alias(expression) := object.get(data.licenses.aliases, expression, expression)

term_allowed(term, _) if term in data.licenses.allowed

term_allowed(term, package_name) if {
	some exception in data.licenses.exceptions
	exception.license == term
	regex.match(exception.packages, package_name)
}

# `A OR B`: one alternative must be allowed. Anything with AND (mixed or not): every term must be.
expression_allowed(expression, package_name) if {
	e := alias(expression)
	not contains(e, " AND ")
	some alternative in split(e, " OR ")
	term_allowed(alias(trim(alternative, "() ")), package_name)
}

expression_allowed(expression, package_name) if {
	terms := [alias(trim(t, "() ")) | some t in regex.split(`\s+(AND|OR)\s+`, alias(expression))]
	every term in terms {
		term_allowed(term, package_name)
	}
}

deny contains msg if {
	some pkg in python_packages
	count(effective(pkg)) == 0
	msg := sprintf(
		"licenses: %s %s declares no licence the SBOM could read: read its LICENSE and add it to `reviewed` in policies/licenses.yaml",
		[pkg.name, pkg.version],
	)
}

deny contains msg if {
	some pkg in python_packages
	some expression in effective(pkg)
	not expression_allowed(expression, pkg.name)
	msg := sprintf(
		`licenses: %s %s is licensed "%s", which policies/licenses.yaml does not allow`,
		[pkg.name, pkg.version, expression],
	)
}
