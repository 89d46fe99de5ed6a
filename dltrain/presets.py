"""The bundled preset configs (`configs/` in the repository, shipped in the package)."""

from __future__ import annotations

import shlex
from pathlib import Path

from ._files import check_output_file, write_text_atomic
from ._registry import did_you_mean
from .config.compose import compose
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
        raise UserError(
            f"unknown preset {name!r}.{did_you_mean(name, list(known))} "
            f"Presets: {', '.join(known)} (see `dltrain init --list`)."
        )
    return known[name]


def write_preset(name: str, dest: str | Path | None = None, force: bool = False) -> list[Path]:
    """Copy preset `name` to `dest` (default `./NAME.yaml`; a folder gets `NAME.yaml` inside), and its bases.

    The copy opens with the command that runs it, pointing at `dest` rather than at
    `configs/`, so the first line of the new file is what the user types next. The
    preset's bases (`base/digits.yaml`) are copied beside it at the same relative path,
    so the written files work without the package and keep the base's comments; a base
    already there with the same text is left alone. An existing file is kept unless
    `force`: a user's edited config is never lost by accident. Returns the files written.
    """
    source = preset_path(name)
    target = Path(dest) if dest is not None else Path(f"{source.stem}.yaml")
    if target.is_dir():
        target = target / f"{source.stem}.yaml"
    files = {target: _first_line_for(source, target)}
    for base in compose(source).sources[:-1]:  # merged in order; the preset itself comes last
        files[target.parent / Path(base["path"]).relative_to(PRESETS_DIR.resolve())] = Path(base["path"]).read_text(
            encoding="utf-8"
        )
    files = {path: text for path, text in files.items() if not (path != target and _holds(path, text))}
    taken = [path for path in files if path.exists()]
    if taken and not force:
        names = ", ".join(f"'{path}'" for path in taken)
        raise UserError(
            f"{names} already exist{'s' if len(taken) == 1 else ''}; pass --force to overwrite, or give another DEST"
        )
    for path in files:
        check_output_file(path, "DEST", make_folder=path != target)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    return list(files)


def _first_line_for(source: Path, target: Path) -> str:
    """The preset's text with its first line running `target` instead of `configs/NAME.yaml`."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    shipped, written = f"configs/{source.name}", shlex.quote(target.as_posix())
    if lines and lines[0].startswith("# dltrain ") and shipped in lines[0]:
        lines[0] = lines[0].replace(shipped, written)
    else:
        lines.insert(0, f"# dltrain fit {written}\n")
    return "".join(lines)


def _holds(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == text
