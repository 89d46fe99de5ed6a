"""Data sources (`data.source`) and the keys every source shares, described without torch.

The loaders are in `dltrain.data` (one module per source family), imported only when a
source is loaded: naming `digits` never imports torchvision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ByteSize, Field, NonNegativeInt, PositiveInt, model_validator

from .._params import Params
from .._registry import Registry

SOURCES: Registry[Any] = Registry(
    "data source",
    case_sensitive=False,
    implemented_in=(
        "dltrain.data.digits",
        "dltrain.data.synthetic",
        "dltrain.data.npz",
        "dltrain.data.tabular",
        "dltrain.data.parquet",
        "dltrain.data.arrays",
        "dltrain.data.hf",
        "dltrain.data.timeseries",
        "dltrain.data.images",
        "dltrain.data.vision",
        "dltrain.data.text",
        "dltrain.data.stdlib",
    ),
)
source = SOURCES.describes(tag="source")

PATH = "The file to read (relative to the current directory)."


class CropParams(Params):
    """A random crop of the image zero-padded by `padding` pixels, at the original size."""

    padding: NonNegativeInt = Field(4, description="Pixels of zeros added on each side before cropping.")


class AugmentParams(Params):
    """`data.augment`: random transforms applied to training batches only."""

    random_flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | None = Field(
        None, description="Flip each image at random along these axes."
    )
    random_crop: CropParams | None = Field(None, description="Pad, then crop back to the original size at random.")
    random_rotation: Annotated[float, Field(ge=0.0, le=180.0)] | None = Field(
        None, description="Rotate each image by up to this many degrees, either way."
    )


class DataParams(Params):
    """Keys every source accepts."""

    test_split: Annotated[
        float,
        Field(
            gt=0.0,
            lt=1.0,
            description="Fraction held out as the test set, for sources without a test split of their own.",
        ),
    ] = 0.2
    normalize: Literal["scale", "standardize", "imagenet"] | None = Field(
        None,
        description="scale: to [0, 1]; standardize: zero mean, unit variance (training statistics); "
        "imagenet: ImageNet's mean and std (the default before a pretrained backbone).",
    )
    flatten: bool = Field(False, description="Flatten each sample to one axis.")
    resize: PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = Field(
        None, description="Resize images to this size: one number, or [height, width]."
    )
    channels: Literal[1, 3] | None = Field(None, description="Convert images to 1 (grey) or 3 (RGB) channels.")
    channels_last: bool | None = Field(
        None,
        description="Samples arrive channels-last [H, W, C]: true transposes them to [C, H, W]; "
        "false keeps them as they are (default: refuse samples that look channels-last).",
    )
    augment: AugmentParams | None = Field(None, description="Random transforms of training images.")

    per_token: ClassVar[bool] = False  # targets per input token (a language model's [T] next tokens)

    @property
    def resize_to(self) -> tuple[int, int] | None:
        """`resize` as (height, width)."""
        if self.resize is None:
            return None
        return (self.resize, self.resize) if isinstance(self.resize, int) else (self.resize[0], self.resize[1])


@source
class DigitsParams(DataParams):
    """Handwritten digits 0-9, offline: flat [64], or [1, 8, 8] / [8, 8] rows (values 0-16)."""

    source: Literal["digits"]
    as_image: bool = Field(False, description="Give each digit as an image [1, 8, 8].")
    as_sequence: bool = Field(False, description="Give each digit as a sequence of 8 rows [8, 8].")
    inputs: dict[str, Literal["image", "flat", "rows", "features"]] | None = Field(
        None,
        description="Several named model inputs, each a view of the digit: image [1, 8, 8], flat [64], rows [8, 8], "
        "or features [4] (ink, and its share in the top, left and centre).",
    )
    targets: dict[str, Literal["digit", "even"]] | None = Field(
        None, description="Several named outputs' targets: the digit (10 classes), or whether it is even (0/1)."
    )

    @model_validator(mode="after")
    def _one_layout(self) -> "DigitsParams":
        if self.as_image and self.as_sequence:
            raise ValueError("choose one of as_image ([1, 8, 8]) and as_sequence ([8, 8]), not both")
        return self


@source
class ImageFolderParams(DataParams):
    """Images in `path/train/<class>/` (and optional val/, test/), resized to `image_size`."""

    source: Literal["image_folder"]
    path: Path = Field(description="The folder holding train/<class>/ (and optional val/, test/).")
    image_size: PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] = Field(
        256, description="Every image is resized to this: one number, or [height, width]."
    )
    num_workers: NonNegativeInt | None = Field(None, description="DataLoader worker processes (default: up to 4).")

    @property
    def size(self) -> tuple[int, int]:
        """`image_size` as (height, width)."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else (size[0], size[1])


