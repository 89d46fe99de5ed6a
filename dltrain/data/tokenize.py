"""Text to token ids with Hugging Face `tokenizers`, fitted on the training split only.

A fitted tokenizer is one JSON text (`Tokenizer.to_str()`): it is stored in the
checkpoint and written beside every export, and `predict`, `evaluate`, `serve` and
`generate` rebuild it from that text, so new text is split exactly as the training
text was. Padding is id 0 (`[PAD]`, the first special token) and unknown tokens are
id 1 (`[UNK]`); the model derives its padding mask from `ids == 0`.

`tokenizers` is an optional extra (`pip install 'dltrain[text]'`), imported here only
when text is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import DataError
from ..inference import encode_texts as encode_texts  # the torch-free half (the ONNX server's too)
from ..inference import tokenizer_from_json
from ..schema.data import TokenizerParams

PAD, UNK = "[PAD]", "[UNK]"
SPECIAL = [PAD, UNK]  # ids 0 and 1, in this order


def _tokenizers() -> Any:
    from ..inference import tokenizers_package

    return tokenizers_package()


def _model_and_trainer(p: TokenizerParams) -> tuple[Any, Any, Any, Any]:
    """(model, trainer, pre-tokenizer, decoder) of one tokenizer type."""
    tk = _tokenizers()
    models, trainers, pre, dec = tk.models, tk.trainers, tk.pre_tokenizers, tk.decoders
    common = {"vocab_size": p.vocab_size, "min_frequency": p.min_frequency, "special_tokens": SPECIAL}
    if p.type == "word":
        return models.WordLevel(unk_token=UNK), trainers.WordLevelTrainer(**common), pre.Whitespace(), None
    if p.type == "char":
        every_char = pre.Split(tk.Regex(r"[\s\S]"), behavior="isolated")  # newlines and spaces are tokens too
        return models.WordLevel(unk_token=UNK), trainers.WordLevelTrainer(**common), every_char, dec.Fuse()
    if p.type == "bpe":
        trainer = trainers.BpeTrainer(**common, initial_alphabet=pre.ByteLevel.alphabet())
        return models.BPE(unk_token=UNK), trainer, pre.ByteLevel(add_prefix_space=False), dec.ByteLevel()
    trainer = trainers.WordPieceTrainer(**common)
    return models.WordPiece(unk_token=UNK), trainer, pre.BertPreTokenizer(), dec.WordPiece()


def fit_tokenizer(p: TokenizerParams, texts: Iterable[str]) -> Any:
    """A new tokenizer of `p.type`, its vocabulary learned from `texts` (the training split's)."""
    tk = _tokenizers()
    model, trainer, pre_tokenizer, decoder = _model_and_trainer(p)
    tokenizer = tk.Tokenizer(model)
    if p.lowercase:
        tokenizer.normalizer = tk.normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizer
    if decoder is not None:
        tokenizer.decoder = decoder
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.token_to_id(PAD) != 0:
        raise DataError("internal: the tokenizer's [PAD] token is not id 0")  # the model's mask relies on it
    return tokenizer


from_json = tokenizer_from_json  # the tokenizer a checkpoint stores, from its JSON text


def load_tokenizer_file(path: Path) -> Any:
    """`data.tokenizer.path`: a tokenizer.json used as it is; its padding token must be id 0."""
    if not path.is_file():
        raise DataError(f"data.tokenizer.path: no file at '{path}'. Give a tokenizer.json (Hugging Face tokenizers)")
    try:
        tokenizer = _tokenizers().Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception for a malformed file
        raise DataError(f"data.tokenizer.path: '{path}' is not a readable tokenizer.json ({exc})") from None
    pad = tokenizer.id_to_token(0)
    if pad is None or pad not in (PAD, "<pad>", "[pad]", "<|pad|>"):
        raise DataError(
            f"data.tokenizer.path: '{path}' gives id 0 to {pad!r}; dltrain pads with id 0, so id 0 "
            f"must be the padding token (e.g. {PAD})"
        )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def set_length(tokenizer: Any, length: int) -> None:
    """Every encoding `length` ids: truncated, and padded with id 0 at the end."""
    tokenizer.enable_truncation(max_length=length)
    tokenizer.enable_padding(pad_id=0, pad_token=tokenizer.id_to_token(0), length=length)


def fixed_length(tokenizer: Any) -> int | None:
    """The length every encoding is padded to (classification), None for running text."""
    padding = tokenizer.padding
    return int(padding["length"]) if padding and padding.get("length") else None


def encode_running(tokenizer: Any, text: str) -> np.ndarray:
    """(n,) int64 ids of running text (no padding, no truncation)."""
    return np.array(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """How many ids each text has before truncation and padding."""
    saved_padding, saved_truncation = tokenizer.padding, tokenizer.truncation
    tokenizer.no_padding()
    tokenizer.no_truncation()
    try:
        return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    finally:
        if saved_truncation:
            tokenizer.enable_truncation(max_length=saved_truncation["max_length"])
        if saved_padding:
            tokenizer.enable_padding(pad_id=0, pad_token=saved_padding["pad_token"], length=saved_padding["length"])
