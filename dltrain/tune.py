"""`dltrain tune`: hyperparameter search with Optuna over the `tune:` block of a config.

The search space names config keys as `--set` spells them (`model.layers[0].units`).
Every key and every end of every range is applied to the config and validated before
the first trial, so a typo or a value the key cannot take is reported with its line.

Each trial is an ordinary run directory, `runs/<name>/tune-<study>/trial-NNNN/`
(resumable, evaluable, exportable), plus a `trial.json`; the study lives in
`study.db` beside them (Optuna's RDB storage on SQLite), so running `tune` again
continues it, and `--storage postgresql://...` shares it between machines.

Trials run in warm worker processes: each of the `--jobs` processes imports torch,
scikit-learn and Optuna once and runs its share of trials one after another, so a
trial pays for training, not for start-up (see `bench/tune_overhead.py`). Optuna is
imported only here, lazily.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError, Problem, RunError, UserError
from .schema.tune import TuneConfig

if TYPE_CHECKING:
    from .config import LoadedConfig

Say = Callable[[str], None]


def maximize(tune: TuneConfig) -> bool:
    """Whether the study maximizes `tune.metric` (auto: accuracy-like metrics grow when better)."""
    if tune.direction != "auto":
        return tune.direction == "maximize"
    from .train.monitor import greater_is_better

    return greater_is_better(tune.metric)


# --- the plan: validated before any trial ---------------------------------------------


@dataclass
class Plan:
    """A validated tune: the base config, its search space, and where the study lives."""

    config: Path
    overrides: list[str]
    base: dict[str, Any]  # the resolved config without `tune:` (what every trial starts from)
    tune: TuneConfig
    study: str
    folder: Path
    storage: str

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if maximize(self.tune) else "minimize"


def plan(
    config: str | Path,
    overrides: list[str] | None = None,
    study: str | None = None,
    storage: str | None = None,
    root: Path = Path("runs"),
) -> Plan:
    """Load the config and check its `tune:` block: every key, every range end, the metric."""
    from .config import load_config, with_seed

    loaded = with_seed(load_config(config, overrides))
    tune = loaded.config.tune
    if tune is None:
        raise UserError(
            f"{Path(config).name} has no `tune:` block; add one, e.g.\n"
            "tune:\n  metric: val_accuracy\n  space:\n    compile.optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}"
        )
    base = loaded.resolved()
    check_space(loaded, base, tune)
    name = loaded.config.name or "run"
    study = study or name
    if not study.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError(f"--study {study!r}: use letters, digits, '-', '_' and '.' only (it names a folder)")
    folder = root / name / f"tune-{study}"
    return Plan(
        Path(config),
        list(overrides or []),
        base,
        tune,
        study,
        folder,
        storage or f"sqlite:///{(folder / 'study.db').resolve()}",
    )


def check_space(loaded: LoadedConfig, base: dict[str, Any], tune: TuneConfig) -> None:
    """Every searched key takes both ends of its range (or every choice), and the metric is a row column."""
    from .config import validate
    from .config.compose import apply_overrides, problem

    problems: list[Problem] = []
    for key, dist in tune.space.items():
        path = ("tune", "space", key)
        for value in dist.probes():
            raw = copy.deepcopy(base)
            try:
                apply_overrides(raw, [f"{key}={json.dumps(value)}"])
                validate(raw, loaded.source)
            except ConfigError as exc:
                reasons = "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems)
                problems.append(
                    problem(loaded.origins, path, f"the value {value!r} is not accepted: {reasons}", loaded.source)
                )
                break
            except UserError as exc:
                problems.append(problem(loaded.origins, path, str(exc).removeprefix(f"--set {key}: "), loaded.source))
                break
    columns = row_columns(loaded)
    if tune.metric not in columns:
        problems.append(
            problem(
                loaded.origins,
                ("tune", "metric"),
                f"'{tune.metric}' is not a column of the epoch row; choose one of: {', '.join(columns)}",
                loaded.source,
            )
        )
    if problems:
        raise ConfigError(problems, loaded.source)


def row_columns(loaded: LoadedConfig) -> list[str]:
    """The epoch row's columns a trial can be judged by (val_* when the data has a validation set)."""
    metrics = loaded.config.compile.metrics
    if isinstance(metrics, dict):  # several outputs: `<output>_loss`, `<output>_<metric>`
        named = [f"{out}_{key}" for out, found in metrics.items() for key in ("loss", *(m.type for m in found))]
    else:
        named = [m.type for m in metrics]
    keys = ["loss", *named]
    return keys + [f"val_{k}" for k in keys]


# --- the study -------------------------------------------------------------------------


def _storage(url: str) -> Any:
    import optuna

    if url.startswith("sqlite:"):  # several processes write one file: wait for its lock instead of failing
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    return optuna.storages.RDBStorage(url)


