"""KServe's InferenceService schema, vendored: how the file in ci/deploy/schemas/ is made, and read.

The file is the `openAPIV3Schema` of the v1beta1 version of KServe's CRD
(versions.KSERVE_CRD_PATH at versions.KSERVE_COMMIT, the tag versions.KSERVE_VERSION), with every
`description` removed (1.96 MB of YAML becomes 22 KB of gzipped JSON; nothing else is changed),
written as sorted, compact JSON, gzipped without a timestamp. To update it, download the CRD of a
new release, set the four constants in ci/deploy/versions.py, and run

    python -m ci.deploy.kserve vendor serving.kserve.io_inferenceservices.yaml

which refuses a file whose sha256 is not versions.KSERVE_CRD_SHA256. Validating against it
(`strict`): an object property that the schema does not list is an error, as the API server's
strict field validation (kubectl's default) makes it, except under `x-kubernetes-preserve-unknown-fields`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from ci.deploy.versions import KSERVE_CRD_PATH, KSERVE_CRD_SHA256, KSERVE_VERSION
from ci.project import UserError, main_guard, say

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
SCHEMA_FILE = SCHEMA_DIR / f"kserve-{KSERVE_VERSION}-inferenceservice-v1beta1.json.gz"
API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"


def without_descriptions(node: Any) -> Any:
    """The schema with every `description` key removed, at any depth (a property named so is kept)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "description" and not isinstance(value, dict):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: without_descriptions(sub) for name, sub in value.items()}
            else:
                out[key] = without_descriptions(value)
        return out
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    return node


def schema_from_crd(crd: dict, version: str = "v1beta1") -> dict:
    """The openAPIV3Schema of one version of a CustomResourceDefinition."""
    for entry in crd.get("spec", {}).get("versions", []):
        if entry.get("name") == version:
            return entry["schema"]["openAPIV3Schema"]
    raise UserError(f"the CRD has no version {version}: is it KServe's InferenceService CRD?")


def encode(schema: dict) -> bytes:
    """Sorted, compact JSON, gzipped with no file name or time in the header: the same bytes every time."""
    return gzip.compress(json.dumps(schema, sort_keys=True, separators=(",", ":")).encode(), mtime=0)


def vendor(crd_file: Path, out: Path = SCHEMA_FILE) -> Path:
    """Write the vendored schema from KServe's CRD file, checked against versions.KSERVE_CRD_SHA256."""
    digest = hashlib.sha256(crd_file.read_bytes()).hexdigest()
    if digest != KSERVE_CRD_SHA256:
        raise UserError(
            f"{crd_file} has sha256 {digest}, not the {KSERVE_CRD_SHA256} of {KSERVE_CRD_PATH} at KServe "
            f"{KSERVE_VERSION}: download that file, or update ci/deploy/versions.py for the new release."
        )
    schema = without_descriptions(schema_from_crd(yaml.safe_load(crd_file.read_text())))
    out.write_bytes(encode(schema))
    return out


def load_schema(path: Path = SCHEMA_FILE) -> dict:
    """The vendored openAPIV3Schema of the InferenceService."""
    if not path.is_file():
        raise UserError(f"{path.name} is missing from ci/deploy/schemas/: restore it from the template.")
    return json.loads(gzip.decompress(path.read_bytes()))


def strict(node: Any) -> Any:
    """The schema with unlisted properties refused (additionalProperties: false) wherever it lists
    properties, allows no others, and does not preserve unknown fields."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: (strict(value) if key != "properties" else {k: strict(v) for k, v in value.items()})
        for key, value in node.items()
    }
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def main() -> None:
    """`python -m ci.deploy.kserve vendor CRD.yaml`: (re)write the vendored schema."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    vendor_cmd = sub.add_parser("vendor", help="write ci/deploy/schemas/ from KServe's CRD file")
    vendor_cmd.add_argument("crd", type=Path, help=f"{KSERVE_CRD_PATH} of KServe {KSERVE_VERSION}")
    args = parser.parse_args()
    say(f"wrote {vendor(args.crd)}")


if __name__ == "__main__":
    main_guard(main)
