"""The secret scanner on planted secrets: each rule fires, look-alikes do not, every layer is read."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from ci.gate import secrets
from ci.project import UserError

# Planted secrets, assembled at run time so that this file itself holds none a scanner would flag.
AWS_KEY_ID = "AKIA" + "Q3EXAMPLE7KZ2MN4P"[:16]
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "9q2Lz8NwTb"
GITHUB_TOKEN = "ghp_" + "R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3s0nly"[:36]
HF_TOKEN = "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567"
SLACK_TOKEN = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE_KEY = "AIza" + "SyD3xAmpl3K3yTh4tIsF4k3F0rT3st1ng0Q"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" * 2
PRIVATE_KEY = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + PEM_BODY + "\n-----END RSA PRIVATE KEY-----\n"
GENERIC = "sk_live_9fK2mQ7xL4pR8vT1zW6yB3nC"


def rules(text: str) -> list[str]:
    """The rules that fire on `text`."""
    return [rule for rule, _, _ in secrets.scan_bytes(text.encode())]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (f"aws_access_key_id = {AWS_KEY_ID}\n", "aws-access-key-id"),
        (f'AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"\n', "aws-secret-access-key"),
        (f"token: {GITHUB_TOKEN}\n", "github-token"),
        (f"HF_TOKEN={HF_TOKEN}\n", "huggingface-token"),
        (f"slack = '{SLACK_TOKEN}'\n", "slack-token"),
        (f"key={GOOGLE_KEY}\n", "google-api-key"),
        (PRIVATE_KEY, "private-key"),
        (f'KEY = "{PRIVATE_KEY.replace(chr(10), chr(92) + "n")}"\n', "private-key"),  # escaped in a string
        (f'api_key = "{GENERIC}"\n', "generic-secret"),
        (f"client_secret: '{GENERIC}'\n", "generic-secret"),
    ],
)
def test_planted_secrets_are_found(text, rule):
    """Each rule finds its kind of secret, also inside code and config syntax."""
    assert rule in rules(text)


@pytest.mark.parametrize(
    "text",
    [
        'password = "changeme-changeme-changeme"\n',  # a placeholder
        'api_key = "your-api-key-goes-here-xxxx"\n',
        'token = "${GITHUB_TOKEN_FROM_THE_ENVIRONMENT}"\n',
        'secret = "aaaaaaaaaaaaaaaaaaaaaaaaaaaa"\n',  # no randomness
        'PEM_HEADER = "-----BEGIN PRIVATE KEY-----"\n',  # a parser's constant, no key material
        "the AKIA prefix marks AWS access keys\n",
        'password = "correct horse battery staple"\n',  # spaces: not a token
    ],
)
def test_look_alikes_are_not_findings(text):
    """Placeholders, constants and prose that resemble secrets are not reported."""
    assert rules(text) == []


def test_findings_name_the_line_and_never_show_the_secret():
    """A finding gives the line number and a redacted excerpt: the first four characters and the length."""
    (found,) = list(secrets.scan_bytes(f"a\nb\nx = {GITHUB_TOKEN}\n".encode()))
    rule, line, excerpt = found
    assert (rule, line) == ("github-token", 3)
    assert GITHUB_TOKEN not in excerpt
    assert excerpt == f"ghp_… ({len(GITHUB_TOKEN)} chars)"


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("app/.env", "env-file"),
        (".env.production", "env-file"),
        ("root/.netrc", "credentials-file"),
        ("home/u/.docker/config.json", "credentials-file"),
        ("home/u/.ssh/id_ed25519", "ssh-private-key-file"),
    ],
)
def test_secret_files_are_found_by_name(path, rule):
    """.env files and credential files are findings whatever they hold."""
    assert [r for r, _ in secrets.path_findings(path)] == [rule]


def test_env_templates_are_not_findings():
    """.env.example documents variables and holds no values."""
    assert secrets.path_findings("app/.env.example") == []
    assert secrets.path_findings("app/environment.py") == []


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    """An uncompressed tar; None content makes a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(name="archive")
def fixture_archive(tmp_path) -> Path:
    """A `docker save` archive of two layers: the first holds a .env and a key, the second deletes the .env."""
    layer1 = _tar(
        [
            ("app", None),
            ("app/.env", f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n".encode()),
            ("app/main.py", b"print('hello')\n"),
            ("app/model.bin", b"\0\0\0" + GITHUB_TOKEN.encode()),  # binary: content not read
            ("usr/bin/tool", b"#!/bin/sh\n"),
        ]
    )
    layer2 = _tar([("app/.wh..env", b""), ("etc/key.pem", PRIVATE_KEY.encode())])
    config = {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "2" * 64]}}
    manifest = [{"Config": "config.json", "RepoTags": None, "Layers": ["l1/layer.tar", "l2/layer.tar"]}]
    path = tmp_path / "image.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in [
            ("manifest.json", json.dumps(manifest).encode()),
            ("config.json", json.dumps(config).encode()),
            ("l1/layer.tar", layer1),
            ("l2/layer.tar", layer2),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_every_layer_is_scanned_even_what_a_later_layer_deletes(archive):
    """A secret deleted by a later layer still ships in the earlier one: it is found, in that layer."""
    scan, _ = secrets.scan_image_archive(archive, allow=[])
    found = {(f.rule, f.path, f.where) for f in scan.findings}
    assert ("env-file", "app/.env", "layer 111111111111") in found
    assert ("aws-access-key-id", "app/.env", "layer 111111111111") in found
    assert ("private-key", "etc/key.pem", "layer 222222222222") in found
    assert scan.skipped_binary == 1
    assert not any(f.path == "app/model.bin" for f in scan.findings)


