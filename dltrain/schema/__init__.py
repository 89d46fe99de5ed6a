"""The config's schema: every parameter model and the registries that name them, without torch.

Each registry here describes its names (parameter model, summary, key descriptions);
the modules that build them (`dltrain.nn.layers`, `dltrain.nn.losses`, ...) attach the
implementations, imported only when a name is built. So `dltrain schema`, `init` and
`--help` never import torch, and `list-models` never imports torchvision.
"""
