"""Push every built image variant to a registry under its tags, then prove the registry holds that image.

REGISTRY (host[:port][/path], e.g. ghcr.io/you) names the registry and REGISTRY_USER and
REGISTRY_PASSWORD the account; with REGISTRY unset the images go to a local registry
(ci/publish/registry.py) that this command starts and stops. Each variant gets three tags:

    <version>-<variant>                  IMAGE_VERSION (CI sets it from a git tag), else the image's version label
    sha-<commit>-<variant>               the commit the image was built from (its revision label)
    model-<model sha256, 16 hex>-<variant>  every image that serves one model, one per variant

An image built from uncommitted changes (its revision label ends in -dirty) was built from no commit,
so it gets none of them: push refuses it and says to commit, unless `--allow-dirty` asks to push it
under one tag that says so, dirty-<commit>-<variant>, which the next such push may move.

Stopping at any moment is safe: `docker push` uploads every layer before it puts the manifest (the
tag), and the registry refuses a manifest whose layers it does not hold, so a tag only ever names a
complete image; tests/registry kills the registry mid-push to prove it. Running again completes the
push, and layers the registry already holds are not sent again.

Pushes exactly the images `nox -s build` recorded (build/image-<variant>.json), never builds one:
what was tested is what is published. It refuses a variant whose last scan (`nox -s scan`,
build/scan-<variant>.json) is not a pass of that very image ID, unless `--skip-scan-gate` says
otherwise (and then says so). Writes build/push-<variant>.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ci.engine import ensure_engine
from ci.image.build import (
    DIRTY_SUFFIX,
    MODEL_SHA_LABEL,
    REVISION_LABEL,
    VARIANTS,
    VERSION_LABEL,
)
from ci.project import BUILD_DIR, UserError, git, human_bytes, main_guard, say, section, step, table
from ci.publish.login import LoginError, temporary_login
from ci.publish.registry import ping, start_registry, stop_registry
from ci.records import ImageRecord, PushRecord, check_gate, image_path, load_image, write_push

DIRTY_TAG_PREFIX = "dirty-"  # the only tag an image built from uncommitted changes may get (--allow-dirty)
# The reference grammar of the OCI distribution spec (what every registry and `docker tag` accept).
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
HOST_RE = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
# What `docker push` prints without a terminal: one status line per layer (12 hex of its diff ID),
# "Retrying in N seconds" countdowns, and, once the manifest is in, "<tag>: digest: sha256:... size: N".
LAYER_LINE = re.compile(r"(?P<id>[0-9a-f]{12}): (?P<status>.+)")
DIGEST_LINE = re.compile(r"(?P<tag>\S+): digest: (?P<digest>sha256:[0-9a-f]{64}) size: (?P<size>\d+)")
RETRY_STATUS = re.compile(r"Retrying in (?P<seconds>\d+) seconds?")
REUSED_STATUSES = ("Layer already exists", "Mounted from")  # the registry had it: no layer bytes sent
# Lower-case fragments of docker's error messages, by cause.
AUTH_ERRORS = ("no basic auth credentials", "unauthorized", "authentication required", "denied", "401")
GONE_ERRORS = ("connection refused", "connection reset", "broken pipe", "eof", "i/o timeout", "no route to host")


@dataclass(frozen=True)
class Target:
    """Where the images go: the registry host docker logs in to, the repository, the account."""

    host: str
    repository: str  # host[/path]/name, no tag
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Base URL of the registry API: plain HTTP only on loopback, as docker itself allows."""
        return f"{'http' if is_loopback(self.host) else 'https'}://{self.host}"

    def ref(self, tag: str) -> str:
        """The image reference for one tag."""
        return f"{self.repository}:{tag}"