@source
class NpzParams(DataParams):
    """Arrays from an .npz file; uses its test arrays when present, else `test_split`."""

    source: Literal["npz"]
    path: Path = Field(description=PATH)
    x_key: str = Field("x_train", description="The array of training inputs.")
    y_key: str = Field("y_train", description="The array of training targets.")
    x_test_key: str = Field("x_test", description="The array of test inputs (used when present).")
    y_test_key: str = Field("y_test", description="The array of test targets (used when present).")
    x_val_key: str = Field(
        "x_val", description="The array of validation inputs (used instead of fit.validation_split when present)."
    )
    y_val_key: str = Field("y_val", description="The array of validation targets (used when present).")


@source
class SyntheticParams(DataParams):
    """Seeded random inputs of any `shape`; targets from a fixed random tanh network."""

    source: Literal["synthetic"]
    num_samples: PositiveInt = Field(1000, description="Samples to draw (before the test split).")
    shape: Annotated[list[PositiveInt], Field(min_length=1, description="The shape of one input.")] = [20]
    num_classes: Annotated[int, Field(ge=2)] | None = Field(None, description="Classes, for classification.")
    regression: bool = Field(False, description="Real-valued targets instead of classes.")
    outputs: PositiveInt = Field(1, description="Target values per sample, for regression.")
    noise: Annotated[float, Field(ge=0.0, description="Standard deviation of noise added to the targets.")] = 0.0
    seed: int = Field(0, ge=0, description="Seed of the data (independent of the run's seed).")

    @model_validator(mode="after")
    def _one_task(self) -> "SyntheticParams":
        if (self.num_classes is None) == (not self.regression):
            raise ValueError("give either num_classes (classification) or regression: true")
        return self


class ColumnsParams(DataParams):
    """Keys of the table sources (`csv`, `parquet`): the target column and the input columns."""

    target: str | dict[str, str] = Field(description="The column to predict; several outputs: {output: column}.")
    features: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="The input columns (default: every other column)."
    )
    inputs: dict[str, Annotated[list[str], Field(min_length=1)]] | None = Field(
        None, description="Several named model inputs: {input: [columns]} (numeric or categorical, as features)."
    )
    categorical: list[str] = Field(
        [],
        description="Numeric-looking columns to one-hot as categories "
        "(e.g. zip codes); text columns are categorical anyway.",
    )

    @model_validator(mode="after")
    def _one_way_to_name_inputs(self) -> "ColumnsParams":
        if self.features is not None and self.inputs is not None:
            raise ValueError("give the input columns once: features (one input) or inputs (named inputs), not both")
        return self


@source
class CsvParams(ColumnsParams):
    """Tabular rows from a CSV file: `target` column, numeric and categorical `features`."""

    source: Literal["csv"]
    path: Path = Field(description=PATH)
    validation_path: Path | None = Field(
        None,
        description="A CSV with the same columns: the validation set (instead of fit.validation_split).",
    )
    test_path: Path | None = Field(
        None,
        description="A CSV with the same columns: the test set (instead of test_split of data.path).",
    )


class LargeDataParams(DataParams):
    """Keys of the sources whose data may not fit in memory (`parquet`, `npy`, `hf`)."""

    streaming: bool | Literal["auto"] = Field(
        "auto",
        description="Read batches from disk as they are needed (DataLoader workers, shard by shard) instead of "
        "loading the data into memory; auto: when the data exceed memory_limit.",
    )
    memory_limit: Annotated[ByteSize, Field(gt=0)] | None = Field(
        None,
        description="With streaming: auto, data larger than this are streamed: bytes, or e.g. '4GB', '512MiB' "
        "(default: a quarter of the machine's memory).",
    )
    num_workers: NonNegativeInt | None = Field(
        None, description="DataLoader worker processes that read shards when streaming (default: up to 2)."
    )
    shuffle_buffer: Annotated[ByteSize, Field(gt=0)] = Field(
        ByteSize(64 * 2**20),
        description="When streaming, samples shuffled together (bytes of float32 inputs, e.g. '256MB'), besides "
        "the shuffled order of the shards; each worker holds about two buffers.",
    )


