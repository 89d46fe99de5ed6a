"""Optimizers by their Keras names (described, with Keras's defaults, in `dltrain.schema.optim`)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.optim.optimizer import ParamsT

from ..schema.optim import OPTIMIZERS, AdagradParams, AdamParams, AdamWParams, RmspropParams, SgdParams

OptimizerFactory = Callable[..., torch.optim.Optimizer]


@OPTIMIZERS.implement("sgd")
def sgd(params: ParamsT, p: SgdParams, **options: Any) -> torch.optim.Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    return torch.optim.SGD(
        params, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov, weight_decay=p.weight_decay, **options
    )


@OPTIMIZERS.implement("adam")
def adam(params: ParamsT, p: AdamParams, **options: Any) -> torch.optim.Optimizer:
    """Adam (weight_decay as an L2 term in the gradient, as torch.optim.Adam)."""
    return torch.optim.Adam(
        params,
        lr=p.lr,
        betas=(p.beta_1, p.beta_2),
        eps=p.epsilon,
        weight_decay=p.weight_decay,
        amsgrad=p.amsgrad,
        **options,
    )


@OPTIMIZERS.implement("adamw")
def adamw(params: ParamsT, p: AdamWParams, **options: Any) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    return torch.optim.AdamW(
        params,
        lr=p.lr,
        betas=(p.beta_1, p.beta_2),
        eps=p.epsilon,
        weight_decay=p.weight_decay,
        amsgrad=p.amsgrad,
        **options,
    )


@OPTIMIZERS.implement("rmsprop")
def rmsprop(params: ParamsT, p: RmspropParams) -> torch.optim.Optimizer:
    """RMSprop."""
    return torch.optim.RMSprop(
        params,
        lr=p.lr,
        alpha=p.rho,
        eps=p.epsilon,
        momentum=p.momentum,
        centered=p.centered,
        weight_decay=p.weight_decay,
    )


@OPTIMIZERS.implement("adagrad")
def adagrad(params: ParamsT, p: AdagradParams) -> torch.optim.Optimizer:
    """Adagrad."""
    return torch.optim.Adagrad(
        params,
        lr=p.lr,
        initial_accumulator_value=p.initial_accumulator_value,
        eps=p.epsilon,
        weight_decay=p.weight_decay,
    )


def build_optimizer(params: ParamsT, config: Any, options: dict[str, Any] | None = None) -> torch.optim.Optimizer:
    """The optimizer a validated `compile.optimizer` names, over `params`.

    `options` are the device's keyword arguments (`fused`, `capturable` on CUDA, from
    `dltrain.train.speedups`); only sgd, adam and adamw are given any.
    """
    factory: OptimizerFactory = OPTIMIZERS.get(config.type).obj
    return factory(params, config, **options) if options else factory(params, config)
