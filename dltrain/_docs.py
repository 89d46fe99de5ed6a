"""Keep the README's registry tables current: `python -m dltrain._docs [README.md]`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from .catalog import markdown_tables

START, END = "<!-- registry-tables:start -->", "<!-- registry-tables:end -->"


def render(readme: str) -> str:
    """`readme` with the block between the markers replaced by the generated tables."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    return pattern.sub(lambda _: f"{START}\n{markdown_tables()}{END}", readme)


def main(path: str = "README.md") -> None:
    file = Path(path)
    file.write_text(render(file.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
