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
from .errors import DltrainError, Interrupted, ReportedElsewhere, UserError, terminated_as_interrupt
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
            err_console.print(
                f"[bold red]error:[/bold red] {escape(str(exc.strerror or exc) + where)}",
                highlight=False,
                soft_wrap=True,
            )
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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Declarative deep-learning training: one YAML file, PyTorch underneath."""


@app.command()
@handles_errors
def fit(
    config: Annotated[Optional[Path], typer.Argument(help="The YAML config to train.")] = None,
    overrides: SetOption = None,
    device: Annotated[
        Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N (overrides fit.device).")
    ] = None,
    run_dir: Annotated[
        Optional[str], typer.Option("--run-dir", help="Write the run here instead of runs/<name>/<time>/.")
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option("--resume", help="Continue the run of this run directory or last.pt (no YAML needed)."),
    ] = None,
    devices: Annotated[
        int,
        typer.Option(
            "--devices", min=1, help="Train with DDP on N processes of this node (one per GPU, or N CPU processes)."
        ),
    ] = 1,
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
        args = [
            *([str(config)] if config else []),
            *(f"--set={s}" for s in sets),
            *(["--run-dir", run_dir] if run_dir is not None else []),
            *(["--resume", str(resume)] if resume else []),
        ]
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
    plot: Annotated[
        Optional[Path],
        typer.Option("--plot", help="Also draw the confusion matrix into this image file (e.g. confusion.png)."),
    ] = None,
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
    inputs: Annotated[
        Optional[list[Path]], typer.Argument(help="Image files, .npy/.npz arrays, a .csv of rows or .txt texts.")
    ] = None,
    text: Annotated[
        Optional[list[str]], typer.Option("--text", help="A text to classify (repeatable), for text models.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to list per input, most probable first.")] = 5,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Predict new inputs with a trained model, preprocessed exactly as its training data."""
    from . import api
    from .display import predictions_table

    if not inputs and not text:
        raise UserError('give input files, or --text "a sentence" for a text model')
    report = api.predict(checkpoint, list(inputs or []), top_k, device, list(text or []))
    if as_json:
        print(json.dumps(report))
        return
    out_console.print(predictions_table(report["predictions"]))


