"""Lint, beside every stage: the Dockerfile's rules (dockerfile: hadolint plus the Rego policies) and
the workflows (workflows: actionlint and zizmor)."""
