"""Math that every renderer shows the same way: Jupyter, GitHub, Colab and the book (MyST, a CommonMark parser).

Jupyter and Colab take the math out before parsing the Markdown; GitHub and MyST parse the Markdown first, so a
formula that also reads as Markdown breaks there only. A browser finds it late; this test finds it in the source,
when the lesson is written. For every markdown cell of every notebook it flags:

- **a list marker inside math**: a line of a formula (display ``$$ … $$`` or inline ``$ … $`` across lines) that
  starts, after its indentation, with ``+``, ``-`` or ``*`` followed by a space. CommonMark reads it as a bullet item
  (one may interrupt a paragraph) and cuts the formula in two. Move the operator to the end of the line before.
- **display math opened inside a paragraph**: ``$$`` that opens a display formula must be the first thing on its
  line, and the line before it must be blank (or the start of the cell); the closing ``$$`` must end its line.
  Otherwise GitHub and MyST see inline ``$$`` inside a paragraph, not a display block.
- **a lost escape**: ``\\,``, ``\\;``, ``\\:`` or ``\\!`` (TeX spacing) or a TeX command outside any formula (after
  taking out code and math). Markdown reads ``\\,`` as an escaped comma and drops the backslash; a command shows
  raw. It is what is left of a formula whose delimiters were lost or broken, and an unpaired ``$`` is flagged too.
- **TeX in a notebook's title** (the first ``# `` heading): the title is the page's name in the book's sidebar,
  the browser tab and search results, where no math is typeset.

The checker is tested on small examples below, so the rules are pinned down even where no notebook breaks them.
"""

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