@source
class ParquetParams(LargeDataParams, ColumnsParams):
    """Tabular rows from Parquet files (a file, a folder or a glob): `target` and `features` columns."""

    source: Literal["parquet"]
    path: str = Field(
        description="A .parquet file, a folder of them (read in name order), or a glob such as 'data/part-*.parquet'."
    )


@source
class NpyParams(LargeDataParams):
    """Arrays from .npy files, memory-mapped: inputs `x`, targets `y` (optional test and validation pairs)."""

    source: Literal["npy"]
    x: Path = Field(description="The .npy file of training inputs, samples first.")
    y: Path = Field(description="The .npy file of training targets, one per input.")
    x_test: Path | None = Field(None, description="The .npy file of test inputs (else test_split draws them).")
    y_test: Path | None = Field(None, description="The .npy file of test targets (with x_test).")
    x_val: Path | None = Field(
        None, description="The .npy file of validation inputs (instead of fit.validation_split)."
    )
    y_val: Path | None = Field(None, description="The .npy file of validation targets (with x_val).")

    @model_validator(mode="after")
    def _pairs(self) -> "NpyParams":
        for split in ("test", "val"):
            if (getattr(self, f"x_{split}") is None) != (getattr(self, f"y_{split}") is None):
                raise ValueError(f"give both x_{split} and y_{split}, or neither")
        return self


@source
class TimeseriesParams(DataParams):
    """Windows `[window, features]` of a CSV time series; the target `horizon` steps after each."""

    source: Literal["timeseries_csv"]
    path: Path = Field(description=PATH)
    target: str = Field(description="The column to forecast.")
    columns: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="The input columns (default: every numeric column)."
    )
    window: PositiveInt = Field(10, description="Steps in each input window.")
    horizon: PositiveInt = Field(1, description="How many steps after the window the target is read.")


class TorchvisionParams(DataParams):
    """Keys of the torchvision datasets."""

    root: Path = Field(Path("data"), description="The folder holding (or receiving) the dataset's files.")
    download: bool = Field(False, description="Download the files when they are not under root.")


@source
class MnistParams(TorchvisionParams):
    """MNIST handwritten digits (torchvision): 60,000 + 10,000 images [1, 28, 28] (values 0-255)."""

    source: Literal["mnist"]


@source
class FashionMnistParams(TorchvisionParams):
    """Fashion-MNIST clothing (torchvision): 60,000 + 10,000 images [1, 28, 28] (values 0-255)."""

    source: Literal["fashion_mnist"]


@source
class Cifar10Params(TorchvisionParams):
    """CIFAR-10 (torchvision): 50,000 + 10,000 colour images [3, 32, 32] in 10 classes (values 0-255)."""

    source: Literal["cifar10"]


# --- text (loaded in dltrain.data.text and dltrain.data.stdlib) --------------------------


class TokenizerParams(Params):
    """`data.tokenizer`: how text becomes token ids (Hugging Face `tokenizers`), fitted on the training split."""

    type: Literal["word", "char", "bpe", "wordpiece"] = Field(
        "word",
        description="word: whole words and punctuation; char: single characters; bpe: byte-level "
        "byte-pair encoding (GPT-2's); wordpiece: BERT's subwords.",
    )
    path: Path | None = Field(
        None,
        description="A tokenizer.json to use as it is (nothing is fitted; the other keys but max_length are ignored).",
    )
    vocab_size: Annotated[int, Field(ge=3)] = Field(
        10000, description="The most tokens the vocabulary holds, [PAD] (id 0) and [UNK] (id 1) included."
    )
    min_frequency: PositiveInt = Field(1, description="A token seen fewer times than this in training is left out.")
    lowercase: bool = Field(False, description="Lowercase text before splitting it.")
    max_length: PositiveInt = Field(
        128, description="Tokens per text (classification): longer texts are truncated, shorter ones padded with 0."
    )
    truncation: bool = Field(
        True, description="Cut texts longer than max_length; false makes such a text an error naming it."
    )
    padding: Literal["max_length", "longest"] = Field(
        "max_length",
        description="max_length: every text is max_length ids; longest: as long as the longest "
        "training text (at most max_length).",
    )


