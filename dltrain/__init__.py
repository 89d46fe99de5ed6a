"""dltrain: declarative deep-learning training. One YAML file, PyTorch underneath."""

__version__ = "0.1.0"
