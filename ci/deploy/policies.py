"""The Rego policies of policies/kubernetes/ over rendered manifests (the gate's evaluator, another input).

The scan gate evaluates policies/*.rego over an image; these judge a rendering of deploy/, so they
live in a subdirectory the gate never reads (ci.gate.policy.policy_files takes policies/*.rego
only). One input document per rendered form:

    objects   the rendered objects, as written to manifests.yaml
    params    the facts the policies compare with: serve.port, serve.timeout_s, image.user_uid
    target    <variant>/<form>, for messages

Each policies/kubernetes/<rule>.rego is `package <rule>` with `deny contains msg if`, every message
starting with the rule's name; policies/kubernetes/lib/ holds the rules they share (no `deny`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ci.gate import policy as gate_policy
from ci.project import UserError

POLICY_DIR = gate_policy.POLICY_DIR / "kubernetes"
LIBRARY_DIR = POLICY_DIR / "lib"


def policy_files(directory: Path = POLICY_DIR) -> list[Path]:
    """Every Kubernetes policy, sorted; none is an error (an empty check must not pass)."""
    files = sorted(directory.glob("*.rego"))
    if not files:
        raise UserError(f"no policy (*.rego) in {directory}: restore policies/kubernetes/ from the template.")
    return files


def library_files(directory: Path = LIBRARY_DIR) -> list[Path]:
    """The shared Rego modules the policies import."""
    return sorted(directory.glob("*.rego"))


def document(objects: list[dict], values: Any, target: str) -> dict:
    """The input of the policies for one rendered form (`values`: ci.deploy.render.Settings)."""
    return {
        "target": target,
        "objects": objects,
        "params": {
            "serve": {"port": values.port, "timeout_s": values.timeout_s},
            "image": {"user_uid": values.uid},
        },
    }


def evaluate(doc: dict, files: list[Path] | None = None) -> list[gate_policy.PolicyResult]:
    """Every Kubernetes policy over one document; a policy that cannot run is an error, never a pass."""
    return gate_policy.evaluate(doc, policy_files() if files is None else files, data={}, library=library_files())