@dataclass
class PushOutput:
    """What one `docker push` reported: the manifest digest and each layer's last status."""

    digest: str | None = None
    manifest_size: int | None = None
    statuses: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, [::1] and localhost, with or without a port."""
    name = host[1 : host.find("]")] if host.startswith("[") else host.split(":", 1)[0]
    return name in {"localhost", "::1"} or name.startswith("127.")


def parse_registry(value: str) -> tuple[str, str]:
    """REGISTRY (`host[:port][/path]`) as (host, path), or a UserError that shows the expected form.

    The host must look like one (a dot, a port or localhost): docker reads `you/name` as Docker Hub's
    `docker.io/you/name`, so a bare `you` would silently push somewhere the user did not ask for.
    Upper case is folded: image names are lower case, and registries (ghcr.io) fold account names,
    so `ghcr.io/${{ github.repository_owner }}` works for an owner named `MyOrg`.
    """
    value = value.strip().rstrip("/").lower()
    host, _, path = value.partition("/")
    looks_like_host = HOST_RE.fullmatch(host) and ("." in host or ":" in host or host == "localhost")
    components = path.split("/") if path else []
    if "://" in value or not looks_like_host or not all(COMPONENT_RE.fullmatch(c) for c in components):
        raise UserError(
            f"REGISTRY={value!r} is not a registry address: use host[:port][/path], "
            "e.g. ghcr.io/you, docker.io/you or 127.0.0.1:5000, without http://."
        )
    return host, path


def target_repository(host: str, path: str, repository: str) -> str:
    """The full repository: the registry's host and path, then the image's repository from params.yaml."""
    return "/".join(part for part in (host, path, repository) if part)


def image_version(labels: Mapping[str, str], override: str | None) -> str:
    """IMAGE_VERSION when set (CI: the git tag), else the image's OCI version label."""
    version = (override or "").strip() or labels.get(VERSION_LABEL, "")
    if not version:
        raise UserError(f"the image has no {VERSION_LABEL} label and IMAGE_VERSION is unset: rebuild it.")
    return version


def short_revision(revision: str) -> str:
    """The abbreviated commit, as git abbreviates it here (7+ hex), or '' when the image has none."""
    if not re.fullmatch(r"[0-9a-f]{7,64}", revision or ""):
        return ""
    return git("rev-parse", "--short", revision, default="") or revision[:7]


def is_dirty(labels: Mapping[str, str]) -> bool:
    """True for an image built from uncommitted changes: its revision label ends in -dirty."""
    return labels.get(REVISION_LABEL, "").endswith(DIRTY_SUFFIX)


def built_from(labels: Mapping[str, str]) -> tuple[str, bool]:
    """The commit an image was built from (abbreviated, '' when it names none) and whether it was dirty."""
    return short_revision(labels.get(REVISION_LABEL, "").removesuffix(DIRTY_SUFFIX)), is_dirty(labels)


def refuse_dirty(variant: str, labels: Mapping[str, str], *, revision: str, allow_dirty: bool) -> None:
    """A UserError for an image built from uncommitted changes (on `revision`), unless --allow-dirty was given."""
    if is_dirty(labels) and not allow_dirty:
        raise UserError(
            f"the {variant} image was built from uncommitted changes ({revision or 'unknown'}{DIRTY_SUFFIX}), "
            f"so it gets no version, sha- or model- tag: commit them and run `nox -s 'build({variant})'` again, "
            f"or push it as {dirty_tag(variant, revision)} only with `nox -s push -- --allow-dirty`."
        )


def dirty_tag(variant: str, commit: str) -> str:
    """The one tag of an image built from uncommitted changes: it says so, and names the commit under them."""
    return f"{DIRTY_TAG_PREFIX}{commit or 'unknown'}-{variant}"