def test_the_file_listing_applies_whiteouts(archive):
    """The merged listing (for the policies) no longer has the deleted file, and keeps the rest."""
    _, files = secrets.scan_image_archive(archive, allow=[])
    paths = {e["path"]: e["type"] for e in files.listing()}
    assert "app/.env" not in paths
    assert paths["app/main.py"] == "file"
    assert paths["app"] == "dir"
    assert "etc/key.pem" in paths


def test_an_opaque_whiteout_hides_a_whole_directory():
    """`.wh..wh..opq` hides everything lower layers had below that directory."""
    files = secrets.ImageFiles()
    for name, layer in [("opt/a/x", "l1"), ("opt/a/y", "l1"), ("opt/b", "l1"), ("opt/a/.wh..wh..opq", "l2")]:
        files.apply(tarfile.TarInfo(name), layer)
    assert [e["path"] for e in files.listing()] == ["opt/b"]


def test_the_allowlist_waives_by_rule_and_path(archive):
    """An allow-list entry waives only its rule on its path, and the waiver is reported."""
    allow = [secrets.AllowEntry("private-key", "etc/*.pem", "a test key")]
    scan, _ = secrets.scan_image_archive(archive, allow=allow)
    assert [f.path for f, _ in scan.allowed] == ["etc/key.pem"]
    assert {f.rule for f in scan.findings} == {"env-file", "aws-access-key-id"}
    assert secrets.unused_entries(allow, [scan]) == []


def test_an_allowlist_entry_without_a_reason_is_an_error(tmp_path):
    """Nothing is waived silently: rule, path and reason are all required."""
    path = tmp_path / "allow.yaml"
    path.write_text("allow:\n  - {rule: private-key, path: 'x/*'}\n")
    with pytest.raises(UserError, match="entry 1 has no reason"):
        secrets.load_allowlist(path)


def test_the_projects_allowlist_loads_and_every_entry_has_a_reason():
    """policies/secrets-allowlist.yaml is valid, and no entry waives a whole tree."""
    entries = secrets.load_allowlist()
    assert entries
    assert all(e.reason and not e.path.endswith("*") for e in entries)


def test_a_directory_is_scanned_with_paths_under_its_name(tmp_path):
    """The Bento is scanned as files on disk; findings read bento/<path>."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / ".env").write_text("X=1\n")
    (tmp_path / "src" / "service.py").write_text(f'TOKEN = "{HF_TOKEN}"\n')
    scan = secrets.scan_directory(tmp_path, "bento", allow=[])
    assert sorted((f.rule, f.path, f.line) for f in scan.findings) == [
        ("env-file", "bento/src/.env", 0),
        ("huggingface-token", "bento/src/service.py", 1),
    ]
