"""Stage 3, the scan gate: secrets in every layer (secrets), the SBOM (sbom), the Rego policies
(policy), trivy's vulnerabilities and licenses (trivy), and the gate that runs them all and writes
the scan record (scan)."""
