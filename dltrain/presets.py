"""The bundled preset configs (`configs/` in the repository, shipped in the package)."""

from __future__ import annotations

import shlex
from pathlib import Path

from ._files import check_output_file, write_text_atomic
from ._registry import did_you_mean
from .errors import UserError

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


def preset_path(name: str) -> Path:
    """The YAML file of preset `name`; a UserError listing the presets when it is unknown."""
    known = presets()
    if name.endswith((".yaml", ".yml")):
        name = Path(name).stem  # `dltrain init configs/digits_mlp.yaml` means the preset
    if name not in known:
        raise UserError(f"unknown preset {name!r}.{did_you_mean(name, list(known))} "
                        f"Presets: {', '.join(known)} (see `dltrain init --list`).")
    return known[name]


def write_preset(name: str, dest: str | Path | None = None, force: bool = False) -> Path:
    """Copy preset `name` to `dest` (default `./NAME.yaml`; a folder gets `NAME.yaml` inside).

    The copy opens with the command that runs it, pointing at `dest` rather than at
    `configs/`, so the first line of the new file is what the user types next. An
    existing file is kept unless `force`: a user's edited config is never lost by accident.
    """
    source = preset_path(name)
    target = Path(dest) if dest is not None else Path(f"{source.stem}.yaml")
    if target.is_dir():
        target = target / f"{source.stem}.yaml"
    if target.exists() and not force:
        raise UserError(f"'{target}' already exists; pass --force to overwrite it, or give another DEST")
    check_output_file(target, "DEST")
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    shipped, written = f"configs/{source.name}", shlex.quote(target.as_posix())
    if lines and lines[0].startswith("# dltrain ") and shipped in lines[0]:
        lines[0] = lines[0].replace(shipped, written)
    else:
        lines.insert(0, f"# dltrain fit {written}\n")
    write_text_atomic(target, "".join(lines))
    return target
