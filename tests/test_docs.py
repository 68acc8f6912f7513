"""The documentation: a short README, links that resolve, and every quoted result tied to a committed file.

Fast and import-light (standard library only): it reads Markdown and the committed figures, nothing else.

The tie rule (#28 item 2). README.md and docs/*.md are cut into blocks: a paragraph, a list item (with its
continuation lines) or a table (with the paragraph or list item right before it). Every decimal number
with two or more decimals in a block (0.764, −0.131, +0.064, 0.99) must be found in one of the files the
block cites: a committed path under ``figures/``, ``tests/`` or ``params/`` (for instance
``figures/demo/table2.md``), or ``git show <commit>:figures/…``. A block that says "paper" may also take
its numbers from the paper, ``../shared/adunet-paper.md`` (when that folder is missing, such numbers are
reported and not failed). "Found" means some number of the file rounds to the quoted one at its
precision, sign ignored. Exempt: integers and one-decimal numbers, code blocks (```), inline code (`…`)
and the few version strings in ``EXEMPT``.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO.parent / "shared" / "adunet-paper.md"
DOC_PAGES = sorted((REPO / "docs").glob("*.md"))
LINKED_PAGES = [REPO / "README.md", REPO / "ARCHITECTURE.md", *DOC_PAGES]
RESULT_PAGES = [REPO / "README.md", *DOC_PAGES]

#: Text that holds decimals but quotes no result (removed before numbers are read).
EXEMPT = [r"Python 3\.\d+"]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+")
DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d{2,})(?![\d]|\.\d)")
FILE_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
SOURCE = re.compile(r"(?<![\w/.-])(?:\.\./)*((?:figures|tests|params)/[\w./-]*\.(?:md|csv|txt|py|yaml))")
GIT_SOURCE = re.compile(r"git show ([0-9a-f]{7,40}):(figures/[\w./-]+\.(?:md|csv|txt))")


# ---------------------------------------------------------------------------------------------- parsing


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def blocks(path: Path) -> list[dict]:
    """Paragraphs, list items, tables and headings, each {kind, line, text}; a table also gets `before`."""
    found: list[dict] = []
    current = None
    for number, line in prose_lines(path):
        stripped = line.strip()
        if not stripped:
            current = None
            continue
        if stripped.startswith("|"):
            if current is None or current["kind"] != "table":
                previous = found[-1] if found and found[-1]["kind"] in ("para", "item") else None
                current = {"kind": "table", "line": number, "text": "",
                           "before": previous["text"] if previous else ""}
                found.append(current)
            current["text"] += line + "\n"
            continue
        if HEADING.match(line):
            found.append({"kind": "heading", "line": number, "text": line + "\n"})
            current = None
            continue
        if ITEM.match(line):
            current = {"kind": "item", "line": number, "text": line + "\n"}
            found.append(current)
            continue
        if current is None or current["kind"] == "table":
            current = {"kind": "para", "line": number, "text": ""}
            found.append(current)
        current["text"] += line + "\n"
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (not - or _), spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in prose_lines(path):
        for match in LINK.finditer(INLINE_CODE.sub("CODE", line)):
            out.append((number, match.group(1)))
    return out


# ------------------------------------------------------------------------------------------------ README


def test_readme_is_a_short_front_door_with_both_commands_first():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; keep it at 200 or fewer (details go to docs/)"
    first = "\n".join(lines[:40])
    assert "adunet reproduce params/demo.yaml" in first, "the main job's command is not in README's first 40 lines"
    assert "python -m pytest" in first, "the test command is not in README's first 40 lines"


def test_readme_links_every_docs_page():
    targets = {(REPO / target.split("#")[0]).resolve() for _, target in links(REPO / "README.md")
               if not target.startswith(("http://", "https://", "#"))}
    missing = [page.name for page in DOC_PAGES if page.resolve() not in targets]
    assert DOC_PAGES, "docs/ holds no Markdown page"
    assert not missing, f"docs pages not linked from README.md: {missing}"


@pytest.mark.parametrize("page", LINKED_PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_resolve(page):
    problems = []
    for number, target in links(page):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        target_file = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(REPO)}:{number}: {target}"
        if not target_file.exists():
            problems.append(f"{where}: no such file")
            continue
        if anchor:
            if target_file.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(target_file):
                problems.append(f"{where}: no heading with anchor #{anchor} in {target_file.name}")
    assert not problems, "broken links:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------------- results and sources


def _numbers_in_text(text: str) -> list[float]:
    return [float(x) for x in FILE_NUMBER.findall(text)]


@lru_cache(maxsize=None)
def source_numbers(source: str) -> tuple[float, ...] | None:
    """Every number in a cited source; None where it cannot be read (a commit missing from this clone)."""
    if source == "paper":
        text = PAPER.read_text(encoding="utf-8") if PAPER.exists() else None
        name = "paper.md"
    elif source.startswith("git:"):
        commit, path = source[4:].split(":", 1)
        run = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{path}"],
                             capture_output=True, text=True, encoding="utf-8")
        text = run.stdout if run.returncode == 0 else None
        name = path
    else:
        text = (REPO / source).read_text(encoding="utf-8")
        name = source
    if text is None:
        return None
    if name.endswith(".csv"):
        values = []
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                try:
                    values.append(float(cell))
                except ValueError:
                    values.extend(_numbers_in_text(cell))
        return tuple(values)
    return tuple(_numbers_in_text(text))


def cited_sources(text: str) -> tuple[list[str], list[str]]:
    """(sources, cited paths that do not exist) named in a block's raw text."""
    sources, missing = [], []
    for commit, path in GIT_SOURCE.findall(text):
        sources.append(f"git:{commit}:{path}")
    for path in SOURCE.findall(text):
        path = path.rstrip(".")
        if (REPO / path).is_file():
            sources.append(path)
        elif not (REPO / path).exists() and "<" not in path and "…" not in path:
            missing.append(path)
    if re.search(r"\bpaper\b|\bpaper's\b", text, re.IGNORECASE):
        sources.append("paper")
    return list(dict.fromkeys(sources)), missing


