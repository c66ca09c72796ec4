"""`nox -s deploy`: render deploy/ for each variant, by digest, then validate it and check the policies.

For each variant (params.yaml image.variants) and each form, plain Kubernetes (deploy/overlays/<variant>)
and KServe (deploy/overlays/kserve-<variant>), it writes under build/deploy/<variant>/<form>/:

    kustomization.yaml  a generated layer over the overlay: the image as repository@digest (kustomize
                        `images:`) and JSON 6902 patches with the values that have another source of
                        truth: the container port (serve.port), the user and group (image.user_uid),
                        the drain (serve.timeout_s: preStop and terminationGracePeriodSeconds) and an
                        in-memory emptyDir wherever the service writes (the read-only root filesystem)
    manifests.yaml      that layer rendered (ci/deploy/kustomize.py): what `kubectl apply -f` takes

then validates every object against the Kubernetes API of versions.KUBERNETES_VERSION and KServe's
CRD schema (ci/deploy/validate.py), evaluates policies/kubernetes/ (ci/deploy/policies.py) and
prints a table. The image: `--image [VARIANT=]REPOSITORY@sha256:...`, or `--digest [VARIANT=]sha256:...`
(with `--image [VARIANT=]REPOSITORY`, else params.yaml image.repository), else the push record
build/push-<variant>.json (`nox -s push`). A tag is refused: the manifests name bytes, never a label.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ci.deploy import kustomize
from ci.deploy.versions import KSERVE_VERSION, KUBERNETES_VERSION
from ci.project import BUILD_DIR, ROOT, UserError, bento_spec, main_guard, say, section, table
from ci.records import RecordError, load_push, push_path

DEPLOY_DIR = ROOT / "deploy"
OUT_DIR = BUILD_DIR / "deploy"
# The forms of each variant: the overlay each renders, relative to deploy/overlays/.
FORMS = {"kubernetes": "{variant}", "kserve": "kserve-{variant}"}
IMAGE_PLACEHOLDER = "model-image"  # the image name deploy/ writes; the generated `images:` replaces it
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Where each kind of workload keeps its pod spec (a JSON pointer); only these get the generated values.
POD_SPECS = {"Deployment": "/spec/template/spec", "InferenceService": "/spec/predictor"}
# The drain on deletion. The pod is removed from the Service's endpoints while the preStop hook
# runs, but kube-proxy on every node, ingress controllers and meshes learn it a moment later (about
# a second, more on a busy cluster): the server keeps serving for PRESTOP_SLEEP_S so that requests
# sent in that moment still find it, and only then gets SIGTERM (BentoML then stops accepting and
# finishes what is in flight). A request lasts at most serve.timeout_s (BentoML answers 504 past
# it), and the process exits 0.3 s after SIGTERM under load (docs/figures.md): the grace period,
# which counts from the start of the preStop hook, is the sleep + serve.timeout_s + SHUTDOWN_MARGIN_S.
PRESTOP_SLEEP_S = 5
SHUTDOWN_MARGIN_S = 5
WRITABLE_VOLUME = "writable"
# tmpfs, as `nox -s bench` ran the image under --read-only: the Prometheus multiprocess files are
# written on every request, and the socket directory needs no disk. Counted in the memory limit.
WRITABLE_SIZE = "64Mi"


@dataclass(frozen=True)
class Settings:
    """What the generated layer takes from the checkout: params.yaml, and the image's Dockerfile."""

    port: int  # serve.port
    uid: int  # image.user_uid: the image's USER uid:gid
    timeout_s: int  # serve.timeout_s
    repository: str  # image.repository (a local name; the registry is the push record's)
    variants: tuple[str, ...]  # image.variants
    writable: tuple[str, ...]  # where the service writes (ci/bench/run.py read_only_mounts)

    @property
    def grace_period_s(self) -> int:
        return PRESTOP_SLEEP_S + self.timeout_s + SHUTDOWN_MARGIN_S


def bentoml_home(dockerfile: Path) -> str:
    """BENTOML_HOME as the Dockerfile's ENV sets it (where BentoML writes at run time)."""
    from ci.gate.policy import logical_lines

    for _, line in logical_lines(dockerfile.read_text()):
        words = line.split(None, 1)
        if words and words[0].upper() == "ENV" and len(words) == 2:
            values = dict(w.split("=", 1) for w in shlex.split(words[1]) if "=" in w)
            if home := values.get("BENTOML_HOME"):
                return home
    raise UserError(
        f"{kustomize.shown(dockerfile)} sets no BENTOML_HOME: set it, the deployment mounts its writable parts."
    )


