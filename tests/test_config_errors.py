"""Malformed configs: each exits 2 with one message naming file, line and path; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

GOOD = """\
name: t
data:
  source: digits
model:
  layers:
    - {type: Dense, units: 16, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
compile:
  optimizer: adam
  loss: categorical_crossentropy
  metrics: [accuracy]
fit:
  epochs: 1
  device: cpu
"""

# (what is wrong, the file's text, the line the message must name, words it must contain)
CASES = [
    ("unknown top-level key", GOOD + "fitt: {}\n", 15, ["unknown key 'fitt'", "Did you mean 'fit'"]),
    ("misspelled layer key", GOOD.replace("units: 16", "unit: 16"), 6, ["unknown key 'unit'", "Did you mean 'units'"]),
    (
        "unknown layer type",
        GOOD.replace("type: Dense, units: 16", "type: Dence, units: 16"),
        6,
        ["unknown layer 'Dence'", "Did you mean 'Dense'"],
    ),
    ("negative units", GOOD.replace("units: 16", "units: -3"), 6, ["model.layers[0].units", "greater than 0", "-3"]),
    ("units not a number", GOOD.replace("units: 16", "units: many"), 6, ["model.layers[0].units", "'many'"]),
    ("unknown activation", GOOD.replace("activation: relu", "activation: relux"), 6, ["activation", "'relux'"]),
    (
        "unknown source",
        GOOD.replace("source: digits", "source: digitz"),
        3,
        ["unknown data source 'digitz'", "Did you mean 'digits'"],
    ),
    (
        "unknown optimizer",
        GOOD.replace("optimizer: adam", "optimizer: adamm"),
        9,
        ["unknown optimizer 'adamm'", "Did you mean 'adam'"],
    ),
    (
        "unknown loss",
        GOOD.replace("loss: categorical_crossentropy", "loss: crossentropy"),
        10,
        ["unknown loss 'crossentropy'"],
    ),
    (
        "unknown metric",
        GOOD.replace("metrics: [accuracy]", "metrics: [acuracy]"),
        11,
        ["unknown metric 'acuracy'", "Did you mean 'accuracy'"],
    ),
    ("misspelled fit key", GOOD.replace("epochs: 1", "epoch: 1"), 13, ["unknown key 'epoch'", "Did you mean 'epochs'"]),
    ("zero epochs", GOOD.replace("epochs: 1", "epochs: 0"), 13, ["fit.epochs", "greater than 0"]),
    ("bad device", GOOD.replace("device: cpu", "device: gpu"), 14, ["fit.device", "'gpu'"]),
    ("validation split of 1", GOOD + "  validation_split: 1.0\n", 15, ["fit.validation_split", "less than 1"]),
    (
        "missing loss",
        GOOD.replace("  loss: categorical_crossentropy\n", ""),
        8,
        ["compile.loss", "missing required key"],
    ),
    (
        "layer without type",
        GOOD.replace("{type: Dense, units: 16, activation: relu}", "{units: 16}"),
        6,
        ["missing key 'type'"],
    ),
    ("duplicate key", GOOD.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 2\n"), 14, ["appears twice"]),
    ("YAML syntax error", GOOD.replace("  metrics: [accuracy]", "  metrics: [accuracy"), 12, ["invalid YAML"]),
    (
        "dropout rate of 1",
        GOOD.replace("{type: Dense, units: 16, activation: relu}", "{type: Dropout, rate: 1.5}"),
        6,
        ["model.layers[0].rate", "less than 1"],
    ),
    ("wrong output width", GOOD.replace("units: 10", "units: 5"), 7, ["outputs [5]", "10 classes", "units to 10"]),
    (
        "conv on flat input",
        GOOD.replace("{type: Dense, units: 16, activation: relu}", "{type: Conv2D, filters: 4, kernel_size: 3}"),
        6,
        ["Conv2D (layer 0)", "[C, H, W]", "received [64]"],
    ),
    (
        "channels-last input shape",
        GOOD.replace("  layers:\n", "  input_shape: [8, 8, 1]\n  layers:\n"),
        5,
        ["channels-last", "[1, 8, 8]"],
    ),
    (
        "final relu with cross-entropy",
        GOOD.replace("units: 10, activation: softmax", "units: 10, activation: relu"),
        7,
        ["final 'relu'", "logits"],
    ),
    (
        "metric that does not fit the loss",
        GOOD.replace("metrics: [accuracy]", "metrics: [mae]"),
        11,
        ["metric 'mae'", "classification"],
    ),
    ("not a mapping", "- just\n- a list\n", None, ["expected a mapping"]),
]


@pytest.mark.parametrize("what,text,line,words", CASES, ids=[c[0] for c in CASES])
def test_malformed_config_exits_2_with_located_message(
    cli, tmp_path: Path, what: str, text: str, line: int | None, words: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = cli("check", path)
    assert result.exit_code == 2, result.output
    message = result.stderr
    assert "Traceback" not in result.output
    if line is not None:
        assert f"bad.yaml:{line}:" in message, message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def test_every_problem_is_reported_at_once(cli, tmp_path: Path) -> None:
    text = (
        GOOD.replace("units: 16", "unit: 16")
        .replace("epochs: 1", "epochs: -1")
        .replace("optimizer: adam", "optimizer: adamm")
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = cli("check", path)
    assert result.exit_code == 2
    assert "3 problems" in result.stderr  # `unit` is reported once, not also as a missing `units`
    lines = [int(part.split(":")[1]) for part in result.stderr.split("bad.yaml")[2:]]
    assert lines == sorted(lines)


def test_set_overrides_are_validated_and_named(cli, tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = cli("check", path, "--set", "model.layers[0].units=-1")
    assert result.exit_code == 2
    assert "--set model.layers[0].units=-1" in result.stderr
    assert cli("check", path, "--set", "model.layers[0].units=8", "--json").exit_code == 0
    bad_syntax = cli("check", path, "--set", "fit.epochs")
    assert bad_syntax.exit_code == 2 and "KEY=VALUE" in bad_syntax.stderr


def test_missing_config_file(cli, tmp_path: Path) -> None:
    result = cli("fit", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "not found" in result.stderr and "dltrain init" in result.stderr


def test_failing_command_leaves_existing_run_untouched(cli, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert cli("fit", good, "--run-dir", tmp_path / "run").exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("units: 16", "units: -1"))
    assert cli("fit", bad, "--run-dir", tmp_path / "run").exit_code == 2
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert before == after


def test_fit_refuses_to_overwrite_an_existing_run(cli, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert cli("fit", good, "--run-dir", tmp_path / "run").exit_code == 0
    before = (tmp_path / "run" / "last.pt").read_bytes()
    again = cli("fit", good, "--run-dir", tmp_path / "run")
    assert again.exit_code == 2 and "--resume" in again.stderr
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
