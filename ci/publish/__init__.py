"""Stage 4, publishing: a real local registry (registry) and the push of a gated image by digest
(push). Signing runs on the runner's own Python, so it lives with the other standard-library
scripts in ci/runner/."""
