"""The bundled preset configs (`configs/` in the repository, shipped in the package)."""

from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).parent / "configs"


def presets() -> dict[str, Path]:
    """Preset name (the file's stem) → its YAML file."""
    return {path.stem: path for path in sorted(PRESETS_DIR.glob("*.yaml"))}


def describe(path: Path) -> str:
    """The preset's one-line description: its first comment line that is not a command."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text and not text.startswith(("dltrain ", "Run:", "run:")):
            return text
    return ""