def settings() -> Settings:
    """The Settings of this checkout."""
    from ci.bench.run import read_only_mounts  # the paths `nox -s bench` proved are all it writes

    serve, image = section("serve"), section("image")
    return Settings(
        port=int(serve["port"]),
        uid=int(image["user_uid"]),
        timeout_s=int(serve["timeout_s"]),
        repository=str(image["repository"]),
        variants=tuple(image["variants"]),
        writable=tuple(read_only_mounts(bentoml_home(bento_spec().dockerfile))),
    )


# --- the image ---------------------------------------------------------------------------------------


def split_reference(reference: str) -> tuple[str, str]:
    """(repository, digest) of `repository@sha256:...` or a bare repository; a UserError for a tag."""
    name, tag, digest = kustomize.split_image(reference)
    if tag:
        raise UserError(
            f"the image {reference} names a tag: deploy by digest, `--image {name}@sha256:<digest>` or `--digest`."
        )
    if digest and not DIGEST.fullmatch(digest):
        raise UserError(f"{digest!r} in {reference} is not a sha256 digest: use sha256:<64 hex digits>.")
    return name, digest


def per_variant(values: Sequence[str], option: str, variants: Sequence[str], chosen: Sequence[str]) -> dict[str, str]:
    """`[VARIANT=]VALUE` arguments as variant -> value; a bare value needs exactly one chosen variant."""
    found: dict[str, str] = {}
    for value in values:
        variant, sep, rest = value.partition("=")
        if not sep:
            if len(chosen) != 1:
                raise UserError(
                    f"`{option} {value}` names no variant and {len(chosen)} are rendered: "
                    f"write `{option} {chosen[0] if chosen else 'cpu'}={value}` or choose one with --variant."
                )
            variant, rest = chosen[0], value
        if variant not in variants:
            raise UserError(f"unknown variant {variant!r} in `{option} {value}`: use one of {', '.join(variants)}.")
        found[variant] = rest
    return found


def resolve_image(
    variant: str,
    *,
    image: str | None,
    digest: str | None,
    repository: str,
    records: Path | None = None,
) -> tuple[str, str]:
    """(repository, digest) of one variant: the arguments first, else its push record."""
    name, pinned = split_reference(image) if image else ("", "")
    if digest and pinned and digest != pinned:
        raise UserError(f"--image says {pinned} and --digest says {digest} for the {variant} image: give one.")
    digest = digest or pinned
    if digest:
        if not DIGEST.fullmatch(digest):
            raise UserError(f"--digest {digest!r} is not a sha256 digest: use sha256:<64 hex digits>.")
        return name or repository, digest
    try:
        record = load_push(variant, records)
    except RecordError as exc:
        raise UserError(
            f"no digest for the {variant} image ({push_path(variant, records).name} is missing or unreadable): "
            f"push it with `nox -s push -- --variant {variant}`, or pass `--digest {variant}=sha256:<digest>`."
        ) from exc
    name_from_record, record_digest = split_reference(record.get("by_digest", ""))
    if not record_digest:
        raise UserError(f"{push_path(variant, records).name} has no digest: push the {variant} image again.")
    return name or name_from_record, record_digest


# --- the generated layer -----------------------------------------------------------------------------


def _resolve(document: Any, path: str) -> Any:
    node = document
    for token in kustomize.pointer(path):
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _mount_name(path: str) -> str:
    """The emptyDir subPath of one writable path: /home/bentoml/tmp -> home-bentoml-tmp."""
    return path.strip("/").replace("/", "-") or "root"


def _set(prefix: str, parent: Mapping[str, Any], key: str, value: Any) -> list[dict]:
    """Operations that set parent[key] = value: `add` replaces a member that exists, adds it otherwise."""
    return [{"op": "add", "path": f"{prefix}/{key}", "value": value}]


def _append(prefix: str, parent: Mapping[str, Any], key: str, items: list[Any]) -> list[dict]:
    """Operations that append items to the list parent[key], creating it when absent."""
    if key not in parent:
        return [{"op": "add", "path": f"{prefix}/{key}", "value": items}]
    return [{"op": "add", "path": f"{prefix}/{key}/-", "value": item} for item in items]


