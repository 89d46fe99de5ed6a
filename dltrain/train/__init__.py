"""Training: the loop, its callbacks, checkpoints, the run directory, devices, precision and everything a run uses."""
