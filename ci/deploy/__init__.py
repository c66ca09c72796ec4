"""Stage 6, deployment: the Kubernetes and KServe manifests of deploy/ rendered with the image by
digest and the values params.yaml owns (render, on a small kustomize renderer: kustomize), checked
against the pinned Kubernetes API and KServe's CRD schema (validate, kserve) and the Rego policies
of policies/kubernetes/ (policies), and deployed to a kind cluster in GitHub Actions (kind). The
versions all of it targets are pinned in one place (versions)."""
