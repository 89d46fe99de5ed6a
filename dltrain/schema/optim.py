"""Optimizers (`compile.optimizer`) by their Keras names, with Keras's defaults. Built in `dltrain.nn.optim`.

`lr` may also be written `learning_rate`, as in Keras.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat

from .._params import Params
from .._registry import Registry

OPTIMIZERS: Registry[Any] = Registry("optimizer", case_sensitive=False, implemented_in=("dltrain.nn.optim",))
optimizer = OPTIMIZERS.describes()

LearningRate = Annotated[
    float,
    Field(
        gt=0.0, alias="learning_rate", description="The learning rate (also `learning_rate`); a schedule multiplies it."
    ),
]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
Epsilon = Annotated[float, Field(gt=0.0, description="Added to the denominator for numerical stability.")]
Momentum = Annotated[float, Field(ge=0.0, description="Momentum factor (0: none).")]


class OptimizerParams(Params):
    """Keys every optimizer accepts."""

    lr: LearningRate = 0.001
    weight_decay: NonNegativeFloat = Field(0.0, description="L2 penalty on the weights (decoupled for adamw).")


@optimizer
class SgdParams(OptimizerParams):
    """Stochastic gradient descent, with optional (Nesterov) momentum."""

    type: Literal["sgd"]
    lr: LearningRate = 0.01
    momentum: Momentum = 0.0
    nesterov: bool = Field(False, description="Use Nesterov momentum.")


@optimizer
class AdamParams(OptimizerParams):
    """Adam (weight_decay as an L2 term in the gradient, as torch.optim.Adam)."""

    type: Literal["adam"]
    beta_1: Annotated[Beta, Field(description="Decay rate of the mean of the gradients.")] = 0.9
    beta_2: Annotated[Beta, Field(description="Decay rate of the mean of the squared gradients.")] = 0.999
    epsilon: Epsilon = 1e-7
    amsgrad: bool = Field(False, description="Use the AMSGrad variant.")


@optimizer
class AdamWParams(AdamParams):
    """Adam with decoupled weight decay."""

    type: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: NonNegativeFloat = Field(0.004, description="Decoupled weight decay per step (times the lr).")


@optimizer
class RmspropParams(OptimizerParams):
    """RMSprop."""

    type: Literal["rmsprop"]
    rho: Annotated[Beta, Field(description="Decay rate of the mean of the squared gradients.")] = 0.9
    momentum: Momentum = 0.0
    epsilon: Epsilon = 1e-7
    centered: bool = Field(False, description="Normalize by the variance of the gradients, not their second moment.")


@optimizer
class AdagradParams(OptimizerParams):
    """Adagrad."""

    type: Literal["adagrad"]
    initial_accumulator_value: NonNegativeFloat = Field(0.1, description="Starting value of the sums of squares.")
    epsilon: Epsilon = 1e-7
