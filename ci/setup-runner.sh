#!/usr/bin/env bash
# Prepare a GitHub-hosted Ubuntu runner for the sessions that build images (.github/workflows/ci.yml).
# On the project's own Debian machines (root) the sessions install what they need themselves;
# a runner is not root and not Debian, so this installs it up front:
# - mmdebstrap, which builds the Debian base rootfs (ci/image/base.py). The sessions then run as
#   root (the workflow says why), where mmdebstrap uses its plain root mode.
# - Debian's archive keyring, trusted by apt: mmdebstrap verifies the bookworm mirrors of
#   params.yaml with the host's apt keys, and an Ubuntu host trusts only Ubuntu's.
# - disk space: the CUDA wheelhouse, the locked environment and two images need more than the
#   ~20 GB a runner has free; the runner image carries SDKs this project never uses.
# It changes the machine it runs on, so it refuses to run anywhere but on a GitHub Actions runner.
set -euo pipefail

if [ "${GITHUB_ACTIONS:-}" != "true" ] || [ "${RUNNER_ENVIRONMENT:-}" != "github-hosted" ]; then
    echo "error: ci/setup-runner.sh only prepares GitHub-hosted runners; on Debian the nox sessions install what they need." >&2
    exit 1
fi

echo "==> installing mmdebstrap and debian-archive-keyring" >&2
sudo apt-get update -qq
sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap debian-archive-keyring
sudo install -m 0644 /usr/share/keyrings/debian-archive-keyring.gpg /etc/apt/trusted.gpg.d/debian-archive-keyring.gpg

echo "==> freeing disk space (unused SDKs of the runner image)" >&2
df -h / >&2
sudo rm -rf /usr/local/lib/android /usr/share/dotnet /opt/ghc /usr/local/.ghcup /usr/share/swift /opt/hostedtoolcache/CodeQL
df -h / >&2
