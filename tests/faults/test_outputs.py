"""Output files that cannot be written: `evaluate --plot`, `export -o` and `init` into folders,
read-only filesystems, unknown image types. Refused before any work, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_plot_into_a_folder_or_an_unknown_type_is_refused(faults, tiny_run: Path, tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    faults.run("evaluate", tiny_run, "--plot", tmp_path / "plots").failed(2, "is a folder", "give a file name")
    faults.run("evaluate", tiny_run, "--plot", "matrix.xyz").failed(2, "cannot draw a '.xyz'", ".png")
    faults.run("evaluate", tiny_run, "--plot", "matrix").failed(2, "file without extension", ".png")
    (tmp_path / "notes.txt").write_text("mine\n")
    faults.run("evaluate", tiny_run, "--plot", tmp_path / "notes.txt" / "m.png").failed(2, "notes.txt' is a file")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == []


def test_outputs_into_read_only_folders_are_refused(faults, mount, tiny_run: Path) -> None:
    def existing(folder: Path) -> None:
        (folder / "digits_mlp.yaml").write_text("# mine\n")

    folder = mount(readonly=True, fill=existing)
    before = faults.snapshot(folder / "digits_mlp.yaml")
    faults.run("evaluate", tiny_run, "--plot", folder / "m.png").failed(2, "read-only", "--plot")
    faults.run("export", tiny_run, "--format", "torchscript", "-o", folder / "m.pt").failed(2, "read-only", "-o")
    faults.run("init", "digits_mlp", folder / "new.yaml").failed(2, "read-only", "DEST")
    faults.run("init", "digits_mlp", folder, "--force").failed(2, "read-only")
    faults.unchanged(before)
    assert sorted(p.name for p in folder.iterdir()) == ["digits_mlp.yaml"]


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_an_export_that_fills_the_disk_leaves_no_temporary_file(faults, mount, tiny_run: Path, fmt: str) -> None:
    folder = mount(size="64k")
    faults.fill_up(folder)
    faults.run("export", tiny_run, "--format", fmt, "-o", folder / "m.pt").failed(1, "No space left on device")
    assert sorted(p.name for p in folder.iterdir()) == ["filler"]
