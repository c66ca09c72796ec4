"""The README is a short index, and no relative link in it or in docs/ is dead."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 120

INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
INLINE_CODE = re.compile(r"(`+).*?\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# http:, https:, mailto: and the like point outside the repository: not checked here.
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def outside_fences(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks, where a "# comment" is no heading."""
    lines, fence = [], None
    for line in text.splitlines():
        marker = re.match(r"^\s{0,3}(`{3,}|~{3,})", line)
        if marker:
            if fence is None:
                fence = marker.group(1)
            elif marker.group(1).startswith(fence):
                fence = None
        elif fence is None:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a Markdown text; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in outside_fences(text):
        heading = HEADING.match(line)
        if not heading:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    """The target of every Markdown link in prose (inline and reference style), code left out."""
    targets = []
    for line in outside_fences(text):
        line = INLINE_CODE.sub("", line)
        targets.extend(INLINE_LINK.findall(line))
        reference = REFERENCE_LINK.match(line)
        if reference:
            targets.append(reference.group(1))
    return targets


def dead_links(page: Path) -> list[str]:
    """Each relative link of a page whose file, or whose #anchor in that file, does not exist."""
    dead = []
    for target in links(page.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        path = unquote(path)
        if not path:
            resolved = page
        elif path.startswith("/"):
            resolved = ROOT / path.lstrip("/")
        else:
            resolved = page.parent / path
        if not resolved.exists():
            dead.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
            dead.append(f"{target}: no heading #{anchor} in {resolved.name}")
    return dead


def test_readme_is_an_index_of_at_most_120_lines():
    """The README stays a short index; the detail lives in docs/."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    """Every relative link names an existing file, and every #anchor a heading of that file."""
    assert dead_links(page) == []


def test_readme_links_every_docs_page():
    """Every page under docs/ can be reached from the README's index."""
    targets = links(README.read_text(encoding="utf-8"))
    linked = {(README.parent / unquote(t.partition("#")[0])).resolve() for t in targets}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert PAGES[1:], "docs/ holds no page"
    assert unlinked == []


def test_dead_links_names_a_missing_file_and_a_missing_anchor(tmp_path):
    """A link to a file that is not there, or to a heading the file lacks, is reported; good ones are not."""
    (tmp_path / "other.md").write_text("# Other\n\n## What is guaranteed\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#what-is-guaranteed) [self](#page) [web](https://example.com/x.md)\n"
        "[gone](missing.md) [wrong](other.md#reproducible-images) [nothing](#nowhere)\n",
        encoding="utf-8",
    )
    assert dead_links(page) == [
        "missing.md: no such file",
        "other.md#reproducible-images: no heading #reproducible-images in other.md",
        "#nowhere: no heading #nowhere in page.md",
    ]


def test_slug_follows_githubs_rule():
    """Lowercase, spaces to '-', punctuation other than '-' and '_' dropped, code marks removed."""
    assert slug("What is guaranteed") == "what-is-guaranteed"
    assert slug("CI/CD") == "cicd"
    assert slug("The `dvc repro` check") == "the-dvc-repro-check"
    assert slug("`POST /predict`") == "post-predict"
    assert slug("The 5xx that remain") == "the-5xx-that-remain"
    assert slug("snake_case and kebab-case") == "snake_case-and-kebab-case"


def test_anchors_skip_code_blocks_and_number_repeats():
    """A '# comment' in a fenced block is no heading; a repeated heading gets a -1 suffix."""
    text = "# Title\n\n```sh\n# the signature\n```\n\n## Notes\n\n## Notes\n"
    assert anchors(text) == {"title", "notes", "notes-1"}


def test_links_ignore_code_and_keep_anchors():
    """Links in code spans or fenced blocks are not links; a link keeps its #anchor."""
    text = "See [a](a.md#x) and `[b](b.md)`.\n\n```\n[c](c.md)\n```\n\n[ref]: d.md\n![img](e.png)\n"
    assert links(text) == ["a.md#x", "d.md", "e.png"]
