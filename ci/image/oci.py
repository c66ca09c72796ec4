"""Rewrite a built image so that the same inputs always give the same image ID, byte for byte.

`docker build` (20.10, BuildKit 0.8) stamps build times into file mtimes, the image config and its
history, and has no SOURCE_DATE_EPOCH support. Here the built image is exported (`docker save`),
every layer is rewritten in a canonical form, the config is rewritten with fixed times, and the
result is loaded back (`docker load`) under the requested tags:

- layer entries in path order, compared component by component (a directory right before its
  contents), whiteouts first in their directory, hard links last (after their targets, each set of
  hard-linked names stored once under its first name); mtime = `file_epoch`, no user or group
  names, no atime/ctime, only `SCHILY.xattr.*` extended headers kept;
- config `created` and every history `created` = `created_epoch`; builder-specific fields dropped;
  JSON with sorted keys and no whitespace, so the image ID (sha256 of the config) is stable.

File times are a constant (the base snapshot epoch), not the commit time: a layer whose content did
not change keeps its digest across commits, so a registry push sends only what changed. Normalized
layers are cached by the digest of the raw layer (.cache/layers/), so a model-only rebuild rewrites
only the model layer.
"""

from __future__ import annotations

import copy
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

from ci.project import CACHE_DIR, UserError, say, sha256_file

LAYER_CACHE = CACHE_DIR / "layers"
# Config keys that only describe the builder, never the image (and some carry build-time state).
BUILDER_KEYS = ("container", "container_config", "docker_version", "author", "comment")
CONTAINER_CONFIG_DROP = ("Hostname", "Domainname", "Image", "AttachStdin", "AttachStdout", "AttachStderr")
XATTR_PREFIX = "SCHILY.xattr."
WHITEOUT_PREFIX = ".wh."  # `.wh.<name>` deletes <name> of the lower layers (OCI image spec, layer.md)
OPAQUE_MARKER = ".wh..wh..opq"  # hides everything the lower layers have in its directory
# Bump when normalize_layer writes other bytes for the same input: the layer cache keys on it, so a
# rewrite made by an older version is never reused (it would give another image than a fresh clone).
LAYER_FORMAT = 2
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


def _path_key(name: str) -> tuple[tuple[int, str], ...]:
    """Sort key of a layer path: component by component; in each directory the opaque marker, then
    whiteouts, then the other entries.

    A whiteout applies only to lower layers, but an applier that acts on entries as they stream by
    (older Docker graph drivers: moby#17766) also deletes what this layer wrote before it, so the OCI
    spec asks for whiteouts before their siblings. A plain sort by name does not give that:
    `opt/-early` < `opt/.wh..wh..opq` ('-' < '.'). Comparing components keeps a directory and its
    contents together (as strings, `a.b` would fall between `a` and `a/c`).
    """
    return tuple((_whiteout_rank(part), part) for part in name.split("/"))


def _whiteout_rank(part: str) -> int:
    if part == OPAQUE_MARKER:
        return 0
    return 1 if part.startswith(WHITEOUT_PREFIX) else 2


