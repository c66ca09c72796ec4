"""Read pip-compile locks and check that they are fresh, offline.

Re-running pip-compile to compare needs the network and would flag every new upstream release,
so freshness is checked structurally instead: every pin in a `.in` file appears in its lock at
exactly that version, every lock entry carries hashes, and the serving lock never disagrees
with the main lock (serving runs the versions the model was trained with). The Triton and the
tracking server's locks may disagree only where their `.in` file pins a package on purpose (numpy,
protobuf; graphene: the pins say why); `nox -s lock` compiles them against the main lock less those
packages (`constraints`). Standard
library only: the lint session runs it before anything else is installed.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as `python ci/locks.py` (nox, before any environment): the checkout is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ci.records import ROOT

# (input, lock, constraint lock or None): the pairs `nox -s lock` compiles.
LOCKS = (
    ("requirements.in", "requirements.lock", None),
    ("requirements-serve.in", "requirements-serve.lock", "requirements.lock"),
    ("requirements-cuda.in", "requirements-cuda.lock", "requirements.lock"),
    ("ci/nox-requirements.in", "ci/nox-requirements.txt", None),
    ("requirements-triton.in", "requirements-triton.lock", "requirements.lock"),
    ("requirements-tracking.in", "requirements-tracking.lock", "requirements.lock"),
)
# Locks whose `.in` may pin a package at another version than their constraint lock has: the
# Triton environment cannot share numpy and protobuf with TensorFlow's (requirements-triton.in), and
# the tracking server image needs a graphene the main lock cannot have (requirements-tracking.in).
OWN_PINS_WIN = {"requirements-triton.lock", "requirements-tracking.lock"}
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
INPUT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*([^\s;#]+))?")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


class LockError(Exception):
    """A lock is missing, malformed or stale."""


@dataclass(frozen=True)
class Pin:
    """One locked requirement: name, version and the hashes the lock allows."""

    name: str
    version: str
    hashes: frozenset[str]


def canonical(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> list[Pin]:
    """Read a pip-compile lock made with --generate-hashes; every pin must carry hashes."""
    pins: list[Pin] = []
    current: tuple[str, str] | None = None
    hashes: set[str] = set()
    for line in [*text.splitlines(), ""]:
        match = REQUIREMENT.match(line)
        if match or not line.startswith((" ", "\t")):
            if current:
                if not hashes:
                    raise LockError(f"{current[0]}=={current[1]} has no --hash: run `nox -s lock`.")
                pins.append(Pin(current[0], current[1], frozenset(hashes)))
            current, hashes = (match.group(1), match.group(2)) if match else None, set()
        if current:
            hashes.update(HASH.findall(line))
    return pins


def parse_input(text: str) -> dict[str, str | None]:
    """name -> pinned version (None when unpinned) for each requirement line of a `.in` file."""
    wanted: dict[str, str | None] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-") and (match := INPUT.match(line)):
            wanted[canonical(match.group(1))] = match.group(2)
    return wanted


def check_pair(source: str, lock: str, constraint: str | None, root: Path = ROOT) -> list[str]:
    """Problems that make `lock` stale with respect to `source` (and its constraint lock)."""
    src, lck = root / source, root / lock
    if not src.is_file() or not lck.is_file():
        return [f"{lock}: missing {source if not src.is_file() else lock}; run `nox -s lock`."]
    try:
        pins = {canonical(p.name): p for p in parse_lock(lck.read_text())}
    except LockError as exc:
        return [f"{lock}: {exc}"]
    problems = []
    for name, version in parse_input(src.read_text()).items():
        if name not in pins:
            problems.append(f"{lock}: {name} is in {source} but not locked; run `nox -s lock`.")
        elif version and pins[name].version != version:
            problems.append(
                f"{lock}: {name} is locked at {pins[name].version} but {source} pins {version}; run `nox -s lock`."
            )
    if constraint:
        outer = {canonical(p.name): p for p in parse_lock((root / constraint).read_text())}
        own = pinned_in(src.read_text()) if lock in OWN_PINS_WIN else set()
        for name, pin in pins.items():
            if name in outer and name not in own and outer[name].version != pin.version:
                other = outer[name].version
                problems.append(
                    f"{lock}: {name}=={pin.version} differs from {constraint} ({other}); re-lock with `nox -s lock`."
                )
    return problems


def pinned_in(text: str) -> set[str]:
    """The packages a `.in` file pins to a version (`name==version`), normalized."""
    return {name for name, version in parse_input(text).items() if version}


def constraints(lock: Path, source: Path) -> str:
    """`lock`'s pins as pip constraints, less the packages `source` pins itself (for a lock in OWN_PINS_WIN)."""
    own = pinned_in(source.read_text())
    return "".join(f"{p.name}=={p.version}\n" for p in parse_lock(lock.read_text()) if canonical(p.name) not in own)


def subset(lock: Path, names: list[str]) -> str:
    """The lines of `lock` for the given packages only, hashes included (for light sessions)."""
    pins = {canonical(p.name): p for p in parse_lock(lock.read_text())}
    missing = [n for n in names if canonical(n) not in pins]
    if missing:
        raise LockError(f"{', '.join(missing)} not in {lock.name}: add to requirements.in and run `nox -s lock`.")
    return "".join(
        f"{pins[canonical(n)].name}=={pins[canonical(n)].version} "
        + " ".join(f"--hash=sha256:{h}" for h in sorted(pins[canonical(n)].hashes))
        + "\n"
        for n in names
    )


def main(argv: list[str]) -> int:
    """`python ci/locks.py check`, `python ci/locks.py subset LOCK NAME...` or `... constraints LOCK IN`."""
    if argv[:1] == ["constraints"] and len(argv) == 3:
        sys.stdout.write(constraints(ROOT / argv[1], ROOT / argv[2]))
        return 0
    if argv[:1] == ["subset"] and len(argv) >= 3:
        sys.stdout.write(subset(ROOT / argv[1], argv[2:]))
        return 0
    if argv[:1] == ["check"]:
        problems = [p for pair in LOCKS for p in check_pair(*pair)]
        for problem in problems:
            print(f"stale lock: {problem}", file=sys.stderr)
        if not problems:
            print(f"locks fresh: {', '.join(lock for _, lock, _ in LOCKS)}")
        return 1 if problems else 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except LockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