def quoted_decimals(text: str) -> list[str]:
    text = INLINE_CODE.sub(" ", text)
    for pattern in EXEMPT:
        text = re.sub(pattern, " ", text)
    return DECIMAL.findall(text)


def found_in(quoted: str, values: tuple[float, ...]) -> bool:
    decimals = len(quoted.split(".")[1])
    target = float(quoted)
    tolerance = 0.5 * 10 ** -decimals + 1e-9
    return any(abs(abs(v) - target) <= tolerance for v in values)


def test_every_quoted_result_is_found_in_a_committed_file_the_block_cites():
    problems, unverifiable = [], []
    for page in RESULT_PAGES:
        for block in blocks(page):
            if block["kind"] == "heading":
                continue
            raw = block["text"] + block.get("before", "")
            sources, missing = cited_sources(raw)
            where = f"{page.relative_to(REPO)}:{block['line']}"
            for path in missing:
                problems.append(f"{where}: cites {path}, which is not in the repository")
            for quoted in quoted_decimals(block["text"]):
                readable = [s for s in sources if source_numbers(s) is not None]
                if any(found_in(quoted, source_numbers(s)) for s in readable):
                    continue
                if len(readable) < len(sources):
                    unverifiable.append(f"{where}: {quoted} (sources not readable here: "
                                        f"{[s for s in sources if s not in readable]})")
                    continue
                problems.append(f"{where}: {quoted} is in none of its block's sources {sources or '(none cited)'}")
    if unverifiable:
        print("not checked, a source is missing in this checkout:\n" + "\n".join(unverifiable))
    assert not problems, f"{len(problems)} quoted numbers are not tied to a committed file:\n" + "\n".join(problems)


def test_readme_results_quote_the_demo_external_table_ii_baseline_and_adunet_all():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Results\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Results' section"
    section = match.group(1)
    assert "figures/demo/table2.md" in section
    table = (REPO / "figures" / "demo" / "table2.md").read_text(encoding="utf-8")
    external = table.split("**External test set**")[1]
    averages = {}
    for row in external.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[0] in ("nnU-Net baseline", "adU-Net(all bpMRI)"):
            averages[cells[0]] = float(re.sub(r"[*\s]", "", cells[3].split("[")[0]))
    assert len(averages) == 2, "figures/demo/table2.md: no external rows for the baseline and adU-Net(all bpMRI)"
    quoted = quoted_decimals(section)
    for model, value in averages.items():
        assert f"{value:.3f}" in quoted, f"README's Results do not quote {model}'s external average {value:.3f}"
