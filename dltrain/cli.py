"""The `dltrain` command line: parse, call the library, map errors to exit codes.

Exit codes: 0 success; 2 bad usage, config or input (one message, no traceback);
1 a failure while running; 130 interrupted.

Each command imports the library it calls inside its body: `--help`, `--version`,
`init` and `schema` never import torch, and start in a fraction of a second.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ._version import __version__
from .errors import DltrainError, Interrupted, ReportedElsewhere, terminated_as_interrupt
from .tables import add_row, data_table

app = typer.Typer(
    name="dltrain",
    help="Declarative deep-learning training: one YAML file, PyTorch underneath.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

PIPE_WIDTH = 4096  # piped into a file, a line is as long as it needs: no number wrapped away from its name


def _console(stderr: bool) -> Console:
    """A console at the terminal's width, or unwrapped when its output goes to a file or a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPE_WIDTH if piped else None)


err_console = _console(stderr=True)
out_console = _console(stderr=False)

F = TypeVar("F", bound=Callable[..., Any])

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="Override a config value: --set fit.epochs=3 (repeatable; YAML-typed values)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, nothing else there.")]


def handles_errors(command: F) -> F:
    """Turn dltrain's errors into one message and their exit code; Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with terminated_as_interrupt():
                return command(*args, **kwargs)
        except DltrainError as exc:
            if not isinstance(exc, ReportedElsewhere):
                err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # a failure of the machine (a full disk, a vanished file) that nothing above named
            where = f" ('{exc.filename}')" if exc.filename else ""
            err_console.print(f"[bold red]error:[/bold red] {escape(str(exc.strerror or exc) + where)}",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            code = exc.exit_code if isinstance(exc, Interrupted) else 130
            err_console.print("terminated (SIGTERM)" if code == 143 else "interrupted", highlight=False)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        print(f"dltrain {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """Declarative deep-learning training: one YAML file, PyTorch underneath."""


@app.command()
@handles_errors
def fit(
    config: Annotated[Optional[Path], typer.Argument(help="The YAML config to train.")] = None,
    overrides: SetOption = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N (overrides fit.device).")] = None,
    run_dir: Annotated[Optional[str], typer.Option("--run-dir", help="Write the run here instead of runs/<name>/<time>/.")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the run of this run directory or last.pt (no YAML needed).")] = None,
    devices: Annotated[int, typer.Option("--devices", min=1, help="Train with DDP on N processes of this node (one per GPU, or N CPU processes).")] = 1,
) -> None:
    """Validate, build, train and checkpoint a model from a YAML config."""
    from . import api, launch
    from .display import RichReporter

    sets = list(overrides or [])
    if device:
        sets.append(f"fit.device={device}")
    if resume is not None and config is not None:
        raise typer.BadParameter("give either CONFIG or --resume, not both")
    if devices > 1:
        loaded, _ = api.fit_config(config, sets, resume)  # a bad config is reported once, before any rank starts
        launch.check_devices(devices, loaded.config.fit.device)
        args = [*([str(config)] if config else []), *(f"--set={s}" for s in sets),
                *(["--run-dir", run_dir] if run_dir is not None else []), *(["--resume", str(resume)] if resume else [])]
        launch.launch(devices, ["fit", *args])
        return
    api.fit(config, sets, resume=resume, run_dir=run_dir, reporter=RichReporter(out_console))


@app.command()
@handles_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (.pt) or a run directory (uses best.pt).")],
    split: Annotated[str, typer.Option("--split", help="test, val or train.")] = "test",
    overrides: SetOption = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    as_json: JsonOption = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the confusion matrix into this image file (e.g. confusion.png).")] = None,
) -> None:
    """Evaluate a checkpoint on its stored data config: loss, metrics, confusion matrix."""
    from . import api
    from .display import report_table

    if split not in ("test", "val", "train"):
        raise typer.BadParameter(f"expected test, val or train; received {split!r}", param_hint="--split")
    report = api.evaluate(checkpoint, split, list(overrides or []), device, plot)
    if as_json:
        print(json.dumps(report))
        return
    for renderable in report_table(report, list(report.get("per_class", {}))):
        out_console.print(renderable)


@app.command()
@handles_errors
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (.pt) or a run directory (uses best.pt).")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files, .npy/.npz arrays or a .csv of rows.")],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to list per input, most probable first.")] = 5,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Predict new inputs with a trained model, preprocessed exactly as its training data."""
    from . import api
    from .display import predictions_table

    report = api.predict(checkpoint, list(inputs), top_k, device)
    if as_json:
        print(json.dumps(report))
        return
    out_console.print(predictions_table(report["predictions"]))


@app.command()
@handles_errors
def check(
    config: Annotated[Path, typer.Argument(help="The YAML config to validate.")],
    overrides: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a config and build its model without training; print the summary."""
    from . import api
    from .display import summary_table

    _, built = api.check(config, list(overrides or []))
    if as_json:
        layers = [
            {"type": r.type, "output_shape": list(r.output_shape), "params": r.params, "trainable_params": r.trainable_params}
            for r in built.summary
        ]
        print(json.dumps({"layers": layers, "total_params": built.total_params, "trainable_params": built.trainable_params,
                          "frozen_params": built.total_params - built.trainable_params, "notes": built.notes}))
        return
    out_console.print(summary_table(built, title=f"{config.name}: valid"))
    for note in built.notes:
        out_console.print(escape(note), highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def init(
    preset: Annotated[Optional[str], typer.Argument(help="The preset to start from (see --list).")] = None,
    dest: Annotated[Optional[Path], typer.Argument(help="Where to write it (default ./PRESET.yaml; a folder gets PRESET.yaml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite DEST if it exists.")] = False,
    list_all: Annotated[bool, typer.Option("--list", help="List the presets and exit.")] = False,
) -> None:
    """Write a bundled preset config to start a project from."""
    from . import presets

    if list_all or preset is None:
        table = data_table("presets (dltrain init PRESET [DEST])", "name", "what it is")
        for name, path in presets.presets().items():
            add_row(table, name, presets.describe(path))
        out_console.print(table)
        return
    written = presets.write_preset(preset, dest, force)
    out_console.print(escape(f"wrote {written}; train it with: dltrain fit {written}"), highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (.pt) or a run directory (uses best.pt).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, pt2 or torchscript.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The file to write (default: beside the checkpoint).")] = None,
) -> None:
    """Export a checkpoint for deployment, checked against the PyTorch model; preprocessing JSON beside it."""
    from .export import export as export_model

    result = export_model(checkpoint, fmt, output)
    out_console.print(escape(f"wrote {result.path} and {result.metadata_path} (checked on {result.samples} test samples: "
                             f"largest difference {result.max_abs_diff:.2g})"), highlight=False, soft_wrap=True)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editor validation and completion)."""
    from .schema.config import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command("list-models")
def list_models(as_json: JsonOption = False) -> None:
    """List everything a config can name: layers, backbones, sources, optimizers, losses, metrics, presets."""
    from .catalog import catalog

    entries = catalog()
    if as_json:
        print(json.dumps(entries))
        return
    for kind, items in entries.items():
        table = data_table(kind, "name", "keys", "what it does")
        for item in items:
            add_row(table, item["name"], ", ".join(item["keys"]), item["summary"])
        out_console.print(table)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="dltrain")


if __name__ == "__main__":
    run()
