"""Layer and config normalization (ci/image/oci.py): what a rewritten layer keeps, drops and how it orders entries.

Layer tars are built here with tarfile, run through `normalize_layer` and read back; no engine needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass

import pytest

from ci.image import oci

EPOCH = 1_700_000_000
# security.capability as setcap writes it (v2, cap_net_raw + cap_setuid): binary, not UTF-8.
CAPABILITY = bytes.fromhex("0100000280200000000000000000000000000000")
CAPABILITY_KEY = "SCHILY.xattr.security.capability"


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields) -> tuple[tarfile.TarInfo, bytes]:
    """A layer entry as a tar writer would make it; `fields` set TarInfo attributes (mode, uid, linkname...)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_712_345_678  # a build time: what normalization must remove
    info.uname = info.gname = "root"
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


@dataclass(frozen=True)
class Normalized:
    """A normalized layer, read back."""

    raw: bytes
    diff_id: str
    listing: list[dict]
    members: list[tarfile.TarInfo]
    contents: dict[str, bytes]  # regular files and hard links within the layer: the bytes they read as

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def __getitem__(self, name: str) -> tarfile.TarInfo:
        return next(m for m in self.members if m.name == name)


@pytest.fixture(name="normalize")
def fixture_normalize(tmp_path):
    """Write entries into a layer tar (in the order given), normalize it, and read the result back."""
    counter = iter(range(1000))

    def normalize(entries: list[tuple[tarfile.TarInfo, bytes]]) -> Normalized:
        n = next(counter)
        source, target = tmp_path / f"raw-{n}.tar", tmp_path / f"normalized-{n}.tar"
        with tarfile.open(source, "w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in entries:
                if info.isreg():
                    info.size = len(data)
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        diff_id, listing = oci.normalize_layer(source, target, EPOCH)
        raw = target.read_bytes()
        with tarfile.open(target) as tar:
            members = tar.getmembers()
            names = {m.name for m in members}
            readable = [m for m in members if m.isreg() or (m.islnk() and m.linkname in names)]
            contents = {m.name: tar.extractfile(m).read() for m in readable}
        return Normalized(raw, diff_id, listing, members, contents)

    return normalize


def test_modes_are_kept_with_setuid_setgid_and_sticky_bits(normalize):
    """Permission bits, including setuid, setgid and sticky, pass through unchanged."""
    modes = {"usr/bin/su": 0o4755, "usr/bin/wall": 0o2755, "tmp": 0o1777, "etc/shadow": 0o640, "app/run": 0o700}
    layer = normalize([entry(n, tarfile.DIRTYPE if n == "tmp" else tarfile.REGTYPE, mode=m) for n, m in modes.items()])
    assert {name: layer[name].mode for name in modes} == modes


def test_owners_are_kept_and_their_names_dropped(normalize):
    """Numeric uid and gid are kept; user and group names (which depend on the build host) are not."""
    layer = normalize([entry("home/app/.profile", uid=10001, gid=10002, uname="builder", gname="wheel")])
    member = layer["home/app/.profile"]
    assert (member.uid, member.gid, member.uname, member.gname) == (10001, 10002, "", "")
    assert b"builder" not in layer.raw
    assert b"wheel" not in layer.raw


def test_every_time_is_the_file_epoch(normalize):
    """mtime becomes the fixed epoch; access and change times in pax headers are dropped."""
    times = {"atime": "1712345679.123", "ctime": "1712345680.5"}
    layer = normalize([entry("etc", tarfile.DIRTYPE), entry("etc/hosts", data=b"127.0.0.1\n", pax_headers=times)])
    assert {m.mtime for m in layer.members} == {EPOCH}
    assert not any({"atime", "ctime", "mtime"} & m.pax_headers.keys() for m in layer.members)


def test_file_contents_and_the_listing(normalize):
    """Bytes are copied as they are; the listing records each file's sha256, and the diff ID is the tar's."""
    layer = normalize([entry("app/model.keras", data=b"weights" * 1000), entry("app/empty")])
    assert layer.contents == {"app/empty": b"", "app/model.keras": b"weights" * 1000}
    listed = {e["path"]: e for e in layer.listing}
    assert listed["app/model.keras"]["sha256"] == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert listed["app/model.keras"]["mode"] == "0o644"
    assert layer.diff_id == f"sha256:{hashlib.sha256(layer.raw).hexdigest()}"


def test_symlinks_keep_their_targets(normalize):
    """Relative, absolute and dangling symlinks keep their target, whatever it points to."""
    targets = {"usr/bin/python3": "python3.11", "etc/localtime": "/usr/share/zoneinfo/UTC", "lib/gone": "../nowhere"}
    layer = normalize([entry(n, tarfile.SYMTYPE, linkname=t, mode=0o777) for n, t in targets.items()])
    assert {n: (layer[n].type, layer[n].linkname) for n in targets} == {
        n: (tarfile.SYMTYPE, t) for n, t in targets.items()
    }


def test_hard_links_come_after_their_targets(normalize):
    """Every hard link follows all other entries, so its target exists when it is created; all names read the same."""
    layer = normalize(
        [
            entry("usr", tarfile.DIRTYPE),
            entry("usr/bin", tarfile.DIRTYPE),
            entry("usr/bin/perl", data=b"#!perl", mode=0o755),
            entry("usr/bin/perl5.36", tarfile.LNKTYPE, linkname="usr/bin/perl", mode=0o755),
            entry("zz-last", data=b"z"),
        ]
    )
    first_link = min(i for i, m in enumerate(layer.members) if m.islnk())
    assert all(m.islnk() for m in layer.members[first_link:])
    for i, member in enumerate(layer.members):
        if member.islnk():
            assert member.linkname in layer.names[:i]
    assert layer.contents["usr/bin/perl"] == layer.contents["usr/bin/perl5.36"] == b"#!perl"
    assert layer.raw.count(b"#!perl") == 1


def test_a_set_of_hard_links_is_stored_under_its_first_name(normalize):
    """Whichever name the writer stored the file under, the first name in path order holds it and chains end there."""
    layer = normalize(
        [
            entry("opt/z", data=b"shared", mode=0o750, uid=7),
            entry("opt/m", tarfile.LNKTYPE, linkname="opt/z", mode=0o750, uid=7),
            entry("opt/a", tarfile.LNKTYPE, linkname="opt/m", mode=0o750, uid=7),  # a chain: a -> m -> z
        ]
    )
    assert layer["opt/a"].isreg()
    assert (layer["opt/a"].mode, layer["opt/a"].uid) == (0o750, 7)
    assert [(m.name, m.linkname) for m in layer.members if m.islnk()] == [("opt/m", "opt/a"), ("opt/z", "opt/a")]
    assert set(layer.contents.values()) == {b"shared"}


def test_a_hard_link_to_a_file_outside_the_layer_is_kept(normalize):
    """A link whose target the layer does not hold is written as it came, not dropped or resolved."""
    layer = normalize([entry("bin/x", tarfile.LNKTYPE, linkname="bin/elsewhere")])
    assert (layer.members[0].type, layer.members[0].linkname) == (tarfile.LNKTYPE, "bin/elsewhere")


@pytest.mark.parametrize(
    ("name", "kind", "major", "minor"),
    [("dev/null", tarfile.CHRTYPE, 1, 3), ("dev/sda", tarfile.BLKTYPE, 8, 0), ("run/fifo", tarfile.FIFOTYPE, 0, 0)],
    ids=["char", "block", "fifo"],
)
def test_device_nodes_and_fifos_are_kept(normalize, name, kind, major, minor):
    """Character and block devices keep their type and major/minor numbers; FIFOs stay FIFOs."""
    layer = normalize([entry(name, kind, devmajor=major, devminor=minor, mode=0o666)])
    member = layer[name]
    assert (member.type, member.devmajor, member.devminor, member.mode, member.size) == (kind, major, minor, 0o666, 0)


def test_capabilities_and_xattrs_are_kept_other_pax_headers_dropped(normalize):
    """`SCHILY.xattr.*` (file capabilities included, byte for byte) survive; comments and tool records do not."""
    headers = {
        CAPABILITY_KEY: CAPABILITY.decode("utf-8", "surrogateescape"),  # how tarfile holds binary pax values
        "SCHILY.xattr.user.origin": "wheel",
        "comment": "built on runner-42",
        "LIBARCHIVE.creationtime": "1712345678",
        "SCHILY.fflags": "nodump",
    }
    layer = normalize([entry("usr/bin/ping", data=b"\x7fELF", mode=0o755, pax_headers=headers)])
    kept = layer["usr/bin/ping"].pax_headers
    assert kept[CAPABILITY_KEY].encode("utf-8", "surrogateescape") == CAPABILITY
    assert kept["SCHILY.xattr.user.origin"] == "wheel"
    # hdrcharset is tarfile's own marker that the record values are binary, written because of the capability.
    assert set(kept) - {"hdrcharset"} == {CAPABILITY_KEY, "SCHILY.xattr.user.origin"}
    assert CAPABILITY in layer.raw
    assert b"runner-42" not in layer.raw
    assert layer.listing[0]["xattrs"] == [CAPABILITY_KEY, "SCHILY.xattr.user.origin"]


WHITEOUT_LAYER = [
    entry("opt", tarfile.DIRTYPE),
    entry("opt/-early", data=b"-"),  # '-' sorts before '.': a plain sort by name puts it before the markers
    entry("opt/ app", data=b" "),
    entry("opt/+plus", tarfile.DIRTYPE),
    entry("opt/+plus/.wh.stale"),
    entry("opt/+plus/!bang", data=b"!"),
    entry("opt/.wh.-old"),
    entry("opt/.wh..wh..opq"),
    entry("opt/.wh.zz"),
    entry("opt/app", tarfile.DIRTYPE),
    entry("opt/app/.wh..wh..opq"),
    entry("opt/app/#new", data=b"#"),
    entry("opt/link", tarfile.LNKTYPE, linkname="opt/-early"),
]


def test_whiteouts_come_first_in_their_directory(normalize):
    """In each directory: the directory, its opaque marker, its other whiteouts, then everything else."""
    layer = normalize(WHITEOUT_LAYER)
    assert layer.names == [
        "opt",
        "opt/.wh..wh..opq",
        "opt/.wh.-old",
        "opt/.wh.zz",
        "opt/ app",
        "opt/+plus",
        "opt/+plus/.wh.stale",
        "opt/+plus/!bang",
        "opt/-early",
        "opt/app",
        "opt/app/.wh..wh..opq",
        "opt/app/#new",
        "opt/link",
    ]


@pytest.mark.parametrize("seed", range(5))
def test_whiteouts_precede_their_siblings_and_directories_their_contents(normalize, seed):
    """Whatever the input order: no entry comes before a whiteout of its directory, or before its own directory."""
    entries = list(WHITEOUT_LAYER)
    random.Random(seed).shuffle(entries)
    names = normalize(entries).names
    for i, name in enumerate(names):
        parent, _, base = name.rpartition("/")
        if base.startswith(oci.WHITEOUT_PREFIX):
            earlier = [n for n in names[:i] if n.startswith(f"{parent}/")]
            assert all(n.rpartition("/")[0] == parent and oci.WHITEOUT_PREFIX in n for n in earlier)
            if base == oci.OPAQUE_MARKER:
                assert earlier == []
        if parent in names:
            assert names.index(parent) < i


def layer_content(holder: str) -> list[tuple[tarfile.TarInfo, bytes]]:
    """One layer's content, as a writer that met `holder` first of the two hard-linked names stores it."""
    link = "app/bin/tool2" if holder == "app/bin/tool" else "app/bin/tool"
    capability = {CAPABILITY_KEY: CAPABILITY.decode("utf-8", "surrogateescape")}
    return [
        entry("app", tarfile.DIRTYPE),
        entry("app/.wh.old"),
        entry("app/bin", tarfile.DIRTYPE, mode=0o750),
        entry(holder, data=b"tool", mode=0o4755, uid=10001),
        entry(link, tarfile.LNKTYPE, linkname=holder, mode=0o4755, uid=10001),
        entry("app/current", tarfile.SYMTYPE, linkname="bin/tool"),
        entry("app/dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        entry("app/model", data=b"model", pax_headers=capability),
    ]


def test_the_same_content_in_another_order_gives_the_same_bytes(normalize):
    """Input order, build times, owner names, pax times and which hard link holds the file never reach the output."""
    first = layer_content(holder="app/bin/tool")
    # Another build: names in reverse order (tool2 now met first, so it holds the bytes), an hour later, as `ci`.
    second = sorted(layer_content(holder="app/bin/tool2"), key=lambda e: e[0].name, reverse=True)
    for info, _ in second:
        info.mtime += 3600
        info.uname = info.gname = "ci"
        info.pax_headers = {**info.pax_headers, "atime": "1712399999.25"}
    one, two = normalize(first), normalize(second)
    assert one.raw == two.raw
    assert one.diff_id == two.diff_id
    assert one.listing == two.listing


def test_layer_cache_keys_carry_the_epoch_and_the_format():
    """A rewrite is reused only for the same file epoch and the same normalizer version."""
    key = oci._cache_key("sha256:abc", EPOCH)
    assert key != oci._cache_key("sha256:abc", EPOCH + 1)
    assert key.endswith(f"@v{oci.LAYER_FORMAT}")


RAW_CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-04-05T19:34:38.123456789Z",
    "docker_version": "20.10.24+dfsg1",
    "author": "someone",
    "comment": "buildkit.dockerfile.v0",
    "container": "3f2a9c",
    "container_config": {"Hostname": "3f2a9c", "Cmd": ["/bin/sh"]},
    "config": {
        "Hostname": "3f2a9c",
        "Domainname": "",
        "Image": "sha256:0123",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "User": "10001",
        "Env": ["PATH=/usr/bin"],
        "Labels": {"org.opencontainers.image.title": "classifier — é"},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:raw1", "sha256:raw2"]},
    "history": [
        {"created": "2024-04-05T19:30:00Z", "created_by": "ADD rootfs.tar /", "author": "me", "comment": "base"},
        {"created": "2024-04-05T19:34:38Z", "created_by": "ENV PATH=/usr/bin", "empty_layer": True},
    ],
}


def test_config_times_are_fixed_and_builder_state_dropped():
    """`created` and every history time are the epoch; builder keys, host names and history authors are gone."""
    config = oci.normalize_config(RAW_CONFIG, ["sha256:n1", "sha256:n2"], EPOCH)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert not set(oci.BUILDER_KEYS) & config.keys()
    assert config["config"] == {
        "User": "10001",
        "Env": ["PATH=/usr/bin"],
        "Labels": {"org.opencontainers.image.title": "classifier — é"},
    }
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:n1", "sha256:n2"]}
    assert config["history"] == [
        {"created": "2023-11-14T22:13:20Z", "created_by": "ADD rootfs.tar /", "comment": "base"},
        {"created": "2023-11-14T22:13:20Z", "created_by": "ENV PATH=/usr/bin", "empty_layer": True},
    ]


def test_config_from_another_build_time_and_key_order_gives_the_same_image_id():
    """Two builds that differ only in times, builder state and key order serialize to the same bytes."""
    other = json.loads(json.dumps(RAW_CONFIG).replace("2024-04-05", "2025-01-01"))
    other = dict(reversed(list(other.items())))
    other["container"], other["docker_version"] = "9e8d7c", "26.1.0"
    one = oci.canonical_json(oci.normalize_config(RAW_CONFIG, ["sha256:n1"], EPOCH))
    two = oci.canonical_json(oci.normalize_config(other, ["sha256:n1"], EPOCH))
    assert one == two


def test_canonical_json_is_sorted_compact_utf8():
    """Sorted keys, no whitespace between tokens, non-ASCII written as UTF-8 (not \\u escapes)."""
    data = {"b": [1, {"d": 2, "c": "é"}], "a": None}
    assert oci.canonical_json(data) == '{"a":null,"b":[1,{"c":"é","d":2}]}'.encode()


def test_rfc3339_is_utc_to_the_second():
    """Epoch seconds become the UTC timestamp form image configs use."""
    assert oci.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert oci.rfc3339(EPOCH) == "2023-11-14T22:13:20Z"


def test_gnu_layers_and_long_names_are_read(tmp_path):
    """A layer in GNU tar format (a long name in a longname record) is read, and written out as pax."""
    source, target = tmp_path / "gnu.tar", tmp_path / "out.tar"
    with tarfile.open(source, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("a" * 150)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    _, listing = oci.normalize_layer(source, target, EPOCH)
    with tarfile.open(target) as tar:
        assert tar.getnames() == ["a" * 150]
        assert tar.getmembers()[0].pax_headers == {"path": "a" * 150}
    assert listing[0]["path"] == "a" * 150
