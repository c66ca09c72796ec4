"""Find secrets in every layer of an image and in the Bento: keys, tokens, private keys, .env files.

Offline and pattern-based, like gitleaks or trivy's secret scanner: each rule has a few keywords
(a file that contains none is not searched with the rule's regex, which keeps a 1.5 GB layer of
site-packages to a minute) and a regex; the generic `key = "..."` rule also wants the value to look
random (Shannon entropy), so `password = "changeme"` in a docstring is no finding. Files with a NUL
byte in their first 8 KiB (compiled code, models) and files over MAX_SCAN_BYTES are not read, only
their paths are checked; the summary counts them.

Every layer is scanned, not only the merged filesystem: a secret deleted by a later layer still
ships in the earlier one. Findings print a redacted excerpt, never the secret.

Known non-secrets (test keys inside third-party packages) are waived in
policies/secrets-allowlist.yaml, by rule and path, each with a reason; an entry without a reason
is an error, so nothing is waived silently.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import yaml

from ci.project import ROOT, UserError

ALLOWLIST = ROOT / "policies" / "secrets-allowlist.yaml"
MAX_SCAN_BYTES = 8 << 20  # text files larger than this are logs or data, not configuration
BINARY_SNIFF = 8192
MIN_ENTROPY = 3.5  # bits per character: random tokens sit above 4, English words and placeholders below 3.5
PLACEHOLDER = re.compile(rb"(?i)(x{4,}|\*{4,}|your|example|sample|dummy|changeme|placeholder|redacted|<|>|\$\{|\{\{)")


@dataclass(frozen=True)
class Rule:
    """One kind of secret: a regex, and keywords that must appear for the regex to be tried."""

    id: str
    description: str
    keywords: tuple[bytes, ...]
    pattern: re.Pattern[bytes]
    entropy_group: int | None = None  # the group whose value must look random


RULES = (
    Rule(
        "aws-access-key-id",
        "AWS access key ID",
        (b"AKIA", b"ASIA"),
        re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ),
    Rule(
        "aws-secret-access-key",
        "AWS secret access key assignment",
        (b"aws_secret", b"AWS_SECRET", b"aws-secret"),
        re.compile(rb"(?i)aws[_-]?secret[_-]?access[_-]?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})\b"),
        entropy_group=1,
    ),
    Rule(
        "github-token",
        "GitHub token",
        (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
        re.compile(rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{82})\b"),
    ),
    Rule(
        "huggingface-token",
        "Hugging Face access token",
        (b"hf_",),
        re.compile(rb"\bhf_[A-Za-z0-9]{34,40}\b"),
    ),
    Rule(
        "slack-token",
        "Slack token",
        (b"xox",),
        re.compile(rb"\bxox[baprs]-[0-9A-Za-z]{10,48}(?:-[0-9A-Za-z]{10,48})*\b"),
    ),
    Rule(
        "google-api-key",
        "Google API key",
        (b"AIza",),
        re.compile(rb"\bAIza[0-9A-Za-z_\-]{35}\b"),
    ),
    Rule(
        "private-key",
        "private key block (PEM/OpenSSH/PGP) with key material",
        (b"PRIVATE KEY",),
        # The header followed by key material (a real or an escaped newline, then base64 or PEM
        # headers): code that only names the header string, like a parser's constant, is no key.
        re.compile(
            rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:\r?\n|(?:\\r)?\\n)"
            rb"(?:Proc-Type:|Version:|Comment:|[A-Za-z0-9+/=]{40,})"
        ),
    ),
    Rule(
        "generic-secret",
        "high-entropy value assigned to a key, token, secret or password",
        (b"key", b"KEY", b"Key", b"token", b"TOKEN", b"Token", b"secret", b"SECRET", b"Secret", b"passw", b"PASSW"),
        re.compile(
            rb"(?i)\b(?:api[_-]?key|apikey|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token"
            rb"|private[_-]?token|password|passwd|secret|token)[\"']?\s*[:=]\s*[\"']([A-Za-z0-9_\-+/=.]{20,})[\"']"
        ),
        entropy_group=1,
    ),
)

# Files that are secrets by their name, whatever they hold.
PATH_RULES = (
    ("env-file", "a .env file (environment secrets)", re.compile(r"(^|/)\.env(\.[\w-]+)?$")),
    (
        "credentials-file",
        "a credentials file (.netrc, .pypirc, .git-credentials, AWS or docker credentials)",
        re.compile(r"(^|/)(\.netrc|\.pypirc|\.git-credentials|\.aws/credentials|\.docker/config\.json)$"),
    ),
    ("ssh-private-key-file", "an SSH private key file", re.compile(r"(^|/)id_(rsa|dsa|ecdsa|ed25519)$")),
)
# `.env.example` and friends document variables; they hold no values worth stealing.
ENV_TEMPLATES = re.compile(r"\.env\.(example|sample|template|dist)$")


@dataclass(frozen=True)
class Finding:
    """A secret found: which rule, where (a layer's diff ID, or `bento`), which file and line."""

    rule: str
    where: str
    path: str
    line: int
    excerpt: str

    def text(self) -> str:
        """One line for the summary: rule, place, redacted excerpt."""
        line = f":{self.line}" if self.line else ""
        return f"{self.rule}: {self.path}{line} ({self.where}) {self.excerpt}".rstrip()


@dataclass(frozen=True)
class AllowEntry:
    """A waived finding: rule (or `*`), a path glob, and why it is not a secret."""

    rule: str
    path: str
    reason: str

    def matches(self, finding: Finding) -> bool:
        """True when the finding's rule and path are this entry's."""
        return self.rule in ("*", finding.rule) and fnmatch.fnmatchcase(finding.path, self.path)


@dataclass
class SecretScan:
    """What a scan found and how much it read."""

    findings: list[Finding] = field(default_factory=list)
    allowed: list[tuple[Finding, AllowEntry]] = field(default_factory=list)
    files: int = 0
    bytes_read: int = 0
    skipped_binary: int = 0
    skipped_large: int = 0

    def to_json(self) -> dict:
        """A JSON-able report (findings are already redacted)."""
        return {
            "findings": [asdict(f) for f in self.findings],
            "allowed": [{**asdict(f), "reason": e.reason} for f, e in self.allowed],
            "files": self.files,
            "bytes_read": self.bytes_read,
            "skipped_binary": self.skipped_binary,
            "skipped_large": self.skipped_large,
        }


def load_allowlist(path: Path = ALLOWLIST) -> list[AllowEntry]:
    """The allow-list; an entry without rule, path or reason is a UserError (no silent waiver)."""
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    entries = []
    for i, item in enumerate(data.get("allow") or []):
        item = item or {}
        missing = [key for key in ("rule", "path", "reason") if not str(item.get(key) or "").strip()]
        if missing:
            raise UserError(
                f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: entry {i + 1} has no "
                f"{', '.join(missing)}: every waived secret needs a rule, a path and the reason it is not a secret."
            )
        entries.append(AllowEntry(str(item["rule"]), str(item["path"]), str(item["reason"]).strip()))
    return entries


def entropy(value: bytes) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def redact(value: bytes) -> str:
    """The first four characters and the length: enough to find it, not enough to use it."""
    text = value.decode("utf-8", "replace")
    return f"{text[:4]}… ({len(text)} chars)"


def looks_random(value: bytes) -> bool:
    """A value that could be a credential: long, random-looking, letters and digits, not a placeholder."""
    has_digit = any(48 <= c <= 57 for c in value)
    has_alpha = any(65 <= c <= 90 or 97 <= c <= 122 for c in value)
    return has_digit and has_alpha and entropy(value) >= MIN_ENTROPY and not PLACEHOLDER.search(value)


def scan_bytes(data: bytes) -> Iterator[tuple[str, int, str]]:
    """(rule, line, redacted excerpt) for every secret in `data`; one finding per secret.

    The rules run in order, the generic one last: a value an earlier rule already reported (an
    `HF_TOKEN = "hf_..."`) is not reported again as a generic secret.
    """
    taken: list[tuple[int, int]] = []
    for rule in RULES:
        if not any(word in data for word in rule.keywords):
            continue
        for match in rule.pattern.finditer(data):
            group = rule.entropy_group or 0
            value, (start, end) = match.group(group), match.span(group)
            if rule.entropy_group is not None and not looks_random(value):
                continue
            if any(start < b and a < end for a, b in taken):
                continue
            taken.append((start, end))
            yield rule.id, data.count(b"\n", 0, match.start()) + 1, redact(value)


def path_findings(path: str) -> list[tuple[str, str]]:
    """(rule, description) for a file that is a secret by its name."""
    if ENV_TEMPLATES.search(path):
        return []
    return [(rule, text) for rule, text, pattern in PATH_RULES if pattern.search(path)]


class _Scanner:
    """Collects findings for one scan, applying the allow-list as it goes."""

    def __init__(self, allow: list[AllowEntry]) -> None:
        self.allow = allow
        self.result = SecretScan()

    def add(self, finding: Finding) -> None:
        entry = next((e for e in self.allow if e.matches(finding)), None)
        if entry:
            self.result.allowed.append((finding, entry))
        else:
            self.result.findings.append(finding)

    def file(self, where: str, path: str, size: int, read: IO[bytes] | None) -> None:
        """Check one regular file: its name always, its content when it is text of a sane size."""
        self.result.files += 1
        for rule, text in path_findings(path):
            self.add(Finding(rule, where, path, 0, text))
        if read is None:
            return
        if size > MAX_SCAN_BYTES:
            self.result.skipped_large += 1
            return
        data = read.read()
        self.result.bytes_read += len(data)
        if b"\0" in data[:BINARY_SNIFF]:
            self.result.skipped_binary += 1
            return
        for rule, line, excerpt in scan_bytes(data):
            self.add(Finding(rule, where, path, line, excerpt))


def _layer_paths(archive: tarfile.TarFile) -> list[tuple[str, str]]:
    """(layer file in the archive, diff ID) for every layer of a `docker save` archive, oldest first."""
    manifest_member = archive.getmember("manifest.json")
    (manifest,) = json.load(archive.extractfile(manifest_member))
    config = json.load(archive.extractfile(archive.getmember(manifest["Config"])))
    return list(zip(manifest["Layers"], config["rootfs"]["diff_ids"], strict=True))


def iter_layers(archive_path: Path) -> Iterator[tuple[str, tarfile.TarFile]]:
    """(diff ID, streaming tar of the layer) for every layer of a `docker save` archive."""
    with tarfile.open(archive_path) as archive:
        for layer_file, diff_id in _layer_paths(archive):
            with tarfile.open(fileobj=archive.extractfile(archive.getmember(layer_file)), mode="r|") as layer:
                yield diff_id, layer


@dataclass
class ImageFiles:
    """The image's merged filesystem (whiteouts applied): path -> type, mode, size, layer."""

    entries: dict[str, dict] = field(default_factory=dict)

    def apply(self, member: tarfile.TarInfo, diff_id: str) -> None:
        """Add one layer entry, honouring OCI whiteouts (`.wh.<name>` and `.wh..wh..opq`)."""
        path = member.name.removeprefix("./").rstrip("/")
        parent, _, name = path.rpartition("/")
        if name == ".wh..wh..opq":  # opaque directory: hide everything the lower layers had below it
            prefix = f"{parent}/"
            self.entries = {p: e for p, e in self.entries.items() if not p.startswith(prefix)}
            return
        if name.startswith(".wh."):
            gone = f"{parent}/{name[4:]}" if parent else name[4:]
            self.entries = {p: e for p, e in self.entries.items() if p != gone and not p.startswith(f"{gone}/")}
            return
        kind = "dir" if member.isdir() else "symlink" if member.issym() else "link" if member.islnk() else "file"
        self.entries[path] = {
            "path": path,
            "type": kind,
            "mode": member.mode,
            "size": member.size if member.isreg() else 0,
            "target": member.linkname or "",
            "layer": diff_id,
        }

    def listing(self) -> list[dict]:
        """Every entry, sorted by path."""
        return [self.entries[p] for p in sorted(self.entries)]


def scan_image_archive(archive_path: Path, allow: list[AllowEntry] | None = None) -> tuple[SecretScan, ImageFiles]:
    """Scan every file of every layer of a `docker save` archive; also return the merged file listing."""
    scanner = _Scanner(load_allowlist() if allow is None else allow)
    files = ImageFiles()
    for diff_id, layer in iter_layers(archive_path):
        where = f"layer {diff_id.removeprefix('sha256:')[:12]}"
        for member in layer:
            files.apply(member, diff_id)
            if member.isreg():
                path = member.name.removeprefix("./")
                scanner.file(where, path, member.size, layer.extractfile(member))
    return scanner.result, files


def scan_directory(root: Path, where: str, allow: list[AllowEntry] | None = None) -> SecretScan:
    """Scan every file under `root` (the Bento); paths are reported as `<where>/<relative path>`."""
    scanner = _Scanner(load_allowlist() if allow is None else allow)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = f"{where}/{path.relative_to(root).as_posix()}"
        with path.open("rb") as fh:
            scanner.file(where, rel, path.stat().st_size, fh)
    return scanner.result


def summarize(scan: SecretScan) -> str:
    """`N files (X MiB read, B binary, L large skipped), K waived`."""
    mib = scan.bytes_read / (1 << 20)
    return (
        f"{scan.files} files, {mib:.0f} MiB read ({scan.skipped_binary} binary and "
        f"{scan.skipped_large} files over {MAX_SCAN_BYTES >> 20} MiB checked by name only), "
        f"{len(scan.allowed)} waived by {ALLOWLIST.relative_to(ROOT)}"
    )


def unused_entries(allow: Iterable[AllowEntry], scans: Iterable[SecretScan]) -> list[AllowEntry]:
    """Allow-list entries that waived nothing: candidates for removal (reported, not fatal)."""
    used = {id(entry) for scan in scans for _, entry in scan.allowed}
    return [entry for entry in allow if id(entry) not in used]
