"""The network: layers, merges, graphs, backbones, losses, metrics, optimizers and schedules (no data, no training loop)."""