def open_study(p: Plan) -> Any:
    """The study (created on the first run, loaded after), with TPE sampling and the configured pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    epochs = int(p.base["fit"]["epochs"])
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=p.tune.startup_trials, n_warmup_steps=p.tune.warmup_epochs
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs),
        "none": optuna.pruners.NopPruner,
    }
    sampler = optuna.samplers.TPESampler(n_startup_trials=p.tune.startup_trials, constant_liar=True)
    if p.storage.startswith("sqlite:"):
        p.folder.mkdir(parents=True, exist_ok=True)
    try:
        study = optuna.create_study(
            study_name=p.study,
            storage=_storage(p.storage),
            sampler=sampler,
            pruner=pruners[p.tune.pruner](),
            direction=p.direction,
            load_if_exists=True,
        )
    except ImportError as exc:
        raise UserError(f"--storage {p.storage}: {exc}") from None
    if study.direction.name.lower() != p.direction:
        raise UserError(
            f"study {p.study!r} in {p.storage} was created to {study.direction.name.lower()}, "
            f"but tune.metric {p.tune.metric} asks to {p.direction}; use another --study"
        )
    study.set_user_attr("metric", p.tune.metric)
    return study


def objective(p: Plan, say: Say) -> Callable[[Any], float]:
    """One trial: draw the parameters, train an ordinary run in `trial-NNNN/`, report each epoch for pruning."""
    import optuna
    import yaml

    from . import api
    from ._files import write_text_atomic
    from .config.compose import apply_overrides
    from .reporting import Reporter

    class TrialReporter(Reporter):
        def __init__(self, trial: optuna.Trial) -> None:
            self.trial = trial
            self.values: list[float] = []

        def epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
            value = row.get(p.tune.metric)
            if value is None:
                raise RunError(
                    f"tune.metric '{p.tune.metric}' is not in the epoch row (columns: {', '.join(row)}); "
                    f"a val_* metric needs validation data (fit.validation_split)"
                )
            self.values.append(float(value))
            self.trial.report(float(value), epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    def run(trial: optuna.Trial) -> float:
        params = {key: dist.suggest(trial, key) for key, dist in p.tune.space.items()}
        folder = p.folder / f"trial-{trial.number:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        raw = copy.deepcopy(p.base)
        apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in params.items()])
        config_file = folder / "config.yaml"
        write_text_atomic(config_file, yaml.safe_dump(raw, sort_keys=False))
        record = {"study": p.study, "number": trial.number, "params": params, "metric": p.tune.metric}
        trial.set_user_attr("run_dir", str(folder))
        reporter = TrialReporter(trial)
        started = time.perf_counter()
        state, value = "failed", None
        try:
            api.fit(config_file, run_dir=folder, reporter=reporter)
            value = reporter.values[-1]  # the trained model's value, as metrics.json reports it
            state = "complete"
            return value
        except optuna.TrialPruned:
            state = "pruned"
            raise
        finally:
            seconds = time.perf_counter() - started
            shown = value if value is not None else (reporter.values[-1] if reporter.values else None)
            write_text_atomic(
                folder / "trial.json",
                json.dumps(
                    {
                        **record,
                        "state": state,
                        "value": shown,
                        "epochs": len(reporter.values),
                        "seconds": round(seconds, 3),
                    },
                    indent=2,
                )
                + "\n",
            )
            text = f"{p.tune.metric} {shown:.4f}" if shown is not None else "no epoch"
            say(
                f"trial {trial.number:>3} {state:<8} {text} after {len(reporter.values)} epoch(s), {seconds:.1f}s  "
                + " ".join(f"{k}={_short(v)}" for k, v in params.items())
            )

    return run


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def work(p: Plan, trials: int | None, timeout: float | None, say: Say, threads: int | None = None) -> None:
    """Run trials of the study in this process (one warm worker)."""

    if threads:
        import torch

        torch.set_num_threads(threads)
    study = open_study(p)
    study.optimize(objective(p, say), n_trials=trials, timeout=timeout, catch=(RunError,), gc_after_trial=False)


def tune(
    config: str | Path,
    overrides: list[str] | None = None,
    *,
    trials: int | None = 20,
    jobs: int = 1,
    storage: str | None = None,
    study: str | None = None,
    timeout: float | None = None,
    say: Say = lambda text: None,
) -> dict[str, Any]:
    """Validate, then run `trials` more trials in `jobs` warm processes; write best.yaml, trials.csv and plots."""
    if jobs < 1:
        raise UserError(f"--jobs must be 1 or more; received {jobs}")
    if trials is not None and trials < 1:
        raise UserError(f"--trials must be 1 or more; received {trials}")
    p = plan(config, overrides, study, storage)
    before = len(open_study(p).trials)
    say(
        f"study {p.study} ({p.direction} {p.tune.metric}, {before} trial(s) so far) in {p.storage}; "
        f"trials under {p.folder}"
    )
    if jobs == 1:
        work(p, trials, timeout, say)
    else:
        _run_workers(p, trials, jobs, timeout)
    return finish(p)


def _run_workers(p: Plan, trials: int | None, jobs: int, timeout: float | None) -> None:
    """`jobs` worker processes sharing the study; Ctrl-C reaches them all (one process group) and is awaited."""
    shares = [None] * jobs if trials is None else [trials // jobs + (i < trials % jobs) for i in range(jobs)]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    }
    workers = []
    for share in shares:
        if share == 0:
            continue
        job = {
            "config": str(p.config),
            "overrides": p.overrides,
            "study": p.study,
            "storage": p.storage,
            "trials": share,
            "timeout": timeout,
            "threads": threads,
        }
        workers.append(subprocess.Popen([sys.executable, "-m", "dltrain.tune", json.dumps(job)], env=env))
    try:
        codes = [w.wait() for w in workers]
    except KeyboardInterrupt:
        for w in workers:
            w.wait()  # each marks its trial failed and saves its last.pt
        raise
    if any(code == 130 for code in codes):
        raise KeyboardInterrupt
    if any(codes):
        raise RunError(f"a tune worker failed (exit codes {codes}); its message is above")


def finish(p: Plan) -> dict[str, Any]:
    """best.yaml, trials.csv, history.png and importances.png in the study's folder; the summary."""
    import yaml

    from ._files import write_text_atomic
    from .config.compose import apply_overrides
    from .train.rundir import write_csv

    study = open_study(p)
    p.folder.mkdir(parents=True, exist_ok=True)
    rows = trials_table(study)
    write_csv(p.folder / "trials.csv", rows)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    summary: dict[str, Any] = {
        "study": p.study,
        "storage": p.storage,
        "folder": str(p.folder),
        "metric": p.tune.metric,
        "direction": p.direction,
        "trials": rows,
        "counts": {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)},
    }
    if complete:
        best = study.best_trial
        raw = copy.deepcopy(p.base)
        apply_overrides(raw, [f"{k}={json.dumps(v)}" for k, v in best.params.items()])
        header = (
            f"# dltrain fit {(p.folder / 'best.yaml').as_posix()}\n# The best trial ({best.number}) of study "
            f"{p.study}: {p.tune.metric} {best.value:.4f}.\n"
        )
        write_text_atomic(p.folder / "best.yaml", header + yaml.safe_dump(raw, sort_keys=False))
        summary.update(
            best={
                "number": best.number,
                "value": best.value,
                "params": best.params,
                "run_dir": best.user_attrs.get("run_dir"),
            },
            best_yaml=str(p.folder / "best.yaml"),
        )
        summary["plots"] = write_plots(study, p)
    return summary


