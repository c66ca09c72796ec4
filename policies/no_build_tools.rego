# The runtime image carries no compiler, no git and no package-manager cache: they are attack
# surface and dead weight, and a cache means the build leaked its downloads into a layer.
# Input: the image's merged file listing (every layer, whiteouts applied), paths without a leading /.
package no_build_tools

import rego.v1

# Compiler drivers, compilers proper, linkers and build drivers, also versioned and
# target-prefixed (gcc-12, x86_64-linux-gnu-g++-12), in any bin/ directory.
compiler := `^([a-z0-9_]+-linux-gnu-)?(gcc|g\+\+|cc|c\+\+|cpp|clang|clang\+\+|gfortran|tcc|nvcc|ptxas|rustc|javac|ld|ld\.bfd|ld\.gold|make|cmake)(-[0-9.]+)?$`

# The compiler proper, wherever a toolchain installs it (gcc's cc1 lives in usr/lib/gcc/...).
compiler_internals := ["/cc1", "/cc1plus", "/collect2", "/lto1"]

# Entries in a bin/ or sbin/ directory; the cheap `contains` first keeps 40 000 paths fast.
bin_entries := [f |
	some f in input.files
	contains(f.path, "bin/")
	f.type in {"file", "symlink", "link"}
	regex.match(`(^|/)s?bin/[^/]+$`, f.path)
]

# Where package managers keep caches, or a wheel lies around (cheap tests before the regex below).
cache_candidates := [f |
	some f in input.files
	f.type != "dir"
	cache_place(f.path)
]

cache_place(path) if startswith(path, "var/")

cache_place(path) if contains(path, ".cache/")

cache_place(path) if endswith(path, ".whl")

name(path) := parts[count(parts) - 1] if {
	parts := split(path, "/")
}

deny contains msg if {
	some f in bin_entries
	regex.match(compiler, name(f.path))
	msg := sprintf("no_build_tools: compiler or build tool /%s in the runtime image: build in an earlier stage", [f.path])
}

deny contains msg if {
	some f in input.files
	f.type == "file"
	some suffix in compiler_internals
	endswith(f.path, suffix)
	msg := sprintf("no_build_tools: compiler /%s in the runtime image: build in an earlier stage", [f.path])
}

deny contains msg if {
	some f in bin_entries
	regex.match(`^git(-[a-z-]+)?$`, name(f.path))
	msg := sprintf("no_build_tools: git (/%s) in the runtime image: fetch sources on the host or in a build stage", [f.path])
}

deny contains msg if {
	some f in input.files
	endswith(f.path, ".git")
	regex.match(`(^|/)\.git$`, f.path)
	msg := sprintf("no_build_tools: a git repository (/%s) was copied into the image: add .git to .dockerignore", [f.path])
}

# Package-manager caches: downloaded .debs, apt's package lists (the lock and partial/ are empty
# directories apt keeps), pip/uv/poetry caches and wheel files left after an install.
cache := `^var/cache/apt/archives/[^/]+\.deb$|^var/lib/apt/lists/[^/]+$|(^|/)\.cache/(pip|uv|pypoetry)(/|$)|\.whl$|^var/cache/(apk|yum|dnf)/.+`

deny contains msg if {
	some f in cache_candidates
	regex.match(cache, f.path)
	not name(f.path) in {"lock"}
	msg := sprintf("no_build_tools: package-manager cache /%s in the runtime image: clean it in the same RUN, or mount the cache", [f.path])
}
