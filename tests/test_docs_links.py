"""The user docs hold together (issue 19): every relative link in README.md and docs/ leads to a
file that exists (and to a heading there, for #anchors), every error class in errors.py has its
entry in docs/troubleshooting.md, and README stays a landing page."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ovos_stt_plugin_google_apikey import errors

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set:
    """GitHub's anchors for the page's headings: lower case, punctuation but - and _ dropped,
    spaces to hyphens."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", head.strip().lower()).replace(" ", "-") for head in heads}


def links(page: Path):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)                    # code spans are not links
    for target in LINK.findall(text):
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):      # http:, https:, mailto:
            yield target


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert broken == [], f"{page.name}: {broken}"


def test_the_manual_is_all_there_and_linked_from_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in ("configuration", "server", "streaming", "home-assistant", "performance",
                 "security", "troubleshooting", "development"):
        assert (REPO / "docs" / f"{name}.md").exists(), name
        assert f"](docs/{name}.md)" in readme, name


def test_readme_is_a_landing_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 220
    assert readme.splitlines().index("## Getting a Google API key") < 80       # near the top
    # no history of the project's own runs in user text
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"\bmain at [0-9a-f]{7}|\bcommit [0-9a-f]{7}|team's notes|"
                             r"[Rr]un of 20\d\d-\d\d-\d\d", text), page.name


def test_every_error_class_has_its_troubleshooting_entry():
    text = (REPO / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    classes = [name for name, cls in inspect.getmembers(errors, inspect.isclass)
               if issubclass(cls, errors.GoogleSTTError)]
    assert len(classes) >= 16
    missing = [name for name in classes if name != "GoogleSTTError" and f"**`{name}`**" not in text]
    assert missing == []
