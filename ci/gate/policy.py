"""Evaluate the Rego policies in policies/ over what an image is made of, with regopy (offline).

One input document per image, built here from facts, with no judgement in Python:

- `dockerfile`: the Dockerfile the image was built from, parsed into stages and instructions,
  with ARG/ENV references resolved (the build arguments ci/image/build.py passes);
- `config`: `docker image inspect` of the image;
- `files`: the image's merged file listing (ci/gate/secrets.py reads every layer anyway);
- `packages`: the SBOM's packages (ci/gate/sbom.py) with versions and licences;
- `build.local_bases`: the base image this project built itself (ci/image/base.py).

Each `policies/<rule>.rego` is `package <rule>` with `deny contains msg if ...`; every message
starts with the rule's name. Only the files directly in policies/ are the gate's (and lint's):
policies/kubernetes/ judges rendered Kubernetes manifests, not an image (ci/deploy/policies.py).
A policy that fails to load or evaluate is reported as not run, never as passed. Data for the
policies (the licence allow-list) comes from policies/*.yaml.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ci.gate.sbom import cyclonedx_packages
from ci.project import ROOT, UserError

POLICY_DIR = ROOT / "policies"
LICENSES = POLICY_DIR / "licenses.yaml"
INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)(?:\s+(.*))?$", re.DOTALL)
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::([-+])([^}]*))?\}|(\w+))")
# The instructions whose arguments docker itself expands (RUN, CMD and the like are left to the shell).
EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "ONBUILD"}


@dataclass(frozen=True)
class PolicyResult:
    """One policy's verdict: its messages, or why it could not be evaluated."""

    rule: str
    path: Path
    denials: list[str] = field(default_factory=list)
    error: str | None = None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) with backslash continuations joined, comments dropped."""
    lines: list[tuple[int, str]] = []
    current, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by docker too
        if not current:
            start = number
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append((start, current + raw))
        current = ""
    if current:
        lines.append((start, current))
    return lines


def substitute(value: str, variables: dict[str, str]) -> str:
    """Docker's `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}`; an unknown variable stays as written."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(4)
        known = name in variables and variables[name] != ""
        if match.group(2) == "-":
            return variables[name] if known else match.group(3)
        if match.group(2) == "+":
            return match.group(3) if known else ""
        return variables[name] if name in variables else match.group(0)

    return VARIABLE.sub(replace, value)


def _arguments(rest: str) -> list[str]:
    """The arguments of ADD/COPY: JSON form or shell words."""
    rest = rest.strip()
    if rest.startswith("["):
        try:
            return [str(x) for x in json.loads(rest)]
        except ValueError:
            pass
    return shlex.split(rest, posix=True)


def _assignments(rest: str) -> dict[str, str]:
    """ARG/ENV `k=v k2=v2`, `ENV k v` (legacy) and `ARG k` (no default)."""
    words = shlex.split(rest, posix=True)
    if words and "=" not in words[0] and len(words) > 1:
        return {words[0]: " ".join(words[1:])}  # legacy `ENV key value with spaces`
    return {w.split("=", 1)[0]: (w.split("=", 1)[1] if "=" in w else "") for w in words}


def parse_dockerfile(text: str, path: str, build_args: dict[str, str] | None = None) -> dict:
    """A Dockerfile as the policies read it: stages with their resolved base and instructions."""
    build_args = dict(build_args or {})
    global_args: dict[str, str] = {}
    stages: list[dict] = []
    variables: dict[str, str] = {}
    for line, instruction in logical_lines(text):
        match = INSTRUCTION.match(instruction)
        if not match:
            continue
        cmd, rest = match.group(1).upper(), (match.group(2) or "").strip()
        if cmd == "ARG" and not stages:
            for key, default in _assignments(rest).items():
                global_args[key] = build_args.get(key, substitute(default, global_args))
            continue
        if cmd == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image_ref = words[0] if words else ""
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(
                {
                    "index": len(stages),
                    "line": line,
                    "from": image_ref,
                    "image": substitute(image_ref, global_args),
                    "name": name,
                    "instructions": [],
                }
            )
            variables = {}
            continue
        if not stages:
            raise UserError(f"{path} line {line}: `{cmd}` before the first FROM; fix the Dockerfile.")
        entry: dict = {"cmd": cmd, "line": line, "raw": rest}
        if cmd == "ARG":
            for key, default in _assignments(rest).items():
                if key in build_args:
                    variables[key] = build_args[key]
                elif key in global_args and not default:
                    variables[key] = global_args[key]
                else:
                    variables[key] = substitute(default, variables)
        elif cmd == "ENV":
            for key, value in _assignments(rest).items():
                variables[key] = substitute(value, variables)
        value = substitute(rest, variables) if cmd in EXPANDED else rest
        entry["value"] = value
        if cmd in ("ADD", "COPY"):
            words = [w for w in _arguments(value) if not w.startswith("--")]
            entry["flags"] = [w for w in _arguments(value) if w.startswith("--")]
            entry["sources"], entry["dest"] = words[:-1], words[-1] if words else ""
        stages[-1]["instructions"].append(entry)
    return {"path": path, "stages": stages}