def pod_operations(pod: Mapping[str, Any], prefix: str, values: Settings) -> list[dict]:
    """The JSON 6902 operations that give one pod spec the values params.yaml and the image own."""
    ops: list[dict] = []
    context = pod.get("securityContext") or {}
    if "securityContext" not in pod:
        ops.append({"op": "add", "path": f"{prefix}/securityContext", "value": {}})
    for key in ("runAsUser", "runAsGroup", "fsGroup"):  # the image's USER is uid:uid
        ops += _set(f"{prefix}/securityContext", context, key, values.uid)
    ops += _set(prefix, pod, "terminationGracePeriodSeconds", values.grace_period_s)
    volume = {"name": WRITABLE_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": WRITABLE_SIZE}}
    ops += _append(prefix, pod, "volumes", [volume])
    for index, container in enumerate(pod.get("containers") or []):
        if kustomize.split_image(container.get("image", ""))[0] != IMAGE_PLACEHOLDER:
            continue  # a sidecar someone added: not the model server
        at = f"{prefix}/containers/{index}"
        ops.append({"op": "test", "path": f"{at}/name", "value": container["name"]})
        if not container.get("ports"):
            raise UserError(f"container {container['name']} declares no port in deploy/: name one (e.g. `http`).")
        ops += _set(f"{at}/ports/0", container["ports"][0], "containerPort", values.port)
        lifecycle = container.get("lifecycle")
        hook = {"sleep": {"seconds": PRESTOP_SLEEP_S}}
        ops += (
            _set(at, container, "lifecycle", {"preStop": hook})
            if lifecycle is None
            else _set(f"{at}/lifecycle", lifecycle, "preStop", hook)
        )
        mounts = [{"name": WRITABLE_VOLUME, "mountPath": p, "subPath": _mount_name(p)} for p in values.writable]
        ops += _append(at, container, "volumeMounts", mounts)
    return ops


def generated_layer(
    objects: list[dict], overlay: Path, layer_dir: Path, values: Settings, image: tuple[str, str]
) -> dict:
    """The kustomization over `overlay` that sets the image by digest and the params-derived values."""
    patches = []
    for obj in objects:
        if (prefix := POD_SPECS.get(obj.get("kind", ""))) is None:
            continue
        identity = kustomize.ref(obj)
        target = {"group": identity.group, "version": identity.version, "kind": identity.kind, "name": identity.name}
        operations = pod_operations(_resolve(obj, prefix), prefix, values)
        patches.append(
            {"target": {k: v for k, v in target.items() if v}, "patch": yaml.safe_dump(operations, sort_keys=False)}
        )
    repository, digest = image
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay, layer_dir)],
        "images": [{"name": IMAGE_PLACEHOLDER, "newName": repository, "digest": digest}],
        "patches": patches,
    }


class _LiteralDumper(yaml.SafeDumper):
    """YAML with every multi-line string as a literal block (`|`): the patches stay readable."""


_LiteralDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


LAYER_HEADER = """\
# Generated by `nox -s deploy` (ci/deploy/render.py) from params.yaml, the image's Dockerfile and the
# image digest; do not edit, run it again. `kubectl apply -k` this directory, or apply manifests.yaml.
"""
MANIFESTS_HEADER = "# Rendered by `nox -s deploy` (ci/deploy/render.py) from {layer}: do not edit.\n"


# --- render, check, report ---------------------------------------------------------------------------


@dataclass
class Rendered:
    """One form of one variant, rendered and checked."""

    variant: str
    form: str
    image: str
    directory: Path
    objects: list[dict] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # validation problems, one per object
    denials: list[str] = field(default_factory=list)  # policy messages
    policy_errors: list[str] = field(default_factory=list)  # policies that did not run
    policies: int = 0

    @property
    def passed(self) -> bool:
        return not (self.invalid or self.denials or self.policy_errors)


def overlay_of(variant: str, form: str) -> Path:
    """deploy/overlays/<...> for one variant and form, or a UserError when it is missing."""
    overlay = DEPLOY_DIR / "overlays" / FORMS[form].format(variant=variant)
    if not overlay.is_dir():
        raise UserError(f"{kustomize.shown(overlay)} is missing: the {variant} variant needs an overlay there.")
    return overlay


def render(variant: str, form: str, image: tuple[str, str], values: Settings, out_dir: Path) -> Rendered:
    """Write the generated layer and its rendering for one variant and form; return the objects."""
    overlay = overlay_of(variant, form)
    directory = out_dir / variant / form
    directory.mkdir(parents=True, exist_ok=True)
    layer = generated_layer(kustomize.build(overlay), overlay, directory, values, image)
    (directory / "kustomization.yaml").write_text(
        LAYER_HEADER + yaml.dump(layer, Dumper=_LiteralDumper, sort_keys=False)
    )
    objects = kustomize.build(directory)
    text = yaml.safe_dump_all(objects, sort_keys=False)
    header = MANIFESTS_HEADER.format(layer=kustomize.shown(directory / "kustomization.yaml"))
    (directory / "manifests.yaml").write_text(header + "---\n" + text)
    return Rendered(variant, form, f"{image[0]}@{image[1]}", directory, objects)


