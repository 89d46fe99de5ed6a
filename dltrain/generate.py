"""`dltrain generate`: continue a prompt with a trained language model, one token at a time.

The prompt is tokenized by the checkpoint's own tokenizer; each step feeds the last
`sequence_length` tokens (the window the model was trained on), reads the scores of
the last position, and draws the next token: the most likely one at temperature 0, else
from the softmax of scores / temperature, among the `top_k` most likely when given.
Draws come from a generator seeded with `seed`, so a seed gives the same text every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .api import restore_network
from .data.tokenize import encode_running, fixed_length, from_json
from .errors import UserError
from .inference import text_problem
from .train import checkpoint
from .train.distributed import resolve_device


@dataclass
class Generated:
    """A prompt, its continuation, and the ids drawn."""

    prompt: str
    text: str
    tokens: list[int]


def next_token(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> int:
    """One id from `(V,)` scores: greedy at temperature 0, else sampled (from the top k, when given)."""
    if temperature == 0:
        return int(logits.argmax())
    logits = logits.double() / temperature
    if top_k is not None and top_k < logits.numel():
        floor = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < floor, float("-inf"))
    probabilities = logits.softmax(dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))


def check_options(max_tokens: int, temperature: float, top_k: int | None) -> None:
    if max_tokens < 1:
        raise UserError(f"--max-tokens must be 1 or more; received {max_tokens}")
    if not math.isfinite(temperature) or temperature < 0:
        raise UserError(f"--temperature must be a finite number, 0 (greedy) or more; received {temperature}")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top-k must be 1 or more; received {top_k}")


@torch.inference_mode()
def generate(
    path: str | Path,
    prompt: str,
    max_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Generated:
    """`max_tokens` new tokens after `prompt`, drawn from the language model of checkpoint `path`."""
    check_options(max_tokens, temperature, top_k)
    if (problem := text_problem(prompt)) and "UTF-8" in problem:
        raise UserError(f"--prompt {problem}")
    saved = checkpoint.load(path)
    if saved.tokenizer is None or len(saved.input_shape) != 1:
        raise UserError(f"'{saved.path}' is not a language model (it was not trained on text_file data)")
    tokenizer = from_json(saved.tokenizer)
    if fixed_length(tokenizer) is not None:
        raise UserError(f"'{saved.path}' is a text classifier; use `dltrain predict {saved.path} --text ...`")
    target = resolve_device(device)
    network = restore_network(saved).to(target)
    window = saved.input_shape[0]
    ids = encode_running(tokenizer, prompt).tolist()
    if not ids:
        raise UserError("--prompt is empty (it gives no tokens); give some text to continue")
    generator = torch.Generator().manual_seed(seed)
    drawn: list[int] = []
    for _ in range(max_tokens):
        context = torch.tensor([(ids + drawn)[-window:]], dtype=torch.int64, device=target)  # (1, t)
        logits = network(context)[0, -1].float().cpu()  # (V,): the scores of the token after the last
        drawn.append(next_token(logits, temperature, top_k, generator))
    return Generated(prompt, tokenizer.decode(drawn, skip_special_tokens=False), drawn)
