"""`dltrain init`: every bundled preset written out is a config `dltrain check` accepts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from dltrain.config import load_config
from dltrain.presets import presets

# Sources whose data is made on the spot (embedded or generated): no file to bring, no download.
OFFLINE_SOURCES = {"digits", "synthetic", "stdlib_docstrings", "stdlib_source"}


def needs_outside_files(path: Path) -> bool:
    """A preset whose data (a file, a download) or weights (ImageNet) must come from outside."""
    resolved = load_config(path).resolved()
    weights = [layer.get("weights") for layer in resolved["model"]["layers"]]
    return resolved["data"]["source"] not in OFFLINE_SOURCES or any(w is not None for w in weights)


@pytest.mark.parametrize("name", sorted(presets()))
def test_init_writes_each_preset_so_that_check_accepts_it(cli, tmp_path: Path, name: str) -> None:
    dest = tmp_path / "project" / f"my_{name}.yaml"
    dest.parent.mkdir()
    result = cli("init", name, dest)
    assert result.exit_code == 0, result.output
    lines = dest.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# dltrain fit {shlex.quote(dest.as_posix())}"
    assert lines[1:] == presets()[name].read_text(encoding="utf-8").splitlines()[1:]
    if needs_outside_files(dest):
        # The user brings these files; the config is checked as far as it can be without them.
        load_config(dest)
        return
    checked = cli("check", dest, "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["total_params"] > 0


def test_init_file_trains_with_the_command_on_its_first_line(cli, tmp_path: Path) -> None:
    assert cli("init", "digits_mlp").exit_code == 0
    written = Path("digits_mlp.yaml")  # the default DEST: ./PRESET.yaml
    command = shlex.split(written.read_text(encoding="utf-8").splitlines()[0].lstrip("# "))
    assert command == ["dltrain", "fit", "digits_mlp.yaml"]
    result = cli(*command[1:], "--set", "fit.epochs=3", "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8  # 3 epochs of the preset's MLP on the digits


def test_init_refuses_to_overwrite_without_force(cli, tmp_path: Path) -> None:
    dest = tmp_path / "mine.yaml"
    dest.write_text("my edited config\n")
    refused = cli("init", "digits_cnn", dest)
    assert refused.exit_code == 2
    assert "--force" in refused.output and "Traceback" not in refused.output
    assert dest.read_text() == "my edited config\n"
    forced = cli("init", "digits_cnn", dest, "--force")
    assert forced.exit_code == 0, forced.output
    assert "Conv2D" in dest.read_text()


def test_init_into_a_folder_uses_the_preset_name(cli, tmp_path: Path) -> None:
    assert cli("init", "digits_rnn", tmp_path).exit_code == 0
    assert (
        (tmp_path / "digits_rnn.yaml").read_text().startswith(f"# dltrain fit {tmp_path.as_posix()}/digits_rnn.yaml\n")
    )


def test_init_unknown_preset_lists_them_with_a_suggestion(cli) -> None:
    result = cli("init", "digits_mpl")
    assert result.exit_code == 2
    assert "Did you mean 'digits_mlp'?" in result.output
    for name in presets():
        assert name in result.output
    assert not Path("digits_mpl.yaml").exists()


def test_init_list_shows_every_preset(cli) -> None:
    result = cli("init", "--list")
    assert result.exit_code == 0
    for name in presets():
        assert name in result.output


def test_init_copies_the_presets_base_so_the_files_stand_alone(cli, tmp_path: Path) -> None:
    shipped = presets()["digits_mlp"].parent / "base" / "digits.yaml"
    result = cli("init", "digits_mlp", tmp_path / "mlp.yaml")
    assert result.exit_code == 0, result.output
    assert "base/digits.yaml" in result.output
    assert (tmp_path / "base" / "digits.yaml").read_text() == shipped.read_text()
    sources = [Path(s["path"]) for s in load_config(tmp_path / "mlp.yaml").sources]
    assert sources == [
        (tmp_path / "base" / "digits.yaml").resolve(),
        (tmp_path / "mlp.yaml").resolve(),
    ]  # none from the package
    # A second preset on the same base leaves it alone; a base the user edited is never overwritten silently.
    assert cli("init", "digits_cnn", tmp_path).exit_code == 0
    (tmp_path / "base" / "digits.yaml").write_text(shipped.read_text() + "  epochs: 5\n")
    refused = cli("init", "digits_rnn", tmp_path)
    assert refused.exit_code == 2 and "base/digits.yaml" in refused.output and "--force" in refused.output
    assert not (tmp_path / "digits_rnn.yaml").exists()
    assert (tmp_path / "base" / "digits.yaml").read_text().endswith("  epochs: 5\n")
