"""Every Markdown link, and every repository path in backticks, in README.md and docs/ exists."""

from __future__ import annotations

import re
import subprocess

import pytest

from harness import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`(?: at (?:commit )?([0-9a-f]{7,40}))?")  # "`path` at commit abc1234": the path then
# a path in backticks starts with one of the repository's own top-level folders or files
TOP = {p.name for p in REPO.iterdir() if not p.name.startswith(".")} - {"data", "lightning_logs"}
PLACEHOLDER = re.compile(r"[<>{}*$\[\] ]|\.\.\.|NAME|RUN|DIR")


def links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not t.startswith(("http://", "https://", "mailto:", "#"))]


def repository_paths(text: str) -> list[tuple[str, str]]:
    """(path, commit or "") for backticked words that name a file or folder of this repository (a test id's
    file, not its ``::name``); a commit when the text says the path is at that commit."""
    found = []
    for span, commit in CODE.findall(text):
        path = span.split("::")[0].rstrip(":,.")
        if path.split("/")[0] in TOP and "/" in path and not PLACEHOLDER.search(path):
            found.append((path, commit))
    return found


def exists(path: str, commit: str) -> bool:
    if not commit:
        return (REPO / path).exists()
    listed = subprocess.run(
        ["git", "ls-tree", commit, "--", path.rstrip("/")], cwd=REPO, capture_output=True, text=True
    )
    return listed.returncode == 0 and bool(listed.stdout.strip())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_and_path_on_the_page_exists(page):
    text = page.read_text()
    missing = [t for t in links(text) if not (page.parent / t.split("#")[0]).exists()]
    missing += [f"{p} {c}".strip() for p, c in repository_paths(text) if not exists(p, c)]
    assert missing == []


def test_the_checks_see_a_missing_link_and_path():
    text = "[the notes](results/nowhere/NOTES.md), `configs/none.yaml`, `tests/test_docs.py::x`, `configs/<recipe>.yaml`, `configs/best.yaml` at commit 9ba0eb0"
    assert links(text) == ["results/nowhere/NOTES.md"]
    assert repository_paths(text) == [
        ("configs/none.yaml", ""),
        ("tests/test_docs.py", ""),
        ("configs/best.yaml", "9ba0eb0"),
    ]
    assert not exists("configs/none.yaml", "") and exists("tests/test_docs.py", "")
    assert exists("configs/best.yaml", "9ba0eb0") and not exists("configs/none.yaml", "9ba0eb0")


def test_the_map_names_every_module_of_the_package():
    page = (REPO / "docs" / "architecture.md").read_text()
    modules = [p for p in (REPO / "cifar_lightning").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert [str(p.relative_to(REPO)) for p in modules if f"`{p.name}`" not in page] == []


POINTER = re.compile(r"\b((?:docs|results)/[\w./-]*\w\.(?:md|png|yaml|json|csv|ckpt))(?! at )")
CODE_FILES = [
    *(REPO / "cifar_lightning").rglob("*.py"),
    *(REPO / "configs").rglob("*.yaml"),
    REPO / "app.py",
    REPO / "requirements.txt",
]


def test_every_page_the_code_and_configs_point_to_exists():
    stale = {
        f"{p.relative_to(REPO)}: {m}"
        for p in CODE_FILES
        for m in POINTER.findall(p.read_text())
        if not (REPO / m).exists()
    }
    assert sorted(stale) == []
