"""Composed configs: `base:` chains, `${...}` with and without `--set`, and where every value came from."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml

from dltrain.config import load_config

ROOT = """\
seed: 0
vars:
  width: 32
data:
  source: digits
  normalize: scale
compile:
  optimizer: adam
  loss: categorical_crossentropy
  metrics: [accuracy, top_k_accuracy]
fit:
  epochs: 3
  batch_size: 64
  validation_split: 0.2
  device: cpu
"""

MID = """\
base: ../root.yaml
model:
  layers:
    - {type: Dense, units: 64, activation: relu}
    - {type: Dense, units: 32, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
fit:
  batch_size: 128
"""

EXP = """\
base: common/mid.yaml
name: exp_w${vars.width}
model:
  layers:
    - {type: Dense, units: "${vars.width}", activation: relu}
    - {type: Dense, units: 10, activation: softmax}
compile:
  metrics: [accuracy]
fit:
  epochs: 1
"""


def line_of(text: str, needle: str) -> int:
    """The 1-based line of `text` that contains `needle` (exactly one does)."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(found) == 1, (needle, found)
    return found[0]


def chain(folder: Path, root: str = ROOT, mid: str = MID, exp: str = EXP) -> Path:
    """root.yaml <- common/mid.yaml <- exp.yaml; returns exp.yaml."""
    (folder / "common").mkdir(exist_ok=True)
    (folder / "root.yaml").write_text(root)
    (folder / "common" / "mid.yaml").write_text(mid)
    (folder / "exp.yaml").write_text(exp)
    return folder / "exp.yaml"


def printed(cli, config: Path, *sets: str) -> tuple[str, dict]:
    """`check CONFIG --print-config` (must succeed): its text and the data it parses to."""
    result = cli("check", config, "--print-config", *[f"--set={s}" for s in sets])
    assert result.exit_code == 0, result.output
    return result.stdout, yaml.safe_load(result.stdout)


def test_three_level_chain_merges_in_order_and_says_where_each_value_came_from(cli, tmp_path: Path) -> None:
    text, merged = printed(cli, chain(tmp_path))
    assert merged == load_config(tmp_path / "exp.yaml").resolved()  # exactly what would run, defaults included
    assert {k: merged["fit"][k] for k in ("epochs", "batch_size", "validation_split", "device")} == {
        "epochs": 1,
        "batch_size": 128,
        "validation_split": 0.2,
        "device": "cpu",
    }
    assert "base" not in merged and "vars" not in merged
    lines = text.splitlines()
    assert lines[0].startswith("# exp.yaml, merged from: root.yaml, common/mid.yaml, exp.yaml;")
    assert f"  epochs: 1  # exp.yaml:{line_of(EXP, 'epochs')} (overrides root.yaml:{line_of(ROOT, 'epochs')})" in lines
    assert (
        f"  batch_size: 128  # common/mid.yaml:{line_of(MID, 'batch_size')} "
        f"(overrides root.yaml:{line_of(ROOT, 'batch_size')})"
    ) in lines
    assert f"  device: cpu  # root.yaml:{line_of(ROOT, 'device')}" in lines
    assert "  shuffle: true  # default" in lines
    assert f"    type: adam  # root.yaml:{line_of(ROOT, 'optimizer')}" in lines  # `optimizer: adam` wrote the type
    assert all("  # " in line for line in lines[1:] if not line.rstrip().endswith(":")), text


def test_lists_are_replaced_not_merged(cli, tmp_path: Path) -> None:
    text, merged = printed(cli, chain(tmp_path))
    assert [(layer["units"], layer["activation"]) for layer in merged["model"]["layers"]] == [
        (32, "relu"),
        (10, "softmax"),
    ]
    assert merged["compile"]["metrics"] == [{"type": "accuracy"}]
    assert (
        f"  metrics:  # exp.yaml:{line_of(EXP, 'metrics')} (overrides root.yaml:{line_of(ROOT, 'metrics')})"
        in text.splitlines()
    )
    checked = cli("check", tmp_path / "exp.yaml", "--json")
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.count('"type": "Dense"') == 2


def test_interpolation_without_and_with_set(cli, tmp_path: Path) -> None:
    config = chain(tmp_path)
    text, merged = printed(cli, config)
    assert merged["model"]["layers"][0]["units"] == 32 and merged["name"] == "exp_w32"
    at = line_of(EXP, "activation: relu")
    assert f"units: 32  # exp.yaml:{at} (${{vars.width}} = root.yaml:{line_of(ROOT, 'width')})" in text
    # --set comes before ${...}: the override reaches every value that refers to it, as a number where it stood alone.
    text, merged = printed(cli, config, "vars.width=8")
    assert merged["model"]["layers"][0]["units"] == 8 and merged["name"] == "exp_w8"
    assert "(${vars.width} = --set vars.width=8)" in text
    assert cli("check", config, "--set", "vars.width=8", "--json").stdout.count('"params": 520,') == 1  # 64*8+8


# (what is wrong, files to change {name: (old, new)}, --set, the location the message must name, words it must contain)
ERRORS = [
    (
        "a cycle of bases",
        {"root.yaml": ("seed: 0", "base: exp.yaml\nseed: 0")},
        [],
        "root.yaml:1: base:",
        ["cycle", "exp.yaml -> common/mid.yaml -> root.yaml -> exp.yaml"],
    ),
    (
        "a missing base file",
        {"common/mid.yaml": ("../root.yaml", "../roots.yaml")},
        [],
        "common/mid.yaml:1: base:",
        ["base file not found", "'../roots.yaml'"],
    ),
    (
        "an unknown reference",
        {"exp.yaml": ('vars.width}", act', 'vars.widht}", act')},
        [],
        "exp.yaml:5:",
        ["model.layers[0].units", "unknown reference ${vars.widht}", "Did you mean 'width'?"],
    ),
    (
        "a reference to a default",
        {"exp.yaml": ('vars.width}", act', 'fit.shuffle}", act')},
        [],
        "exp.yaml:5:",
        ["unknown reference ${fit.shuffle}", "not defaults"],
    ),
    (
        "references in a cycle",
        {},
        ["vars.a=${vars.b}", "vars.b=${vars.a}"],
        "--set vars.b=${vars.a}:",
        ["cycle: ${vars.a} -> ${vars.b} -> ${vars.a}"],
    ),
    (
        "a bad value in a base",
        {"root.yaml": ("device: cpu", "device: gpu")},
        [],
        "root.yaml:15: fit.device:",
        ["'gpu'"],
    ),
    (
        "a bad value that overrides a base",
        {"common/mid.yaml": ("batch_size: 128", "batch_size: -1")},
        [],
        "common/mid.yaml:8: fit.batch_size:",
        ["greater than 0", "(overrides root.yaml:13)"],
    ),
    (
        "a bad value set through a reference",
        {},
        ["vars.width=0"],
        "exp.yaml:5: model.layers[0].units:",
        ["greater than 0", "(${vars.width} = --set vars.width=0)"],
    ),
    (
        "a bad value two references away",
        {"root.yaml": ("  width: 32", '  width: 32\n  opt: {type: adam, lr: "${vars.lr}"}\n  lr: -1')},
        ["compile.optimizer=${vars.opt}"],
        "--set compile.optimizer=${vars.opt}: compile.optimizer.lr:",
        ["(${vars.opt} = root.yaml:4; ${vars.lr} = root.yaml:5)"],
    ),
    ("a bad --set over a base", {}, ["fit.epochs=0"], "--set fit.epochs=0: fit.epochs:", ["(overrides exp.yaml:10)"]),
    (
        "base is not a path",
        {"exp.yaml": ("base: common/mid.yaml", "base: [common/mid.yaml, 3]")},
        [],
        "exp.yaml:1: base[1]:",
        ["expected a path"],
    ),
]


@pytest.mark.parametrize("what,changes,sets,where,words", ERRORS, ids=[e[0] for e in ERRORS])
def test_composition_errors_exit_2_naming_file_and_line(
    cli, tmp_path: Path, what: str, changes: dict, sets: list[str], where: str, words: list[str]
) -> None:
    config = chain(tmp_path)
    for name, (old, new) in changes.items():
        path = tmp_path / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    result = cli("check", config, *[f"--set={s}" for s in sets])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"  - {where}" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in: {result.stderr}"


def test_a_run_of_a_composed_config_needs_none_of_its_files(cli, tmp_path: Path) -> None:
    config = chain(tmp_path)
    files = [tmp_path / "root.yaml", tmp_path / "common" / "mid.yaml", config]
    hashes = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert cli("fit", config, "--run-dir", tmp_path / "run").exit_code == 0
    for file in files:
        file.unlink()

    stored = (tmp_path / "run" / "config.yaml").read_text()
    for file, digest in zip(files, hashes):
        assert f"#   {file.resolve()}  sha256:{digest}" in stored
    resolved = yaml.safe_load(stored)
    assert "base" not in resolved and "vars" not in resolved and "${" not in stored
    assert resolved["model"]["layers"][0]["units"] == 32 and resolved["name"] == "exp_w32"
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert [s["sha256"] for s in payload["config_sources"]] == hashes

    resumed = cli("fit", "--resume", tmp_path / "run", "--set", "fit.epochs=2")
    assert resumed.exit_code == 0, resumed.output
    assert len((tmp_path / "run" / "history.csv").read_text().splitlines()) == 3  # header and 2 epochs
    assert f"sha256:{hashes[0]}" in (tmp_path / "run" / "config.yaml").read_text()  # still the first start's files
    evaluated = cli("evaluate", tmp_path / "run", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    standalone = cli("check", tmp_path / "run" / "config.yaml", "--json")
    assert standalone.exit_code == 0, standalone.output


def test_schema_knows_base_and_vars(cli) -> None:
    schema = yaml.safe_load(cli("schema").stdout)
    assert {"base", "vars"} <= set(schema["properties"])
    assert schema["if"] == {"required": ["base"]} and "model" in schema["else"]["required"]