def check(rendered: Rendered, values: Settings) -> Rendered:
    """Validate every object and evaluate the policies over them; the verdicts go into `rendered`."""
    from ci.deploy import policies, validate

    rendered.invalid = validate.problems(rendered.objects)
    results = policies.evaluate(policies.document(rendered.objects, values, f"{rendered.variant}/{rendered.form}"))
    rendered.policies = len(results)
    rendered.denials = [msg for r in results for msg in r.denials]
    rendered.policy_errors = [f"{r.rule}: {r.error}" for r in results if r.error]
    return rendered


def summary(results: list[Rendered]) -> str:
    """The table `nox -s deploy` ends with."""
    rows = []
    for r in results:
        schema = f"{len(r.objects) - len(r.invalid)}/{len(r.objects)} valid"
        failed = len({m.split(":", 1)[0] for m in r.denials + r.policy_errors})
        rows.append(
            (
                r.variant,
                r.form,
                r.image,
                ", ".join(o["kind"] for o in r.objects),
                schema,
                f"{r.policies - failed}/{r.policies} passed",
                "PASS" if r.passed else "FAIL",
            )
        )
    against = f"Kubernetes {KUBERNETES_VERSION}, KServe {KSERVE_VERSION}"
    return table(rows, ("variant", "form", "image", "objects", f"schema ({against})", "policies", "verdict"))


def verdict(results: list[Rendered]) -> None:
    """A UserError, one sentence, naming the first problem of the first failed rendering."""
    failed = [r for r in results if not r.passed]
    if not failed:
        return
    first = failed[0]
    problem = (first.invalid + first.policy_errors + first.denials)[0]
    others = sum(len(r.invalid + r.policy_errors + r.denials) for r in failed) - 1
    more = f" (and {others} more problem{'s' if others != 1 else ''}, listed above)" if others else ""
    raise UserError(
        f"the {first.variant}/{first.form} manifests fail their checks: {problem}{more}; "
        f"fix deploy/ (or the policy in policies/kubernetes/) and run `nox -s deploy` again."
    )


def run(
    variants: Sequence[str],
    *,
    images: Mapping[str, str],
    digests: Mapping[str, str],
    out_dir: Path = OUT_DIR,
    records: Path | None = None,
    values: Settings | None = None,
    forms: Sequence[str] = tuple(FORMS),
) -> list[Rendered]:
    """Render, validate and check every form of each variant; the results in order."""
    values = values or settings()
    results = []
    for variant in variants:
        image = resolve_image(
            variant,
            image=images.get(variant),
            digest=digests.get(variant),
            repository=values.repository,
            records=records,
        )
        for form in forms:
            say(f"{variant}/{form}: rendering {kustomize.shown(overlay_of(variant, form))} with {image[0]}@{image[1]}")
            results.append(check(render(variant, form, image, values, out_dir), values))
            for problem in results[-1].invalid + results[-1].policy_errors + results[-1].denials:
                say(f"{variant}/{form}: {problem}")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ci.deploy.render [--variant V] [--image [V=]REF] [--digest [V=]sha256:...] [--out DIR]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", default=[], help="render only these (default: every variant)")
    parser.add_argument("--image", action="append", default=[], help="[VARIANT=]REPOSITORY[@sha256:DIGEST]")
    parser.add_argument("--digest", action="append", default=[], help="[VARIANT=]sha256:DIGEST")
    parser.add_argument("--records", type=Path, default=None, help="where push-<variant>.json is (default: build/)")
    parser.add_argument("--form", action="append", choices=list(FORMS), default=[], help="only these forms")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where the manifests go (%(default)s)")
    args = parser.parse_args(argv)
    values = settings()
    for variant in args.variant:
        if variant not in values.variants:
            raise UserError(
                f"unknown variant {variant!r}: use one of {', '.join(values.variants)} (params.yaml image.variants)."
            )
    variants = args.variant or list(values.variants)
    images = per_variant(args.image, "--image", values.variants, variants)
    digests = per_variant(args.digest, "--digest", values.variants, variants)
    results = run(
        variants,
        images=images,
        digests=digests,
        out_dir=args.out,
        records=args.records,
        values=values,
        forms=args.form or tuple(FORMS),
    )
    print(summary(results))
    print(
        f"\nmanifests: {kustomize.shown(args.out)}/<variant>/<form>/manifests.yaml (kubectl apply -f; or -k the folder)"
    )
    verdict(results)


if __name__ == "__main__":
    main_guard(main)