def packages_from_cyclonedx(bom: dict) -> list[dict]:
    """name, version, type (python, deb, ...), purl and licences of every component of a CycloneDX BOM."""
    packages = []
    for component, purl, kind in cyclonedx_packages(bom):
        licenses = []
        for entry in component.get("licenses") or []:
            if "expression" in entry:
                licenses.append(entry["expression"])
            elif lic := entry.get("license"):
                licenses.append(lic.get("id") or lic.get("name") or "")
        packages.append(
            {
                "name": component.get("name", ""),
                "version": component.get("version", ""),
                "type": "python" if kind == "pypi" else kind,
                "purl": purl,
                "licenses": [x for x in licenses if x],
            }
        )
    return packages


def policy_files(directory: Path | None = None) -> list[Path]:
    """Every policy, sorted; none at all is an error (an empty gate must not pass).

    policies/*.rego only, never a subdirectory: policies/kubernetes/ holds the rules for the
    rendered manifests, which ci/deploy/policies.py evaluates over a different input.
    """
    directory = directory or POLICY_DIR
    files = sorted(directory.glob("*.rego"))
    if not files:
        raise UserError(f"no policy (*.rego) in {directory}: restore policies/ from the template.")
    return files


# The inputs a policy may read and still judge a Dockerfile by its text alone (config rules stay
# undefined without an image): these policies also run in `nox -s lint` (ci/lint/dockerfile.py).
DOCKERFILE_INPUTS = {"dockerfile", "config"}
INPUT_KEY = re.compile(r"\binput\.(\w+)")


def dockerfile_policies(directory: Path | None = None) -> list[Path]:
    """The policies that read the Dockerfile and nothing but it (and the image config, absent in lint)."""
    found = []
    for path in policy_files(directory):
        inputs = set(INPUT_KEY.findall(path.read_text()))
        if "dockerfile" in inputs and inputs <= DOCKERFILE_INPUTS:
            found.append(path)
    return found


def describe(path: Path, width: int = 100) -> str:
    """A policy's first comment sentence (what it requires), for the summary."""
    comment = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("# ").strip())
    sentence = " ".join(comment).split(": ")[0].split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= width else sentence[: width - 1] + "…"


def policy_data(licenses: Path | None = None) -> dict:
    """The data documents the policies read (data.licenses)."""
    licenses = licenses or LICENSES
    data = yaml.safe_load(licenses.read_text()) if licenses.is_file() else None
    if not isinstance(data, dict):
        raise UserError(f"{licenses} is missing or empty: restore it from the template.")
    for key in ("allowed", "aliases", "exceptions", "reviewed"):
        data.setdefault(key, [] if key != "aliases" else {})
    for entry in data["reviewed"] + data["exceptions"]:
        if not str(entry.get("evidence") or entry.get("reason") or "").strip():
            raise UserError(f"{licenses}: {entry} says neither `evidence` nor `reason`: every exception needs one.")
    # JSON-only values: PyYAML reads `version: 0.1` as a float; package versions are strings.
    data["reviewed"] = [{**r, "version": str(r.get("version", ""))} for r in data["reviewed"]]
    return {"licenses": data}


def evaluate(
    document: dict, files: list[Path] | None = None, data: dict | None = None, library: list[Path] | None = None
) -> list[PolicyResult]:
    """Evaluate every policy over one input document; a broken policy becomes an error, not a pass.

    One interpreter holds every policy and the input (setting a 40 000-file input costs seconds);
    a policy that does not compile is left out of it and reported. If evaluating one policy breaks
    the interpreter, the others report errors too: never a pass. `library`: Rego modules the
    policies import (rules they share, no `deny` of their own); one that does not compile fails
    every policy.
    """
    from regopy import Interpreter  # a compiled extension: imported only when policies run

    files = policy_files() if files is None else files
    data = policy_data() if data is None else data
    rego = Interpreter()
    rego.add_data(data)
    errors: dict[str, str] = {}
    for path in library or []:
        try:
            rego.add_module(f"lib_{path.stem}", path.read_text())
        except Exception as exc:  # a shared module that does not compile: no policy can run
            text = f"the library {path.name} does not compile: {_error_text(exc)}"
            return [PolicyResult(p.stem, p, error=text) for p in files]
    for path in files:
        try:
            rego.add_module(path.stem, path.read_text())
        except Exception as exc:  # a syntax error: this policy did not run
            errors[path.stem] = _error_text(exc)
    rego.set_input(document)
    results = []
    for path in files:
        rule = path.stem
        if rule in errors:
            results.append(PolicyResult(rule, path, error=errors[rule]))
            continue
        try:
            results.append(PolicyResult(rule, path, _denials(rego, rule)))
        except Exception as exc:  # any failure of a policy means it did not run, never that it passed
            results.append(PolicyResult(rule, path, error=_error_text(exc)))
    return results


def _denials(rego, rule: str) -> list[str]:
    """The messages of data.<rule>.deny, checked to be a set of strings."""
    out = rego.query(f"x := data.{rule}.deny")
    # regopy aborts the process on .binding() of an undefined result: test its text first.
    if str(out) == "undefined" or not out.ok():
        raise RuntimeError(f"data.{rule}.deny is undefined: the file must be `package {rule}` with `deny contains`")
    denials = json.loads(out.binding("x").json())
    if not isinstance(denials, list) or not all(isinstance(d, str) for d in denials):
        raise RuntimeError(f"data.{rule}.deny is {denials!r}, not a set of messages: write `deny contains msg if`")
    return sorted(denials)


def _error_text(exc: Exception) -> str:
    """The first lines of a Rego error, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"
