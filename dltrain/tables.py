"""Tables of data for the terminal: titles, headers and cells shown as written, never read as rich markup.

Torch-free, so that `dltrain init --list` and `list-models` print theirs without importing torch.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text


def data_table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    """A table whose title and headers are shown as written (never read as rich markup), the title on one line."""
    table = Table(title=Text(title), title_justify="left", min_width=len(title))
    for column in columns:
        table.add_column(Text(column), justify="right" if column in right else "left")
    return table


def add_row(table: Table, *values: object) -> None:
    """A row of data, each cell shown as written: `[units]` or `exp[lr0.1]` stays whole."""
    table.add_row(*(Text(str(value)) for value in values))