def push_tags(
    variant: str, labels: Mapping[str, str], *, version: str, revision: str, allow_dirty: bool = False
) -> list[str]:
    """The tags of one variant: version, commit (when known) and model, each ending in -<variant>.

    The variant suffix keeps every tag unique per variant: the CPU and CUDA images of one model and
    one commit are different images and must never overwrite each other's tags. An image built from
    uncommitted changes (its revision label says -dirty) gets none of these: it is refused, or with
    `allow_dirty` gets only dirty-<revision>-<variant>, since a release, version or model tag on it
    would name bytes that no commit can rebuild.
    """
    model_sha = labels.get(MODEL_SHA_LABEL, "")
    if not re.fullmatch(r"[0-9a-f]{64}", model_sha):
        raise UserError(f"the {variant} image has no {MODEL_SHA_LABEL} label: rebuild it with `nox -s build`.")
    refuse_dirty(variant, labels, revision=revision, allow_dirty=allow_dirty)
    if is_dirty(labels):
        tags = [dirty_tag(variant, revision)]
    else:
        tags = [f"{version}-{variant}"]
        if revision:
            tags.append(f"sha-{revision}-{variant}")
        tags.append(f"model-{model_sha[:16]}-{variant}")
    for tag in tags:
        if not TAG_RE.fullmatch(tag):
            raise UserError(f"{tag!r} is not a valid image tag: set IMAGE_VERSION to letters, digits, '.', '_', '-'.")
    return list(dict.fromkeys(tags))


def parse_push_output(lines: Iterable[str]) -> PushOutput:
    """The digest, manifest size and each layer's final status from `docker push` output."""
    out = PushOutput()
    for raw in lines:
        line = raw.strip()
        out.lines.append(line)
        if match := DIGEST_LINE.fullmatch(line):
            out.digest, out.manifest_size = match["digest"], int(match["size"])
        elif (match := LAYER_LINE.fullmatch(line)) and not RETRY_STATUS.fullmatch(match["status"]):
            out.statuses[match["id"]] = match["status"]
    return out


def worth_echoing(line: str, countdowns: dict[str, int]) -> bool:
    """Echo every line but the ticks of docker's retry countdowns: their first line says enough."""
    match = LAYER_LINE.fullmatch(line.strip())
    retry = RETRY_STATUS.fullmatch(match["status"]) if match else None
    if not retry:
        return True
    seconds, previous = int(retry["seconds"]), countdowns.get(match["id"], 0)
    countdowns[match["id"]] = seconds
    return seconds > previous  # a new countdown starts higher than the last tick of the previous one


def push_failure(output: str, *, target: Target, ref: str, tagged: list[str]) -> UserError:
    """One sentence for a failed `docker push`: credentials, a registry gone mid-push, or docker's own words."""
    text = output.lower()
    if any(marker in text for marker in AUTH_ERRORS):
        if target.user:
            return UserError(
                f"the registry at {target.host} refused the push of {target.user}: "
                f"check that this account may push to {target.repository}."
            )
        return UserError(
            f"the registry at {target.host} refused an anonymous push: "
            f"set REGISTRY_USER and REGISTRY_PASSWORD (or `docker login {target.host}`) and run `nox -s push` again."
        )
    if any(marker in text for marker in GONE_ERRORS):
        done = "nothing was tagged" if not tagged else f"only {', '.join(tagged)} (complete) was tagged"
        return UserError(f"the registry went away during the push of {ref}; {done}; run `nox -s push` again.")
    last = next((line for line in reversed(output.strip().splitlines()) if line.strip()), "no output")
    return UserError(f"`docker push {ref}` failed: {last.strip()}.")


def login_failure(output: str, *, target: Target) -> UserError:
    """One sentence for a failed `docker login`."""
    text = output.lower()
    if any(marker in text for marker in GONE_ERRORS):
        return UserError(f"the registry at {target.host} does not answer: start it or fix REGISTRY.")
    if any(marker in text for marker in AUTH_ERRORS) or "incorrect" in text:
        return UserError(
            f"the registry at {target.host} refused the login of {target.user}: "
            "check REGISTRY_USER and REGISTRY_PASSWORD."
        )
    last = next((line for line in reversed(output.strip().splitlines()) if line.strip()), "no output")
    return UserError(f"`docker login {target.host}` failed: {last.strip()}.")


