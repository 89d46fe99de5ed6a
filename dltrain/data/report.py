"""What `dltrain check` says about the data before any training: per split, what it holds.

Every split gets its rows, its targets (class balance, or the range of regression
targets) and its missing values; its inputs are described by the first describer that
recognises them (`DESCRIBERS`): token ids get length percentiles, numbers get per-feature
ranges, inputs read on demand (image files) are not scanned. A new kind of input adds a
describer; the report stays one function.

Ranges are in the source's units (normalization undone), so they can be compared with
the files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from .base import DataBundle, LazyInputs, Preprocessing, Split

MAX_FEATURES = 12  # feature ranges shown per split; the rest are counted
PERCENTILES = (5, 50, 95)


@dataclass
class FeatureRange:
    """One input feature (a column, a channel) of a split."""

    name: str
    min: float
    max: float
    mean: float


@dataclass
class SplitReport:
    """What one split holds."""

    split: str
    rows: int
    targets: dict[str, int] | None = None  # class (or output) → count
    target_range: FeatureRange | None = None  # regression targets
    missing: int | None = None  # NaN or infinite input and target cells (None: not scanned)
    features: list[FeatureRange] = field(default_factory=list)
    more_features: int = 0  # features past MAX_FEATURES, not listed
    lengths: dict[str, float] | None = None  # token sequences: 'p5', 'p50', 'p95', 'max' tokens
    note: str | None = None


@dataclass
class DataReport:
    """The report of every split of a data set."""

    task: str
    input_shape: list[int]
    splits: list[SplitReport]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Describer = Callable[[Any, Preprocessing, list[str]], dict[str, Any]]


def _lazy(x: Any) -> bool:
    return isinstance(x, LazyInputs)


def _tokens(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and not x.is_floating_point() and x.dim() == 2


def _numbers(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def describe_lazy(x: Any, prep: Preprocessing, names: list[str]) -> dict[str, Any]:
    return {"note": "read from files batch by batch: values not scanned"}


def describe_tokens(x: torch.Tensor, prep: Preprocessing, names: list[str]) -> dict[str, Any]:
    """Length percentiles of token-id rows (0 is padding)."""
    lengths = (x != 0).sum(dim=1).double()
    if not len(lengths):
        return {}
    quantiles = torch.quantile(lengths, torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64))
    found = {f"p{p}": float(q) for p, q in zip(PERCENTILES, quantiles)}
    return {"lengths": {**found, "max": float(lengths.max())}}


def describe_numbers(x: torch.Tensor, prep: Preprocessing, names: list[str]) -> dict[str, Any]:
    """Min, max and mean per feature (last axis) or per channel ([C, H, W]), in the source's units."""
    values = _source_units(x.double(), prep)
    if values.dim() == 4:  # (N, C, H, W): per channel
        values = values.transpose(0, 1).reshape(values.shape[1], -1).T
    else:  # (N, F) or (N, T, F): per feature
        values = values.reshape(-1, values.shape[-1]) if values.dim() > 1 else values.reshape(-1, 1)
    finite = torch.where(values.isfinite(), values, torch.nan)
    count = values.shape[1]
    labels = names if len(names) == count else [f"{'channel' if x.dim() == 4 else 'feature'} {i}" for i in range(count)]
    shown = min(count, MAX_FEATURES)
    low, high = _nan_reduce(finite[:, :shown], torch.amin), _nan_reduce(finite[:, :shown], torch.amax)
    mean = finite[:, :shown].nanmean(dim=0)
    size = torch.stack([low.abs(), high.abs()]).nan_to_num(0.0).amax(dim=0) + 1.0
    low, high, mean = (torch.where(v.abs() < 1e-6 * size, 0.0, v) for v in (low, high, mean))  # float32 round-off
    features = [FeatureRange(labels[i], float(low[i]), float(high[i]), float(mean[i])) for i in range(shown)]
    return {"features": features, "more_features": count - shown}


DESCRIBERS: list[tuple[Callable[[Any], bool], Describer]] = [
    (_lazy, describe_lazy),
    (_tokens, describe_tokens),
    (_numbers, describe_numbers),
]


def _nan_reduce(values: torch.Tensor, reduce: Callable[..., torch.Tensor]) -> torch.Tensor:
    """`reduce` over rows ignoring NaN (a column of NaN only stays NaN)."""
    fill = torch.inf if reduce is torch.amin else -torch.inf
    out = reduce(torch.nan_to_num(values, nan=fill), dim=0) if len(values) else torch.full((values.shape[1],), fill)
    return torch.where(out.isinf(), torch.nan, out)


def _source_units(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Undo `normalize` (standardize, then scale) so ranges read as in the files; the layout stays."""
    if prep.mean is not None and prep.std is not None:
        x = x * prep.std.double() + prep.mean.double()
    if prep.scale is not None:
        x = x * prep.scale
    return x


def feature_names(prep: Preprocessing) -> list[str]:
    """The model's input columns of a table: numeric columns by name, one-hot columns as 'column=category'."""
    table = prep.table or {}
    names: list[str] = []
    for name in table.get("features", []):
        categories = table.get("categories", {}).get(name)
        names += [f"{name}={c}" for c in categories] if categories is not None else [name]
    return names


def _targets(split: Split, bundle: DataBundle) -> dict[str, Any]:
    """Class balance (classification, binary) or the targets' range (regression)."""
    y = split.y
    if bundle.task == "classification":
        counts = torch.bincount(y.reshape(-1).long(), minlength=bundle.num_classes or 0).tolist()
        return {"targets": dict(zip(bundle.class_names or [str(i) for i in range(len(counts))], counts))}
    if bundle.task == "binary":
        y = y.reshape(len(y), -1)
        if y.shape[1] == 1:
            names = bundle.class_names or ["0", "1"]
            positives = int((y[:, 0] > 0.5).sum())
            return {"targets": {names[0]: len(y) - positives, names[1]: positives}}
        return {"targets": {f"output {i}": int(v) for i, v in enumerate((y > 0.5).sum(dim=0).tolist())}}
    values = y.double().reshape(-1)
    finite = values[values.isfinite()]
    if not len(finite):
        return {}
    return {"target_range": FeatureRange("target", float(finite.min()), float(finite.max()), float(finite.mean()))}


def _missing(split: Split) -> int | None:
    if isinstance(split.x, LazyInputs):
        return None
    bad = 0
    for values in (split.x, split.y):
        if values.is_floating_point():
            bad += int((~values.isfinite()).sum())
    return bad


def split_report(name: str, split: Split, bundle: DataBundle) -> SplitReport:
    """Rows, targets, missing cells and the inputs' description of one split."""
    if not isinstance(split.y, torch.Tensor) or isinstance(split.x, dict):  # named inputs or outputs: rows only
        return SplitReport(name, len(split), missing=None)
    report = SplitReport(name, len(split), missing=_missing(split), **_targets(split, bundle))
    names = feature_names(bundle.preprocessing)
    for recognises, describe in DESCRIBERS:
        if recognises(split.x):
            for key, value in describe(split.x, bundle.preprocessing, names).items():
                setattr(report, key, value)
            break
    return report


def data_report(bundle: DataBundle) -> DataReport:
    """The report of every split `bundle` has (train, val, test)."""
    splits = [
        split_report(name, split, bundle)
        for name, split in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))
        if split is not None
    ]
    return DataReport(bundle.task, list(bundle.input_shape), splits)