def trials_table(study: Any) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, epochs reported, seconds, parameters."""
    rows = []
    for t in study.trials:
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "epochs": len(t.intermediate_values),
                "seconds": round(seconds, 2) if seconds is not None else None,
                **t.params,
            }
        )
    return rows


def write_plots(study: Any, p: Plan) -> list[str]:
    """history.png (each trial's value and the best so far) and importances.png, with matplotlib (no plotly)."""
    from .train.plots import _pyplot

    plt = _pyplot()
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    figure, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter([t.number for t in done], [t.value for t in done], s=14, label="trial")
    best, running = [], None
    for t in done:
        running = t.value if running is None else (max if p.direction == "maximize" else min)(running, t.value)
        best.append(running)
    ax.step([t.number for t in done], best, where="post", color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(p.tune.metric)
    ax.set_title(f"optimisation history ({len(done)} complete of {len(study.trials)})")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(p.folder / "history.png", dpi=100)
    plt.close(figure)
    written = [str(p.folder / "history.png")]
    importances = _importances(study)
    if importances:
        figure, ax = plt.subplots(figsize=(6, 0.5 * len(importances) + 1.5))
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names])
        ax.set_xlabel(f"importance for {p.tune.metric}")
        ax.set_title("parameter importances")
        figure.tight_layout()
        figure.savefig(p.folder / "importances.png", dpi=100)
        plt.close(figure)
        written.append(str(p.folder / "importances.png"))
    return written


def _importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator); empty with fewer than 3 complete trials."""
    import warnings

    import optuna

    if sum(t.state.name == "COMPLETE" for t in study.trials) < 3:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "too few trials": the plot's title says how many there were
            return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError):
        return {}


def _worker(argument: str) -> int:
    """`python -m dltrain.tune JOB`: one warm worker of `tune --jobs`; prints one line per trial."""
    job = json.loads(argument)
    p = plan(job["config"], job["overrides"], job["study"], job["storage"])
    try:
        work(p, job["trials"], job["timeout"], lambda text: print(text, file=sys.stderr, flush=True), job["threads"])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))


def trials_rich_table(summary: dict[str, Any]) -> Any:
    """The trials as a rich table, best first (data cells are text, never markup)."""
    from rich.table import Table
    from rich.text import Text

    rows = sorted(
        summary["trials"],
        key=lambda r: (
            r["value"] is None,
            -(r["value"] or 0) if summary["direction"] == "maximize" else (r["value"] or 0),
        ),
    )
    counts = ", ".join(f"{n} {s}" for s, n in summary["counts"].items())
    table = Table(title=f"study {summary['study']}: {counts}", title_justify="left")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    for column in columns:
        table.add_column(summary["metric"] if column == "value" else column, justify="right")
    for row in rows:
        table.add_row(*(Text(_short(row.get(c)) if row.get(c) is not None else "") for c in columns))
    return table