def layer_report(diff_ids: list[str], statuses: Mapping[str, str], manifest_layers: list[dict]) -> list[dict]:
    """Per layer, oldest first: diff ID, registry digest and (compressed) size, and pushed or reused.

    docker names a layer in its push output by its diff ID's first 12 hex; the manifest lists the
    compressed blobs in the same order as the image's diff IDs, which pairs the two.
    """
    aligned = len(manifest_layers) == len(diff_ids)
    rows = []
    for index, diff_id in enumerate(diff_ids):
        status = statuses.get(diff_id.split(":", 1)[-1][:12], "unknown")
        blob = manifest_layers[index] if aligned else {}
        rows.append(
            {
                "diff_id": diff_id,
                "digest": blob.get("digest"),
                "size": blob.get("size"),
                "status": status,
                "sent": not status.startswith(REUSED_STATUSES),
            }
        )
    return rows


def totals(layers: list[dict]) -> dict[str, dict[str, int | None]]:
    """Layers and bytes sent vs already in the registry; bytes None when the sizes are unknown."""
    out: dict[str, dict[str, int | None]] = {}
    for key, sent in (("pushed", True), ("reused", False)):
        chosen = [layer for layer in layers if layer["sent"] is sent]
        sizes = [layer["size"] for layer in chosen]
        out[key] = {"layers": len(chosen), "bytes": None if None in sizes else sum(sizes)}
    return out


def docker_push(docker: str, ref: str, env: Mapping[str, str], *, target: Target, tagged: list[str]) -> PushOutput:
    """`docker push ref`, echoing its progress; a failure becomes one sentence."""
    proc = subprocess.Popen(
        [docker, "push", ref],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    lines, countdowns = [], {}
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if worth_echoing(line, countdowns):
            print(f"    {line.rstrip()}", file=sys.stderr, flush=True)
    if proc.wait() != 0:
        raise push_failure("".join(lines), target=target, ref=ref, tagged=tagged)
    out = parse_push_output(lines)
    if not out.digest:
        raise UserError(f"`docker push {ref}` printed no digest: read its output above.")
    return out


def inspect_image(docker: str, image_id: str, variant: str) -> dict:
    """`docker image inspect` of the recorded image, or a clear error when the engine no longer has it."""
    proc = subprocess.run([docker, "image", "inspect", image_id], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(
            f"the {variant} image {image_id[:19]} of {image_path(variant).name} is gone from the engine: "
            f"run `nox -s 'build({variant})'`."
        )
    return json.loads(proc.stdout)[0]


def manifest_layers(docker: str, target: Target, ref: str, env: Mapping[str, str]) -> list[dict]:
    """The layer descriptors of the pushed manifest (compressed sizes), through docker's own auth; [] if unknown."""
    cmd = [docker, "manifest", "inspect", *(["--insecure"] if is_loopback(target.host) else []), ref]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **env, "DOCKER_CLI_EXPERIMENTAL": "enabled"}
    )
    try:
        return list(json.loads(proc.stdout)["layers"]) if proc.returncode == 0 else []
    except (json.JSONDecodeError, KeyError, TypeError):
        return []


def verify_by_digest(docker: str, by_digest: str, image_id: str, env: Mapping[str, str]) -> None:
    """Pull repo@digest and check it is the image we pushed: same ID (the digest of its config)."""
    merged = {**os.environ, **env}
    pull = subprocess.run([docker, "pull", "--quiet", by_digest], capture_output=True, text=True, env=merged)
    if pull.returncode != 0:
        raise UserError(
            f"`docker pull {by_digest}` failed after the push: {pull.stderr.strip() or pull.stdout.strip()}."
        )
    pulled = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", by_digest], capture_output=True, text=True, env=merged
    ).stdout.strip()
    if pulled != image_id:
        raise UserError(f"{by_digest} is image {pulled or 'unknown'}, not the pushed {image_id}: push again.")