@app.command()
@handles_errors
def generate(
    checkpoint: Annotated[Path, typer.Argument(help="A language model's checkpoint (.pt) or run directory.")],
    prompt: Annotated[str, typer.Option("--prompt", help="The text to continue.")],
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens to generate.")] = 200,
    temperature: Annotated[float, typer.Option("--temperature", help="0: always the likeliest token.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Draw among the K likeliest tokens.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="The same seed gives the same text.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Continue a prompt with a trained language model (text_file data)."""
    from .generate import generate as run

    made = run(checkpoint, prompt, max_tokens, temperature, top_k, seed, device)
    if as_json:
        print(json.dumps({"prompt": made.prompt, "text": made.text, "tokens": made.tokens}))
        return
    print(made.prompt + made.text)


@app.command()
@handles_errors
def check(
    config: Annotated[Path, typer.Argument(help="The YAML config to validate.")],
    overrides: SetOption = None,
    as_json: JsonOption = False,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Validate, then print the config that would run "
            "(bases, --set, ${...} and defaults applied), a '# file:line' on each value; "
            "no model is built.",
        ),
    ] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option("--plot", help="Also draw the model (layers, inputs, shapes, params) into this image file."),
    ] = None,
) -> None:
    """Validate a config, load its data and build its model without training; print the model and a data report."""
    from . import api
    from .display import data_tables, summary_table

    if print_config:
        print(api.annotated_config(config, list(overrides or [])), end="")
        return
    if plot is not None:
        api.check_plot(plot)  # refused before anything is built
    _, built, data = api.check_with_data(config, list(overrides or []))
    if plot is not None:
        from .graph_plot import write_graph

        write_graph(built, plot, config.stem)
    if as_json:
        layers = [
            {
                "type": r.type,
                **({"name": r.name, "inputs": list(r.inputs)} if built.wired else {}),
                "output_shape": list(r.output_shape),
                "params": r.params,
                "trainable_params": r.trainable_params,
            }
            for r in built.summary
        ]
        print(
            json.dumps(
                {
                    "layers": layers,
                    "total_params": built.total_params,
                    "trainable_params": built.trainable_params,
                    "frozen_params": built.total_params - built.trainable_params,
                    "notes": built.notes,
                    "data": data.as_dict(),
                }
            )
        )
        return
    out_console.print(summary_table(built, title=f"{config.name}: valid"))
    for table in data_tables(data):
        out_console.print(table)
    for note in built.notes:
        out_console.print(escape(note), highlight=False, soft_wrap=True)


@app.command()
@handles_errors
def init(
    preset: Annotated[Optional[str], typer.Argument(help="The preset to start from (see --list).")] = None,
    dest: Annotated[
        Optional[Path], typer.Argument(help="Where to write it (default ./PRESET.yaml; a folder gets PRESET.yaml).")
    ] = None,
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
    written, *bases = presets.write_preset(preset, dest, force)
    also = f" (and its base {', '.join(map(str, bases))})" if bases else ""
    out_console.print(
        escape(f"wrote {written}{also}; train it with: dltrain fit {written}"), highlight=False, soft_wrap=True
    )


@app.command()
@handles_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint (.pt) or a run directory (uses best.pt).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx, pt2 or torchscript.")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="The file to write (default: beside the checkpoint).")
    ] = None,
) -> None:
    """Export a checkpoint for deployment, checked against the PyTorch model; preprocessing JSON beside it."""
    from .export import export as export_model

    result = export_model(checkpoint, fmt, output)
    out_console.print(
        escape(
            f"wrote {result.path} and {result.metadata_path} (checked on {result.samples} test samples: "
            f"largest difference {result.max_abs_diff:.2g})"
        ),
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@handles_errors
def serve(
    model: Annotated[
        Path, typer.Argument(help="A checkpoint (.pt), a run directory (uses best.pt) or an .onnx export.")
    ],
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", help="Server processes, each with its own copy of the model.")
    ] = 1,
    max_batch: Annotated[
        int,
        typer.Option("--max-batch", help="Samples per forward pass when requests arrive together (1: no batching)."),
    ] = 64,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", help="How long a request may wait for others to batch with.")
    ] = 2.0,
    max_instances: Annotated[
        int, typer.Option("--max-instances", help="Most instances (or files) per request; more is a 413.")
    ] = 1024,
    max_request_mb: Annotated[
        float, typer.Option("--max-request-mb", help="Largest request body in MiB; larger is a 413.")
    ] = 16.0,
    device: Annotated[
        str,
        typer.Option("--device", help="auto, cpu, cuda, cuda:N (a checkpoint); cuda uses onnxruntime's CUDA provider."),
    ] = "auto",
) -> None:
    """Serve a model over HTTP: POST /predict (JSON), /predict/files (images); GET /metadata, /health, /docs."""
    from .serve.options import ServeOptions
    from .serve.server import serve as run_server

    options = ServeOptions(
        str(model), host, port, workers, max_batch, max_wait_ms, max_instances, max_request_mb, device
    )
    run_server(options, announce=lambda line: print(line, flush=True))


@app.command()
@handles_errors
def tune(
    config: Annotated[Path, typer.Argument(help="A YAML config with a `tune:` block (metric, pruner, space).")],
    overrides: SetOption = None,
    trials: Annotated[
        int, typer.Option("--trials", help="Run this many more trials (a rerun continues the study).")
    ] = 20,
    jobs: Annotated[int, typer.Option("--jobs", help="Trials in parallel, in this many warm worker processes.")] = 1,
    storage: Annotated[
        Optional[str],
        typer.Option(
            "--storage",
            help="Optuna storage URL (default: sqlite study.db beside the trials; postgresql://... to share).",
        ),
    ] = None,
    study: Annotated[
        Optional[str], typer.Option("--study", help="The study's name (default: the config's name).")
    ] = None,
    timeout: Annotated[
        Optional[float], typer.Option("--timeout", help="Stop starting new trials after this many seconds.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Search hyperparameters with Optuna (TPE, pruning); write best.yaml, trials.csv and plots."""
    from . import tune as tuning

    def say(text: str) -> None:
        err_console.print(text, highlight=False, soft_wrap=True, markup=False)

    summary = tuning.tune(
        config, list(overrides or []), trials=trials, jobs=jobs, storage=storage, study=study, timeout=timeout, say=say
    )
    if as_json:
        print(json.dumps(summary, default=str))
        return
    out_console.print(tuning.trials_rich_table(summary))
    if "best" in summary:
        best = summary["best"]
        out_console.print(
            f"best: trial {best['number']} with {summary['metric']} {best['value']:.4f}; "
            f"wrote {summary['best_yaml']} (train it with: dltrain fit {summary['best_yaml']}) and "
            f"{', '.join(summary['plots'])}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


@app.command(context_settings={"allow_interspersed_args": True})
@handles_errors
def runs(
    args: Annotated[Optional[list[str]], typer.Argument(help="[DIR] (default runs), or: compare RUN RUN...")] = None,
    as_json: JsonOption = False,
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="compare: draw the runs' curves overlaid into this image.")
    ] = None,
) -> None:
    """List the runs under DIR (status, epochs, best monitored value, test metrics); `runs compare RUN RUN...` sets them side by side."""
    from . import runs as runs_module

    items = list(args or [])
    if items[:1] == ["compare"]:
        if len(items) < 3:
            raise typer.BadParameter("give two or more run directories: dltrain runs compare RUN RUN...")
        report = runs_module.compare(list[str | Path](items[1:]))
        if plot is not None:
            runs_module.plot_compare(list[str | Path](items[1:]), plot)
        if as_json:
            print(json.dumps(report, default=str))
            return
        for table in runs_module.compare_tables(report):
            out_console.print(table)
        if plot is not None:
            out_console.print(f"wrote {plot}", highlight=False, soft_wrap=True)
        return
    if plot is not None or len(items) > 1:
        raise typer.BadParameter("`dltrain runs [DIR]` takes one folder; --plot belongs to `dltrain runs compare`")
    found = runs_module.list_runs(items[0] if items else "runs")
    if as_json:
        print(json.dumps({"runs": found}))
        return
    out_console.print(runs_module.runs_table(found))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editor validation and completion)."""
    from .config import json_schema

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
