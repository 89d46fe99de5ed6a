"""dltrain: declarative deep-learning training. One YAML file, PyTorch underneath.

    from dltrain import fit, evaluate
    result = fit("configs/digits_mlp.yaml", ["fit.epochs=5"])
    report = evaluate(result.run_dir / "best.pt")

`fit`, `evaluate` and `check` are imported on first use, so `import dltrain` (and the
CLI's `--help`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import check, evaluate, fit

__all__ = ["__version__", "check", "evaluate", "fit"]


def __getattr__(name: str) -> Any:
    if name in ("check", "evaluate", "fit"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'dltrain' has no attribute {name!r}")