def push_variant(
    docker: str,
    target: Target,
    variant: str,
    record: dict,
    env: Mapping[str, str],
    out_dir: Path,
    *,
    scan_gate: str = "",
    allow_dirty: bool = False,
) -> dict:
    """Tag and push one variant, verify it by digest, write out_dir/push-<variant>.json, return that record."""
    image = inspect_image(docker, record["id"], variant)
    # The image's own labels, not the build record's nor HEAD now: the tags must describe the image.
    labels = image["Config"].get("Labels") or {}
    version = image_version(labels, os.environ.get("IMAGE_VERSION"))
    revision, dirty = built_from(labels)
    tags = push_tags(variant, labels, version=version, revision=revision, allow_dirty=allow_dirty)
    if dirty:
        say(f"{variant}: built from uncommitted changes: pushed as {tags[0]} only (--allow-dirty)")
    elif not revision:
        say(f"{variant}: the image names no commit (built outside git?): no sha- tag")
    refs = [target.ref(tag) for tag in tags]
    for ref in refs:
        subprocess.run([docker, "tag", image["Id"], ref], check=True, capture_output=True)
    outputs: dict[str, PushOutput] = {}
    for ref in refs:
        with step(f"docker push {ref}"):
            outputs[ref] = docker_push(docker, ref, env, target=target, tagged=list(outputs))
    digests = {out.digest for out in outputs.values()}
    if len(digests) != 1:
        raise UserError(f"the tags of the {variant} image got different digests ({', '.join(sorted(digests))}).")
    digest = digests.pop()
    by_digest = f"{target.repository}@{digest}"
    with step(f"docker pull {by_digest} (verify)"):
        verify_by_digest(docker, by_digest, image["Id"], env)
    blobs = manifest_layers(docker, target, by_digest, env)
    if not blobs:
        say(f"{variant}: could not read the manifest back: layer sizes unknown")
    # The first push is the one that sent layers; the next tags only put the manifest again.
    layers = layer_report(image["RootFS"]["Layers"], outputs[refs[0]].statuses, blobs)
    result: PushRecord = {
        "variant": variant,
        "repository": target.repository,
        "digest": digest,
        "by_digest": by_digest,
        "image_id": image["Id"],
        "version": version,
        "tags": [ref.rsplit(":", 1)[1] for ref in refs],
        "refs": refs,
        "size": sum(layer["size"] or 0 for layer in layers) if blobs else None,
        "layers": layers,
        **totals(layers),
        "verified": True,
        "scan_gate": scan_gate,
        "dirty": dirty,
    }
    write_push(result, variant, out_dir)
    return result


def _count(entry: Mapping[str, int | None]) -> str:
    layers = f"{entry['layers']} layer{'s' if entry['layers'] != 1 else ''}"
    return layers if entry["bytes"] is None else f"{layers}, {human_bytes(entry['bytes'])}"


def summary(results: list[dict], missing: list[str]) -> str:
    """The end-of-push table (one row per variant), then how to pull each by digest."""
    rows = [
        (
            r["variant"],
            ", ".join(r["tags"]),
            r["digest"],
            "?" if r["size"] is None else human_bytes(r["size"]),
            _count(r["pushed"]),
            _count(r["reused"]),
            r.get("scan_gate") or "",
        )
        for r in results
    ]
    rows += [(variant, f"not built: run `nox -s 'build({variant})'`", "", "", "", "", "") for variant in missing]
    text = table(rows, ("variant", "tags", "digest", "size", "pushed", "already there", "scan gate"))
    pulls = "\n".join(f"  docker pull {r['by_digest']}" for r in results)
    return f"{text}\n\npull by digest:\n{pulls}"


def find_records(variants: Iterable[str]) -> tuple[list[tuple[str, ImageRecord]], list[str]]:
    """(variant, record) for each variant that has a build record, and the variants that have none."""
    found, missing = [], []
    for variant in variants:
        if image_path(variant).is_file():
            found.append((variant, load_image(variant)))
        else:
            missing.append(variant)
    return found, missing


@contextmanager
def registry_target(environ: Mapping[str, str]) -> Iterator[Target]:
    """The Target from REGISTRY and its credentials, or a local registry started here and stopped after."""
    repository = section("image")["repository"]
    user, password = environ.get("REGISTRY_USER") or None, environ.get("REGISTRY_PASSWORD") or None
    if environ.get("REGISTRY"):
        if bool(user) != bool(password):
            raise UserError("set both REGISTRY_USER and REGISTRY_PASSWORD, or neither (to use your docker login).")
        host, path = parse_registry(environ["REGISTRY"])
        yield Target(host, target_repository(host, path, repository), user, password)
        return
    registry = start_registry()
    try:
        yield Target(registry.host, target_repository(registry.host, "", repository), registry.user, registry.password)
    finally:
        stop_registry(registry)


