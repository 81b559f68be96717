"""Count the words of prose in each notebook: the reading load a student meets.

    python benchmarks/prose_words.py            # every notebook in notebooks/
    python benchmarks/prose_words.py 04_mnist   # the notebooks whose names contain the arguments

A word is a whitespace-separated token that contains a letter, in the markdown cells, after removing display
math ``$$…$$``, inline math ``$…$``, code spans and the targets of ``(http…)`` links (a link's text counts).
Code, outputs and comments in code cells are not prose. ``tests/test_prose_words.py`` holds every notebook to
``LIMIT`` words.
"""

import json
import re
import sys
from pathlib import Path

LIMIT = 4500  # words of prose per notebook: one sitting
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

_REMOVED = [
    re.compile(r"\$\$.*?\$\$", re.DOTALL),  # display math
    re.compile(r"(?<!\\)\$[^$\n]+?(?<!\\)\$"),  # inline math
    re.compile(r"`[^`\n]*`"),  # code spans
    re.compile(r"(?<=\])\(https?://[^)\s]*\)"),  # link targets: [text](http…)
]
_LETTER = re.compile(r"[^\W\d_]")


def prose_words(text: str) -> int:
    """Words of prose in markdown ``text`` (see the module docstring for what counts)."""
    for pattern in _REMOVED:
        text = pattern.sub(" ", text)
    return sum(1 for token in text.split() if _LETTER.search(token))


def notebook_words(path: str | Path) -> int:
    """Words of prose in the markdown cells of the notebook ``path`` (``.ipynb``)."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return sum(prose_words("".join(cell["source"])) for cell in cells if cell["cell_type"] == "markdown")


def main(names: list[str]) -> None:
    paths = [p for p in sorted(NOTEBOOKS.glob("*.ipynb")) if not names or any(n in p.name for n in names)]
    if not paths:
        raise SystemExit(f"no notebook in {NOTEBOOKS} matches {names}")
    for path in paths:
        words = notebook_words(path)
        over = f"  (over the limit of {LIMIT:,})" if words > LIMIT else ""
        print(f"{path.name:28s} {words:6,d} words of prose{over}")


if __name__ == "__main__":
    main(sys.argv[1:])