class TextParams(DataParams):
    """Keys every text source shares."""

    tokenizer: TokenizerParams = Field(
        default_factory=TokenizerParams, description="How text becomes token ids (padding id 0)."
    )


class ClassifiedTextParams(TextParams):
    """Keys of the text-classification sources."""


@source
class HfParams(LargeDataParams, ColumnsParams, ClassifiedTextParams):
    """A Hugging Face dataset (saved with `save_to_disk`, or in the local cache): image, text or feature columns."""

    source: Literal["hf"]
    path: str = Field(
        description="A folder written by Dataset.save_to_disk, or the name of a dataset already in the "
        "local Hugging Face cache (nothing is downloaded)."
    )
    split: str = Field("train", description="The split to train on.")
    validation: str = Field(
        "validation", description="The split to validate on, when the dataset has it (else fit.validation_split)."
    )
    test: str = Field("test", description="The split to test on, when the dataset has it (else test_split).")
    target: str = Field("label", description="The column to predict (a ClassLabel column gives the class names).")
    image: str | None = Field(
        None, description="A column of images: the inputs, decoded to [C, H, W] (values 0-255), instead of features."
    )
    text: str | None = Field(
        None,
        description="A column of texts: the inputs, tokenized as text_csv's (data.tokenizer, fitted on the "
        "training split), instead of features.",
    )

    @model_validator(mode="after")
    def _one_input(self) -> "HfParams":
        given = [key for key in ("image", "text", "features") if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give one kind of input: image (a column of images), text (a column of texts) or features "
                f"(table columns); received {' and '.join(given)}"
            )
        return self


@source
class TextCsvParams(ClassifiedTextParams):
    """Texts and their classes from a CSV file: one `text` column, one `target` column."""

    source: Literal["text_csv"]
    path: Path = Field(description=PATH)
    text: str = Field("text", description="The column holding the text.")
    target: str = Field("label", description="The column holding the class (a name or a number).")


@source
class TextFolderParams(ClassifiedTextParams):
    """`.txt` files in one subfolder per class (Keras's `text_dataset_from_directory`); optional train/ val/ test/."""

    source: Literal["text_folder"]
    path: Path = Field(description="The folder holding <class>/*.txt (or train/<class>/, val/, test/).")


class RunningTextParams(TextParams):
    """Keys of the language-model sources: running text cut into windows, a next-token target at every position."""

    per_token: ClassVar[bool] = True
    sequence_length: Annotated[int, Field(ge=2)] = Field(64, description="Tokens in each input window [T].")
    stride: PositiveInt | None = Field(
        None, description="Tokens between the starts of two windows (default: sequence_length, no overlap)."
    )


@source
class TextFileParams(RunningTextParams):
    """Running text for a language model: windows of `sequence_length` tokens, each predicting the next."""

    source: Literal["text_file"]
    path: Path | Annotated[list[Path], Field(min_length=1)] = Field(
        description="One file, a list of files, or a folder (its .txt files, sorted)."
    )


@source
class StdlibDocstringsParams(ClassifiedTextParams):
    """Docstrings of Python's standard library, each labelled with the package it comes from (offline)."""

    source: Literal["stdlib_docstrings"]
    packages: Annotated[list[str], Field(min_length=2)] = Field(
        ["asyncio", "email", "importlib", "logging", "unittest", "xml"],
        description="The stdlib packages to tell apart: one class each.",
    )
    min_chars: PositiveInt = Field(40, description="Shorter docstrings are left out.")


@source
class StdlibSourceParams(RunningTextParams):
    """The source code of Python standard-library modules, as running text for a language model (offline)."""

    source: Literal["stdlib_source"]
    modules: Annotated[list[str], Field(min_length=1)] = Field(
        ["json", "email"], description="Modules or packages whose .py files are read, in sorted order."
    )
    max_chars: PositiveInt = Field(400_000, description="At most this many characters are read.")
