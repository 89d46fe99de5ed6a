"""The README's registry tables are generated from the registries and must be current."""

from conftest import REPO

from dltrain._docs import render


def test_readme_tables_match_the_registries() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert render(readme) == readme, "README tables are stale: run `python -m dltrain._docs`"