@contextmanager
def docker_login(docker: str, target: Target) -> Iterator[dict[str, str]]:
    """Environment for docker commands: logged in to target in a private, temporary DOCKER_CONFIG.

    Never the user's ~/.docker: the credentials live only as long as this command. Without
    REGISTRY_USER the user's own docker configuration (and any `docker login` there) is used.
    """
    status = ping(target.url)
    if status not in (200, 401):
        raise UserError(f"{target.url}/v2/ answered {status}: REGISTRY does not point at a registry.")
    if not target.user:
        say(f"no REGISTRY_USER: pushing with your own docker login for {target.host}, if any")
        yield {}
        return
    try:
        with temporary_login(docker, target.host, target.user, target.password) as env:
            say(f"logged in to {target.host} as {target.user} (credentials in a temporary DOCKER_CONFIG)")
            yield env
    except LoginError as exc:  # raised only by the login itself, before the block runs
        raise login_failure(exc.output, target=target) from exc


def check_scan_gates(records: list[tuple[str, ImageRecord]], *, skip: bool) -> dict[str, str]:
    """variant -> how it passed the scan gate; a UserError for the first that did not (unless skipped)."""
    if skip:
        for variant, _ in records:
            say(f"{variant}: pushing WITHOUT the scan gate (--skip-scan-gate)")
        return {variant: "skipped (--skip-scan-gate)" for variant, _ in records}
    notes = {variant: check_gate(variant, record["id"]) for variant, record in records}
    for note in notes.values():
        say(note)
    return notes


def push_all(
    variants: list[str],
    *,
    explicit: bool,
    out_dir: Path,
    environ: Mapping[str, str],
    skip_scan_gate: bool = False,
    allow_dirty: bool = False,
) -> str:
    """Push every variant that has a build record and passed the scan gate; return the summary."""
    records, missing = find_records(variants)
    if missing and explicit:
        raise UserError(f"no {missing[0]} image has been built: run `nox -s 'build({missing[0]})'` first.")
    if not records:
        raise UserError("no image variant has been built: run `nox -s build` first.")
    for variant in missing:
        say(f"{variant}: not built (no {image_path(variant).name}), so not pushed")
    # Before the engine or a registry is touched: an image built from uncommitted changes or one that
    # did not pass the scan is never sent anywhere. (push_variant checks the image's own labels again.)
    for variant, record in records:
        labels = record.get("labels") or {}
        refuse_dirty(variant, labels, revision=built_from(labels)[0], allow_dirty=allow_dirty)
    gates = check_scan_gates(records, skip=skip_scan_gate)
    docker = ensure_engine()
    results = []
    with registry_target(environ) as target, docker_login(docker, target) as env:
        say(f"pushing {', '.join(v for v, _ in records)} to {target.repository}")
        for variant, record in records:
            results.append(
                push_variant(
                    docker, target, variant, record, env, out_dir, scan_gate=gates[variant], allow_dirty=allow_dirty
                )
            )
    return summary(results, missing)


def main() -> None:
    """`python -m ci.publish.push [--variant cpu ...] [--out DIR] [--skip-scan-gate] [--allow-dirty]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="only these (default: every built one)")
    parser.add_argument("--out", type=Path, default=BUILD_DIR, help="where push-<variant>.json goes (%(default)s)")
    parser.add_argument(
        "--skip-scan-gate",
        action="store_true",
        help="push even without a passing `nox -s scan` of the image (printed, and recorded in push-<variant>.json)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="push an image built from uncommitted changes, as dirty-<commit>-<variant> only (never a release tag)",
    )
    args = parser.parse_args()
    text = push_all(
        args.variant or list(VARIANTS),
        explicit=bool(args.variant),
        out_dir=args.out,
        environ=os.environ,
        skip_scan_gate=args.skip_scan_gate,
        allow_dirty=args.allow_dirty,
    )
    say("push finished")
    print(text)


if __name__ == "__main__":
    main_guard(main)
