"""MkDocs hook: the site's guide pages are the README's sections, so the two cannot disagree.

Each ``## Section`` of README.md becomes one page (its heading promoted to the page title, its
subsections one level up); ``benchmarks/README.md`` becomes the Benchmarks page. Links between
sections are rewritten to the page that holds the anchor; links to files of the repository that
are not pages (examples, Lua scripts) become code spans, since the site has no source browser.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
HEADING = re.compile(r"^(#{2,6}) (.+)$")
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def slugify(title: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (its default slugify)."""
    text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", title)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def split_sections(markdown: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """The README's preamble and its ``##`` sections, fenced code blocks left whole."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    in_fence = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and line.startswith("## "):
            sections.append((line[3:].strip(), []))
            continue
        (sections[-1][1] if sections else preamble).append(line)
    return "\n".join(preamble), sections


def _promote(lines: list[str]) -> list[str]:
    out, in_fence = [], False
    for line in lines:
        if FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else HEADING.match(line)
        out.append(f"{heading.group(1)[1:]} {heading.group(2)}" if heading else line)
    return out


def _anchors(page: str, title: str, lines: list[str], into: dict[str, str]) -> None:
    into[slugify(title)] = page
    in_fence = False
    for line in lines:
        if FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else HEADING.match(line)
        if heading:
            into.setdefault(slugify(heading.group(2)), page)


def _relink(text: str, here: str, anchors: dict[str, str]) -> str:
    def swap(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if target.startswith(("http://", "https://", "mailto:")):
            return match.group(0)
        if target.startswith("#"):
            page = anchors.get(target[1:])
            return f"[{label}]({_relative(here, page)}{target})" if page else label
        if target.rstrip("/") in ("benchmarks/README.md", "README.md"):
            return f"[{label}]({_relative(here, 'benchmarks.md')})"
        if target.startswith("docs/"):
            return f"[{label}]({_relative(here, target[len('docs/') :])})"
        return label if label.startswith("`") else f"`{label}`"

    return LINK.sub(swap, text)


def _relative(here: str, page: str | None) -> str:
    if page is None or page == here:
        return ""
    depth = here.count("/")
    return "../" * depth + page


def guide_pages() -> dict[str, str]:
    """Page path → Markdown for every generated page, in the README's order."""
    preamble, sections = split_sections((ROOT / "README.md").read_text(encoding="utf-8"))
    names = [f"guide/{slugify(title)}.md" for title, _ in sections]
    anchors: dict[str, str] = {}
    for name, (title, lines) in zip(names, sections, strict=True):
        _anchors(name, title, lines, anchors)
    pages = {"index.md": _relink(preamble + INDEX_TAIL, "index.md", anchors)}
    for name, (title, lines) in zip(names, sections, strict=True):
        body = "\n".join([f"# {title}", *_promote(lines)])
        pages[name] = _relink(body, name, anchors)
    bench = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    pages["benchmarks.md"] = _relink(bench, "benchmarks.md", {})
    return pages


INDEX_TAIL = """

The guide's pages are the README's sections, one page each; the API reference is generated from
the docstrings.
"""


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    for path, content in guide_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_config(config: MkDocsConfig, **_: Any) -> MkDocsConfig:
    pages = list(guide_pages())
    guide = [{_title(p): p} for p in pages if p.startswith("guide/")]
    config["nav"] = [
        {"Home": "index.md"},
        {"Guide": guide},
        {"Benchmarks": "benchmarks.md"},
        {"API reference": "reference.md"},
    ]
    return config


def _title(path: str) -> str:
    _, sections = split_sections((ROOT / "README.md").read_text(encoding="utf-8"))
    for title, _lines in sections:
        if f"guide/{slugify(title)}.md" == path:
            return title.replace("`", "")
    return path
