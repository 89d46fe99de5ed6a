"""Optimizers by their Keras names, with Keras's defaults.

`lr` may also be written `learning_rate`, as in Keras.
"""

from __future__ import annotations

from typing import Annotated, Callable, Iterable, Literal

import torch
from pydantic import Field, NonNegativeFloat

from ._params import Params
from ._registry import Registry

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], Params], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer", case_sensitive=False)

LearningRate = Annotated[float, Field(gt=0.0, alias="learning_rate")]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
Epsilon = Annotated[float, Field(gt=0.0)]


class OptimizerParams(Params):
    lr: LearningRate = 0.001
    weight_decay: NonNegativeFloat = 0.0


class SgdParams(OptimizerParams):
    type: Literal["sgd"]
    lr: LearningRate = 0.01
    momentum: Annotated[float, Field(ge=0.0)] = 0.0
    nesterov: bool = False


class AdamParams(OptimizerParams):
    type: Literal["adam"]
    beta_1: Beta = 0.9
    beta_2: Beta = 0.999
    epsilon: Epsilon = 1e-7
    amsgrad: bool = False


class AdamWParams(AdamParams):
    type: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: NonNegativeFloat = 0.004


class RmspropParams(OptimizerParams):
    type: Literal["rmsprop"]
    rho: Beta = 0.9
    momentum: Annotated[float, Field(ge=0.0)] = 0.0
    epsilon: Epsilon = 1e-7
    centered: bool = False


class AdagradParams(OptimizerParams):
    type: Literal["adagrad"]
    initial_accumulator_value: NonNegativeFloat = 0.1
    epsilon: Epsilon = 1e-7


@OPTIMIZERS.register("sgd", SgdParams)
def sgd(params: Iterable[torch.nn.Parameter], p: SgdParams) -> torch.optim.Optimizer:
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, nesterov=p.nesterov, weight_decay=p.weight_decay)


@OPTIMIZERS.register("adam", AdamParams)
def adam(params: Iterable[torch.nn.Parameter], p: AdamParams) -> torch.optim.Optimizer:
    """Adam (weight_decay as an L2 term in the gradient, as torch.optim.Adam)."""
    return torch.optim.Adam(
        params, lr=p.lr, betas=(p.beta_1, p.beta_2), eps=p.epsilon, weight_decay=p.weight_decay, amsgrad=p.amsgrad
    )


@OPTIMIZERS.register("adamw", AdamWParams)
def adamw(params: Iterable[torch.nn.Parameter], p: AdamWParams) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay."""
    return torch.optim.AdamW(
        params, lr=p.lr, betas=(p.beta_1, p.beta_2), eps=p.epsilon, weight_decay=p.weight_decay, amsgrad=p.amsgrad
    )


@OPTIMIZERS.register("rmsprop", RmspropParams)
def rmsprop(params: Iterable[torch.nn.Parameter], p: RmspropParams) -> torch.optim.Optimizer:
    """RMSprop."""
    return torch.optim.RMSprop(
        params, lr=p.lr, alpha=p.rho, eps=p.epsilon, momentum=p.momentum, centered=p.centered,
        weight_decay=p.weight_decay,
    )


@OPTIMIZERS.register("adagrad", AdagradParams)
def adagrad(params: Iterable[torch.nn.Parameter], p: AdagradParams) -> torch.optim.Optimizer:
    """Adagrad."""
    return torch.optim.Adagrad(
        params, lr=p.lr, initial_accumulator_value=p.initial_accumulator_value, eps=p.epsilon,
        weight_decay=p.weight_decay,
    )


def build_optimizer(params: Iterable[torch.nn.Parameter], config: Params) -> torch.optim.Optimizer:
    """The optimizer a validated `compile.optimizer` names, over `params`."""
    return OPTIMIZERS.get(config.type).obj(params, config)  # type: ignore[attr-defined]
