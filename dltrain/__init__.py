"""dltrain: declarative deep-learning training. One YAML file, PyTorch underneath.

    from dltrain import fit, evaluate
    result = fit("configs/digits_mlp.yaml", ["fit.epochs=5"])
    report = evaluate(result.run_dir / "best.pt")
"""

__version__ = "0.1.0"

from .api import check, evaluate, fit  # noqa: E402  (the version must exist first)

__all__ = ["__version__", "check", "evaluate", "fit"]