FENCE = re.compile(r"^ *(```|~~~).*?^ *\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
# $…$: not $$, opening $ not followed by a space, closing $ not preceded by one and not followed by a digit
# (the rule of MyST's dollarmath and GitHub), within one paragraph (no blank line inside)
INLINE = re.compile(r"(?<![\\$])\$(?![\s$])((?:[^$\\]|\\.)+?)(?<![\s\\])\$(?![\d$])", re.S)
LIST_MARKER = re.compile(r"^[ \t]*[-+*](?:[ \t]|$)")
LEFTOVER_TEX = re.compile(r"\\(?:[,;:!]|[A-Za-z]+)")
TEX_IN_TITLE = re.compile(r"\$|\\[A-Za-z]+")


def blank_out(text: str, pattern: re.Pattern) -> str:
    """``text`` with each match of ``pattern`` replaced by spaces, newlines kept (positions and lines stay)."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def math_problems(source: str) -> list[str]:
    """The portability problems of one markdown cell, each naming its line (1-based, within the cell)."""
    problems = []
    text = blank_out(blank_out(source, FENCE), INLINE_CODE)
    lines = text.split("\n")
    for match in DISPLAY.finditer(text):
        first = line_of(text, match.start())
        start_of_line = text.rfind("\n", 0, match.start()) + 1
        end_of_line = text.find("\n", match.end())
        end_of_line = len(text) if end_of_line < 0 else end_of_line
        if text[start_of_line : match.start()].strip() or (first > 1 and lines[first - 2].strip()):
            problems.append(f"line {first}: display math opened inside a paragraph (put $$ at the start of a line "
                            "after a blank line)")
        elif text[match.end() : end_of_line].strip():
            problems.append(f"line {line_of(text, match.end())}: text after the closing $$ (end the line there)")
        problems += marker_problems(match.group(1), first)
    text = blank_out(text, DISPLAY)
    for paragraph in re.finditer(r"(?:[^\n]|\n(?![ \t]*\n))+", text):  # inline math never spans a blank line
        for match in INLINE.finditer(paragraph.group(0)):
            problems += marker_problems(match.group(1), line_of(text, paragraph.start() + match.start()))
        rest = blank_out(paragraph.group(0), INLINE)
        for match in LEFTOVER_TEX.finditer(rest):
            problems.append(f"line {line_of(text, paragraph.start() + match.start())}: {match.group(0)} outside math "
                            "(Markdown drops the backslash of \\, \\; \\: \\! and shows a command raw)")
        for match in re.finditer(r"(?<!\\)\$", rest):
            problems.append(f"line {line_of(text, paragraph.start() + match.start())}: a $ that opens no formula "
                            "(unpaired, or `$ x$`/`$x $` with a space inside: write \\$ for a dollar sign)")
    return problems


def marker_problems(math: str, first_line: int) -> list[str]:
    return [f"line {first_line + offset}: a formula line starts with {line.strip()[:1]!r} and a space, which Markdown "
            "reads as a list item (end the line before with the operator instead)"
            for offset, line in enumerate(math.split("\n")) if offset and LIST_MARKER.match(line)]


def title_problems(cells) -> list[str]:
    markdown = [cell.source for cell in cells if cell.cell_type == "markdown"]
    titles = [line for source in markdown[:1] for line in source.splitlines() if line.startswith("# ")]
    if not titles:
        return ["the first markdown cell has no '# ' title"]
    if TEX_IN_TITLE.search(titles[0]):
        return [f"TeX in the title {titles[0]!r}: the sidebar, the browser tab and search show it raw "
                "(say it in words; keep the formula for the text)"]
    return []


def notebook_problems(path: Path) -> list[str]:
    cells = jupytext.read(path).cells
    problems = title_problems(cells)
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            problems += [f"markdown cell {index}, {problem}" for problem in math_problems(cell.source)]
    return problems


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_math_reads_the_same_everywhere(notebook):
    problems = notebook_problems(notebook)
    assert not problems, f"{notebook.name}:\n" + "\n".join(problems)


# --- the checker, on small examples ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "Text before.\n\n$$\na = b +\n  c\n$$\nwhere $c$ is $\\,x$.",
        "- an item:\n\n  $$\n  x = y\n  $$\n\n- next",
        "$$x = 1$$\n\nA price of \\$5 and `$HOME` and `\\alpha` in code.",
        "```latex\n\\alpha + b\n- c\n$$\n```\n\nInline $a -\nb$ and $x_t$.",
        "Bits: $b_1 * b_2$ with $-1$ and $+1$ and $a\n\\cdot b$.",
    ],
)
def test_portable_math_passes(source):
    assert math_problems(source) == []


@pytest.mark.parametrize(
    "source, problem",
    [
        ("$$\na = b\n+ c\n$$", "line 3: a formula line starts with '+'"),
        ("$$\na = b\n  - c\n$$", "line 3: a formula line starts with '-'"),
        ("$$\na = b\n* c\n$$", "line 3: a formula line starts with '*'"),
        ("so $a = b\n  + c$ holds", "line 2: a formula line starts with '+'"),
        ("Hence\n$$\nx\n$$", "line 2: display math opened inside a paragraph"),
        ("Hence $$x = 1$$ holds.", "line 1: display math opened inside a paragraph"),
        ("Hence:\n\n$$x = 1$$ holds.", "line 3: text after the closing $$"),
        ("- item\n  $$\n  x\n  $$", "line 2: display math opened inside a paragraph"),
        ("Spacing a, b lost: x\\,y here", "line 1: \\, outside math"),
        ("Raw \\alpha here", "line 1: \\alpha outside math"),
        ("A $x $ broken", "line 1: a $ that opens no formula"),
    ],
)
def test_unportable_math_is_flagged(source, problem):
    problems = math_problems(source)
    assert any(found.startswith(problem) for found in problems), problems


def test_tex_in_the_title_is_flagged():
    from nbformat.v4 import new_code_cell, new_markdown_cell

    assert title_problems([new_markdown_cell("# 01 — The forward process $q(x_t \\mid x_0)$\n\nText")])
    assert title_problems([new_markdown_cell("# Uses \\alpha")])
    assert title_problems([new_code_cell("x = 1"), new_markdown_cell("# Plain")]) == []
    assert title_problems([new_markdown_cell("# 01 — The forward process\n\nWith $q(x_t \\mid x_0)$.")]) == []