def _canonical_hard_links(members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The members with every set of hard-linked names stored once, under its first name in path order.

    A tar writer stores a set's file under the name it met first and links the others to it, so which
    name holds the bytes depends on how it walked the tree. Here the first name in `_path_key` order
    gets the file (its type, bytes and metadata) and every other name of the set links to it; chains
    (c -> b -> a) end at that one name. A link whose target is not in this layer is kept as it is.
    """
    by_name = {m.name: m for m in members}
    sets: dict[str, list[tarfile.TarInfo]] = {}  # the file's name -> the links that resolve to it
    for member in members:
        if member.islnk() and (root := _link_root(member, by_name)) is not None:
            sets.setdefault(root.name, []).append(member)
    replaced: dict[int, tarfile.TarInfo] = {}
    for root_name, links in sets.items():
        root = by_name[root_name]
        first = min([root, *links], key=lambda m: _path_key(m.name))
        holder = copy.copy(root)  # keeps the offset of root's bytes: extractfile reads them under the new name
        holder.name = first.name
        replaced[id(first)] = holder
        for link in [root, *links]:
            if link is not first:
                moved = copy.copy(link)
                moved.type, moved.linkname, moved.size = tarfile.LNKTYPE, holder.name, 0
                replaced[id(link)] = moved
    return [replaced.get(id(m), m) for m in members]


def _link_root(link: tarfile.TarInfo, by_name: dict[str, tarfile.TarInfo]) -> tarfile.TarInfo | None:
    """The member that is not a hard link at the end of `link`'s chain, or None (missing, or a loop)."""
    seen = set()
    member = link
    while member is not None and member.islnk():
        if member.name in seen:
            return None
        seen.add(member.name)
        member = by_name.get(member.linkname)
    return member


def _entry_order(members: Iterable[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The canonical order of a layer's entries, whatever order they came in.

    Path order by `_path_key`: a directory comes right before its contents, and the opaque marker and
    whiteouts come first in their directory. Hard links come after every other entry, so their targets
    already exist when they are created (each set of hard links is first made canonical).
    """
    members = _canonical_hard_links(list(members))
    plain = sorted((m for m in members if not m.islnk()), key=lambda m: _path_key(m.name))
    links = sorted((m for m in members if m.islnk()), key=lambda m: _path_key(m.name))
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
    return f"sha256:{sha256_file(target)}", listing


class _HashingReader(io.RawIOBase):
    """Pass file data through to tarfile while hashing it (one read of each file, not two)."""

    def __init__(self, raw, digest) -> None:
        self.raw, self.digest = raw, digest

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(size)
        self.digest.update(chunk)
        return chunk


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


def _cache_key(raw_id: str, file_epoch: int) -> str:
    """Where the layer cache's index keeps the rewrite of a raw layer."""
    return f"{raw_id}@{file_epoch}@v{LAYER_FORMAT}"


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
    """Normalize the image `ref` and load the result under `tags`; return its ID and layers.

    Disk use stays near one raw layer plus its rewrite (the CUDA image's Python layer is 5.6 GB):
    `docker save` is read as a stream, each layer is written out only while it is rewritten, and
    the result is streamed into `docker load`.
    """
    raw = _inspect(docker, ref)
    if raw is None:
        raise UserError(f"image {ref} not found in the engine: build it first.")
    raw_ids = raw["RootFS"]["Layers"]
    index = _cache_index()
    cached = [index.get(_cache_key(raw_id, file_epoch)) for raw_id in raw_ids]
    cached = [c if c and (LAYER_CACHE / c["listing"]).is_file() else None for c in cached]
    # Layers the engine already holds (a prefix shared with a known image) need no bytes at all.
    known_prefix = []
    for entry in cached:
        if entry is None:
            break
        known_prefix.append(entry["diff_id"])
    present = _present_prefix(docker, known_prefix, known_images)
    wanted = {
        raw_id for i, (raw_id, entry) in enumerate(zip(raw_ids, cached, strict=True)) if entry is None or i >= present
    }
    work = Path(tempfile.mkdtemp(prefix="oci-", dir=CACHE_DIR if CACHE_DIR.exists() else None))
    try:
        config, rewritten = _stream_save(docker, ref, raw["Id"], wanted, work, index, file_epoch)
        _save_cache_index(index)
        diff_ids = [index[_cache_key(raw_id, file_epoch)]["diff_id"] for raw_id in raw_ids]
        listings = [index[_cache_key(raw_id, file_epoch)]["listing"] for raw_id in raw_ids]
        new_config = canonical_json(normalize_config(config, diff_ids, created_epoch))
        image_id = f"sha256:{hashlib.sha256(new_config).hexdigest()}"
        if _inspect(docker, image_id) is None:
            # Now that every normalized digest is known, layers an earlier build already loaded
            # (e.g. the same Python layer, rebuilt after the build cache was pruned) need no bytes.
            present = max(present, _present_prefix(docker, diff_ids, known_images))
            files = {
                diff_id: rewritten[raw_id]
                for raw_id, diff_id in zip(raw_ids, diff_ids, strict=True)
                if raw_id in rewritten
            }
            _load(docker, new_config, image_id, diff_ids, files, present, tags)
        for tag in tags:
            subprocess.run([docker, "tag", image_id, tag], check=True, capture_output=True)
        return NormalizedImage(image_id, raw["Id"], diff_ids, listings, len(rewritten))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stream_save(docker, ref, raw_image_id, wanted, work, index, file_epoch) -> tuple[dict, dict[str, Path]]:
    """Read `docker save` as a stream; rewrite the `wanted` raw layers; return the config and rewrites."""
    config_name = f"{raw_image_id.split(':')[1]}.json"
    config, rewritten = None, {}
    proc = subprocess.Popen([docker, "save", ref], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as stream:
        for member in stream:
            if member.name == config_name:
                config = json.loads(stream.extractfile(member).read())
            elif member.name.endswith("/layer.tar") and wanted - rewritten.keys():
                raw_tar = work / "raw-layer.tar"
                digest = hashlib.sha256()
                with stream.extractfile(member) as data, raw_tar.open("wb") as out:
                    for chunk in iter(lambda: data.read(COPY_BUFFER), b""):
                        digest.update(chunk)
                        out.write(chunk)
                raw_id = f"sha256:{digest.hexdigest()}"
                if raw_id in wanted and raw_id not in rewritten:
                    out_tar = work / f"layer-{len(rewritten)}.tar"
                    diff_id, listing = normalize_layer(raw_tar, out_tar, file_epoch)
                    name = f"{diff_id.split(':')[1]}.files.json.gz"
                    LAYER_CACHE.mkdir(parents=True, exist_ok=True)
                    with gzip.open(LAYER_CACHE / name, "wt") as fh:
                        json.dump(listing, fh)
                    index[_cache_key(raw_id, file_epoch)] = {"diff_id": diff_id, "listing": name}
                    rewritten[raw_id] = out_tar
                raw_tar.unlink()
    if proc.wait() != 0 or config is None:
        raise UserError(f"`docker save {ref}` failed: is the engine still running?")
    if missing := wanted - rewritten.keys():
        raise UserError(f"`docker save {ref}` did not contain layers {sorted(missing)}: build the image again.")
    return config, rewritten


def _load(docker, config_bytes, image_id, diff_ids, files, present, tags) -> None:
    """Stream a docker-archive of the normalized image into `docker load`.

    Layers the engine already holds (the first `present`) are not re-sent: `docker load` does not
    read a layer whose chain already exists, so an empty file stands in.
    """
    config_name = f"{image_id.split(':')[1]}.json"
    layers = [f"{diff_id.split(':')[1]}/layer.tar" for diff_id in diff_ids]
    manifest = canonical_json([{"Config": config_name, "RepoTags": list(tags), "Layers": layers}])
    say(f"loading the normalized image ({len(diff_ids) - present} of {len(diff_ids)} layers sent)")
    proc = subprocess.Popen(
        [docker, "load", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with tarfile.open(fileobj=proc.stdin, mode="w|") as out:
            out.copybufsize = COPY_BUFFER
            for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            for i, (diff_id, name) in enumerate(zip(diff_ids, layers, strict=True)):
                info = tarfile.TarInfo(name)
                if i < present:
                    out.addfile(info)
                    continue
                source = files.get(diff_id)
                if source is None:
                    raise UserError(f"layer {diff_id} is neither in the engine nor rewritten: build again.")
                info.size = source.stat().st_size
                with source.open("rb") as fh:
                    out.addfile(info, fh)
    except BrokenPipeError:
        pass  # docker load stopped reading: its stderr below says why
    stdout, stderr = proc.communicate()  # closes stdin: the end of the archive
    if proc.returncode != 0:
        raise UserError(f"`docker load` of the normalized image failed: {stderr.decode().strip()[-800:]}")
    if _inspect(docker, image_id) is None:
        raise UserError(f"the normalized image {image_id} did not appear after `docker load`: {stdout.decode()}")
