"""Download the serving image's wheels on the host, checked against the hashed lock.

The image build has no network (`docker build --network none`), and containers here do not trust
the TLS proxy anyway, so pip runs on the host: `pip download --require-hashes` into a cache pool
(.cache/wheels/), then build/wheelhouse/ is made of hard links to exactly the files the lock
names. A second build downloads nothing; a lock change downloads only what is new.

The pool's index only spares hashing unchanged files while looking for wheels; before it returns,
`assemble` hashes every wheel of the wheelhouse again, from its bytes, against the lock. pip's own
wheel comes first: inside the build it is what checks every other wheel's hash, and nothing checks it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from ci.locks import LockError, Pin, canonical, parse_lock
from ci.project import BUILD_DIR, CACHE_DIR, SERVE_LOCK, UserError, human_bytes, main_guard, run, say, sha256_file, step

POOL = CACHE_DIR / "wheels"
WHEELHOUSE = BUILD_DIR / "wheelhouse"
INDEX = POOL / "index.json"  # file name -> [size, mtime_ns, sha256], so hashes are computed once
PIP = "pip"  # the installer the image build runs from its wheel (ci/image/build.py, the Dockerfile)
# The image runs Debian bookworm's CPython 3.11 on x86-64 with glibc 2.36: ask pip for exactly
# that, whatever Python or OS the host runs (a GitHub runner may have another Python).
MANYLINUX = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
LEGACY = ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
TARGET = ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"] + [
    arg for tag in MANYLINUX + LEGACY for arg in ("--platform", tag)
]


def _load_index() -> dict[str, list]:
    return json.loads(INDEX.read_text()) if INDEX.exists() else {}


def pool_hashes() -> dict[str, Path]:
    """sha256 -> file for every wheel in the pool (hashing only files that changed)."""
    index, fresh = _load_index(), {}
    by_hash: dict[str, Path] = {}
    for path in sorted(POOL.glob("*.whl")):
        stat = path.stat()
        entry = index.get(path.name)
        if not entry or entry[:2] != [stat.st_size, stat.st_mtime_ns]:
            entry = [stat.st_size, stat.st_mtime_ns, sha256_file(path)]
        fresh[path.name] = entry
        by_hash[entry[2]] = path
    POOL.mkdir(parents=True, exist_ok=True)
    INDEX.write_text(json.dumps(fresh, indent=1, sort_keys=True))
    return by_hash


def missing_pins(pins: list[Pin], by_hash: dict[str, Path]) -> list[Pin]:
    """Pins with no wheel of an allowed hash in the pool."""
    return [pin for pin in pins if not pin.hashes & by_hash.keys()]


def download(pins: list[Pin]) -> None:
    """pip download the given pins (with their hashes) into the pool."""
    POOL.mkdir(parents=True, exist_ok=True)
    req = POOL / "download-requirements.txt"
    req.write_text(
        "".join(
            f"{p.name}=={p.version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(p.hashes)) + "\n" for p in pins
        )
    )
    with step(f"downloading {len(pins)} wheels into {POOL}"):
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--require-hashes",
                "--no-deps",
                "--only-binary=:all:",
                "--progress-bar",
                "on",
                *TARGET,
                "-d",
                str(POOL),
                "-r",
                str(req),
            ]
        )


def verify_wheels(pins: list[Pin], chosen: dict[str, Path], sources: dict[str, Path], lock: Path) -> None:
    """Hash each chosen wheel, pip's first, and fail on one the lock does not allow for its pin.

    `sources` names the pool file behind each wheel: that cached file is the one to delete, since the
    wheelhouse is linked from it again on every build.
    """
    for pin in sorted(pins, key=lambda p: canonical(p.name) != PIP):
        wheel = chosen[pin.name]
        if (actual := sha256_file(wheel)) not in pin.hashes:
            raise UserError(
                f"{sources[pin.name]} has sha256 {actual}, which {lock.name} does not allow for "
                f"{pin.name}=={pin.version}: delete that file and run the build again to download it anew."
            )


def assemble(lock: Path = SERVE_LOCK, wheelhouse: Path = WHEELHOUSE) -> dict[str, Path]:
    """Make `wheelhouse` hold exactly one wheel per pin of `lock`; return name -> wheel path."""
    if not lock.is_file():
        raise UserError(f"{lock.name} is missing: run `nox -s lock`.")
    try:
        pins = parse_lock(lock.read_text())
    except LockError as exc:
        raise UserError(str(exc)) from exc
    by_hash = pool_hashes()
    if todo := missing_pins(pins, by_hash):
        download(todo)
        by_hash = pool_hashes()
        if still := missing_pins(pins, by_hash):
            names = ", ".join(f"{p.name}=={p.version}" for p in still)
            raise UserError(f"no cp311 manylinux wheel matching the lock for {names}: build one or change the pin.")
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    wheelhouse.mkdir(parents=True)
    chosen: dict[str, Path] = {}
    sources: dict[str, Path] = {}
    for pin in pins:
        source = next(by_hash[h] for h in sorted(pin.hashes) if h in by_hash)
        target = wheelhouse / source.name
        try:
            os.link(source, target)  # hard link: no copy of ~350 MB per build
        except OSError:
            shutil.copy2(source, target)
        chosen[pin.name], sources[pin.name] = target, source
    with step(f"hashing the {len(chosen)} wheels again against {lock.name} ({PIP} first)"):
        verify_wheels(pins, chosen, sources, lock)
    total = sum(p.stat().st_size for p in chosen.values())
    say(f"wheelhouse: {len(chosen)} wheels, {human_bytes(total)} in {wheelhouse}")
    return chosen


def main() -> None:
    """`python -m ci.image.wheelhouse`: assemble build/wheelhouse for requirements-serve.lock."""
    assemble()


if __name__ == "__main__":
    main_guard(main)
