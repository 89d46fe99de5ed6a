"""dltrain: declarative deep-learning training. One YAML file, PyTorch underneath.

    from dltrain import fit, evaluate
    result = fit("configs/digits_mlp.yaml", ["fit.epochs=5"])
    report = evaluate(result.run_dir / "best.pt")
"""

__version__ = "0.1.0"

__all__ = ["__version__", "check", "evaluate", "fit"]


def __getattr__(name: str) -> object:
    """`fit`, `evaluate` and `check` on first use: importing dltrain (or the ONNX server) must not import torch."""
    if name in ("check", "evaluate", "fit"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'dltrain' has no attribute {name!r}")
