"""`python -m dltrain` runs the CLI."""

from .cli import run

run()
