"""Rewrite a built image so that the same inputs always give the same image ID, byte for byte.

`docker build` (20.10, BuildKit 0.8) stamps build times into file mtimes, the image config and its
history, and has no SOURCE_DATE_EPOCH support. Here the built image is exported (`docker save`),
every layer is rewritten in a canonical form, the config is rewritten with fixed times, and the
result is loaded back (`docker load`) under the requested tags:

- layer entries sorted by name (hard links last, after their targets), mtime = `file_epoch`, no
  user or group names, no atime/ctime, only `SCHILY.xattr.*` extended headers kept;
- config `created` and every history `created` = `created_epoch`; builder-specific fields dropped;
  JSON with sorted keys and no whitespace, so the image ID (sha256 of the config) is stable.

File times are a constant (the base snapshot epoch), not the commit time: a layer whose content did
not change keeps its digest across commits, so a registry push sends only what changed. Normalized
layers are cached by the digest of the raw layer (.cache/layers/), so a model-only rebuild rewrites
only the model layer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ci.project import CACHE_DIR, UserError, say

LAYER_CACHE = CACHE_DIR / "layers"
# Config keys that only describe the builder, never the image (and some carry build-time state).
BUILDER_KEYS = ("container", "container_config", "docker_version", "author", "comment")
CONTAINER_CONFIG_DROP = ("Hostname", "Domainname", "Image", "AttachStdin", "AttachStdout", "AttachStderr")
XATTR_PREFIX = "SCHILY.xattr."
COPY_BUFFER = 4 << 20  # tarfile copies in 16 KiB chunks by default: slow for a 1.5 GB layer


@dataclass(frozen=True)
class LayerResult:
    """A normalized layer: its diff ID and the listing of its files (for explaining differences)."""

    diff_id: str
    listing: Path


@dataclass(frozen=True)
class NormalizedImage:
    """What `normalize_image` loaded."""

    id: str
    raw_id: str
    diff_ids: list[str]
    listings: list[str]
    rewritten_layers: int


def rfc3339(epoch: int) -> str:
    """Seconds since the epoch as the RFC 3339 UTC string OCI configs use."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(data: object) -> bytes:
    """JSON with sorted keys and no insignificant whitespace."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _entry_order(members: Iterable[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """Sorted by name; hard links after everything else so their targets already exist."""
    members = list(members)
    plain = sorted((m for m in members if not m.islnk()), key=lambda m: m.name)
    links = sorted((m for m in members if m.islnk()), key=lambda m: m.name)
    return plain + links


def _canonical_info(member: tarfile.TarInfo, file_epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.type = member.type
    info.mode = member.mode
    info.uid, info.gid = member.uid, member.gid
    info.uname = info.gname = ""
    info.size = member.size if member.isreg() else 0
    info.linkname = member.linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    info.mtime = file_epoch
    info.pax_headers = {k: v for k, v in sorted(member.pax_headers.items()) if k.startswith(XATTR_PREFIX)}
    return info


def normalize_layer(source: Path, target: Path, file_epoch: int) -> tuple[str, list[dict]]:
    """Rewrite the layer tar `source` canonically into `target`; return its diff ID and listing."""
    listing: list[dict] = []
    with tarfile.open(source, "r:") as src, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as dst:
        dst.copybufsize = COPY_BUFFER
        for member in _entry_order(src.getmembers()):
            info = _canonical_info(member, file_epoch)
            entry = {
                "path": info.name,
                "type": info.type.decode(),
                "mode": oct(info.mode),
                "uid": info.uid,
                "gid": info.gid,
                "size": info.size,
                "link": info.linkname,
            }
            if member.isreg():
                digest = hashlib.sha256()
                with src.extractfile(member) as data:
                    buffer = _HashingReader(data, digest)
                    dst.addfile(info, buffer)
                entry["sha256"] = digest.hexdigest()
            else:
                dst.addfile(info)
            if info.pax_headers:
                entry["xattrs"] = sorted(info.pax_headers)
            listing.append(entry)
    return f"sha256:{sha256_path(target)}", listing


class _HashingReader(io.RawIOBase):
    """Pass file data through to tarfile while hashing it (one read of each file, not two)."""

    def __init__(self, raw, digest) -> None:
        self.raw, self.digest = raw, digest

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.digest.update(chunk)
        return chunk


def sha256_path(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_config(config: dict, diff_ids: list[str], created_epoch: int) -> dict:
    """The image config with fixed times, no builder state, and the normalized layers."""
    clean = {k: v for k, v in config.items() if k not in BUILDER_KEYS}
    clean["created"] = rfc3339(created_epoch)
    clean["config"] = {k: v for k, v in (config.get("config") or {}).items() if k not in CONTAINER_CONFIG_DROP}
    clean["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    history = []
    for entry in config.get("history", []):
        kept = {k: v for k, v in entry.items() if k in ("created_by", "empty_layer", "comment")}
        kept["created"] = rfc3339(created_epoch)
        history.append(kept)
    clean["history"] = history
    return clean


def _cache_index() -> dict:
    path = LAYER_CACHE / "index.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_cache_index(index: dict) -> None:
    LAYER_CACHE.mkdir(parents=True, exist_ok=True)
    (LAYER_CACHE / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))


def _inspect(docker: str, ref: str) -> dict | None:
    proc = subprocess.run([docker, "image", "inspect", ref], capture_output=True, text=True)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def _present_prefix(docker: str, diff_ids: list[str], known_images: Iterable[str]) -> int:
    """How many leading layers of `diff_ids` the engine already holds (via images we know of)."""
    best = 0
    for ref in known_images:
        image = _inspect(docker, ref)
        if not image:
            continue
        have = image["RootFS"]["Layers"]
        n = 0
        while n < min(len(have), len(diff_ids)) and have[n] == diff_ids[n]:
            n += 1
        best = max(best, n)
    return best


def normalize_image(
    docker: str,
    ref: str,
    tags: list[str],
    *,
    file_epoch: int,
    created_epoch: int,
    known_images: Iterable[str] = (),
) -> NormalizedImage:
    """Normalize the image `ref` and load the result under `tags`; return its ID and layers."""
    raw = _inspect(docker, ref)
    if raw is None:
        raise UserError(f"image {ref} not found in the engine: build it first.")
    index = _cache_index()
    work = Path(tempfile.mkdtemp(prefix="oci-", dir=CACHE_DIR if CACHE_DIR.exists() else None))
    try:
        saved = work / "saved"
        saved.mkdir()
        proc = subprocess.Popen([docker, "save", ref], stdout=subprocess.PIPE)
        with tarfile.open(fileobj=proc.stdout, mode="r|") as stream:
            stream.copybufsize = COPY_BUFFER
            stream.extractall(saved, filter="tar")
        if proc.wait() != 0:
            raise UserError(f"`docker save {ref}` failed: is the engine still running?")
        (manifest,) = json.loads((saved / "manifest.json").read_text())
        config = json.loads((saved / manifest["Config"]).read_text())

        diff_ids, listings, rewritten, fresh = [], [], 0, {}
        # manifest.json lists the layer files in the order of rootfs.diff_ids: the raw digests are
        # known without hashing 1.5 GB again.
        for layer_path, raw_diff_id in zip(manifest["Layers"], config["rootfs"]["diff_ids"], strict=True):
            raw_tar = saved / layer_path
            key = f"{raw_diff_id}@{file_epoch}"
            cached = index.get(key)
            if cached and (LAYER_CACHE / cached["listing"]).is_file():
                diff_ids.append(cached["diff_id"])
                listings.append(cached["listing"])
                continue
            out = work / f"layer-{len(diff_ids)}.tar"
            diff_id, listing = normalize_layer(raw_tar, out, file_epoch)
            rewritten += 1
            name = f"{diff_id.split(':')[1]}.files.json.gz"
            LAYER_CACHE.mkdir(parents=True, exist_ok=True)
            with gzip.open(LAYER_CACHE / name, "wt") as fh:
                json.dump(listing, fh)
            index[key] = {"diff_id": diff_id, "listing": name}
            fresh[diff_id] = out
            diff_ids.append(diff_id)
            listings.append(name)
        _save_cache_index(index)

        new_config = canonical_json(normalize_config(config, diff_ids, created_epoch))
        image_id = f"sha256:{hashlib.sha256(new_config).hexdigest()}"
        if _inspect(docker, image_id) is None:
            _load(docker, work, saved, manifest, new_config, image_id, diff_ids, fresh, tags, known_images, file_epoch)
        for tag in tags:
            subprocess.run([docker, "tag", image_id, tag], check=True, capture_output=True)
        return NormalizedImage(image_id, raw["Id"], diff_ids, listings, rewritten)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load(docker, work, saved, manifest, config_bytes, image_id, diff_ids, fresh, tags, known_images, file_epoch):
    """Write a docker-archive holding the normalized image and `docker load` it.

    Layers the engine already holds (a prefix shared with an image we know) are not re-sent:
    `docker load` does not read a layer whose chain already exists, so an empty file stands in.
    """
    present = _present_prefix(docker, diff_ids, known_images)
    archive = work / "archive"
    archive.mkdir()
    layers = []
    for i, diff_id in enumerate(diff_ids):
        rel = f"{diff_id.split(':')[1]}/layer.tar"
        (archive / rel).parent.mkdir(exist_ok=True)
        if i < present:
            (archive / rel).touch()
        elif diff_id in fresh:
            fresh[diff_id].replace(archive / rel)
        else:  # cached listing, but the engine lacks the layer: rewrite it again (deterministic)
            normalize_layer(saved / manifest["Layers"][i], archive / rel, file_epoch)
        layers.append(rel)
    (archive / f"{image_id.split(':')[1]}.json").write_bytes(config_bytes)
    (archive / "manifest.json").write_bytes(
        canonical_json([{"Config": f"{image_id.split(':')[1]}.json", "RepoTags": list(tags), "Layers": layers}])
    )
    tarball = work / "image.tar"
    with tarfile.open(tarball, "w") as out:
        for path in sorted(archive.rglob("*")):
            out.add(path, arcname=path.relative_to(archive).as_posix(), recursive=False)
    say(f"loading the normalized image ({len(diff_ids) - present} of {len(diff_ids)} layers sent)")
    proc = subprocess.run([docker, "load", "-q", "-i", str(tarball)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"`docker load` of the normalized image failed: {proc.stderr.strip()[-800:]}")
    if _inspect(docker, image_id) is None:
        raise UserError(f"the normalized image {image_id} did not appear after `docker load`: {proc.stdout.strip()}")
