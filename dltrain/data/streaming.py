"""Streaming: data larger than memory, read shard by shard in DataLoader workers.

A streamed source is a list of *pieces*, the units a file is read in (a Parquet row
group, a chunk of rows of a memory-mapped .npy file, record batches of a Hugging Face
dataset's .arrow file); each source module holds its reader (`Shards`) and decides,
through `streamed`, whether to stream at all. The targets (one small column)
and the row indices of each split stay in memory, so the splits, class names and
checks are exactly those of the in-memory path; the inputs are read when a batch needs
them, and preprocessing statistics come from one streamed pass over the training rows.

An epoch is a list of *windows*: consecutive pieces (in an order shuffled with the
run's seed and the epoch) holding at least `data.shuffle_buffer` bytes of samples,
whose rows are shuffled together (the shuffle buffer). Because a window's content depends only on
(seed, epoch, window), the position in an epoch is a sample offset: a resumed run
skips whole windows without reading them and continues with exactly the batches the
uninterrupted run trained on. Under DDP, rank r takes every world_size-th piece, so
the ranks read disjoint shards.
"""

from __future__ import annotations

import math
import os
import signal
from dataclasses import asdict, dataclass, field
from itertools import cycle
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import CheckpointError, DataError
from ..schema.data import LargeDataParams
from .base import LazyInputs, Preprocessing, RawData, check_arrays, set_statistics, stat_axes

PIECE_BYTES = 32 * 2**20  # what one piece holds when the format leaves the choice to us (.npy, .arrow)
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Piece:
    """One unit of reading: row group `index` of a Parquet file (`offset` None), or `rows` rows of a file from its
    row `offset` (an .npy file; the record batches of an .arrow file from batch `index`)."""

    path: str
    index: int
    start: int  # the piece's first row among all the source's rows
    rows: int
    offset: int | None = None

    def where(self, row: int) -> str:
        """Row `row` of this piece as a person finds it in the file (counted from 1)."""
        if self.offset is None:
            return f"'{self.path}' row group {self.index}, row {row + 1}"
        return f"'{self.path}' row {self.offset + row + 1}"


class Shards(Protocol):
    """A source's rows as pieces: what a worker reads, and what the main process keeps (targets)."""

    pieces: list[Piece]
    sample_shape: tuple[int, ...]

    def read_x(self, piece: Piece, wanted: np.ndarray | None, out: np.ndarray) -> None:
        """Fill `out`, float32 `(rows, *sample_shape)`, with the inputs of `piece`: its rows `wanted`
        (sorted, counted from the piece's first row), or all of them when `wanted` is None."""
        ...

    def read_y(self) -> np.ndarray:
        """Every row's target (one column: small enough for memory)."""
        ...


def _rows(shards: Shards) -> int:
    return sum(p.rows for p in shards.pieces)


def unreadable(path: str, exc: Exception, what: str = "file", part: str = "") -> DataError:
    """One message for a file that cannot be read: which file (and which part of it), why, what to do."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if part:
        return DataError(f"'{path}': {part} cannot be read ({reason}); replace or remove the file")
    return DataError(f"'{path}' is not a readable {what} ({reason}); replace or remove it")


def numeric_type(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))


TILE_BYTES = 2 * 2**20  # samples transposed at a time: they stay in the cache between the two copies


def columns_into(table: Any, features: list[str], wanted: np.ndarray | None, out: np.ndarray) -> None:
    """Numeric columns of an Arrow table, rows `wanted` (None: all), into float32 `out` `(rows, features)`.

    A block of rows of every column is stacked column-major (2 MB, so it stays in the cache)
    and torch transposes it into `out` in cache-sized tiles. Filling a row-major array column
    by column writes one float per row, 1 KB apart for 256 features, and took four times as
    long; stacking whole columns first doubled the memory traffic, which the training process
    feels on the core beside the worker (the cost a streaming worker pays on every row group).
    `wanted` rows are picked from the whole columns stacked (a gather along contiguous memory).
    """
    columns = [_column_values(table.column(name)) for name in features]
    if wanted is not None:
        picked = np.take(np.stack(columns), wanted, axis=1)
        torch.from_numpy(out).copy_(torch.from_numpy(picked).t())
        return
    rows = table.num_rows
    block = max(1, TILE_BYTES // (4 * max(1, len(features))))
    scratch = np.empty((len(features), min(block, rows)), dtype=np.float32)
    target, source = torch.from_numpy(out), torch.from_numpy(scratch)
    for start in range(0, rows, block):
        stop = min(start + block, rows)
        np.stack([values[start:stop] for values in columns], out=scratch[:, : stop - start])
        target[start:stop].copy_(source[:, : stop - start].t())


def _column_values(column: Any) -> np.ndarray:
    """An Arrow column as numbers: float32 without missing values read in place (pyarrow's `to_numpy`
    costs 0.1 ms a column even then: 26 ms of every 64 MB row group of 256 columns)."""
    import pyarrow as pa

    if column.num_chunks == 1 and column.type == pa.float32() and column.null_count == 0:
        chunk = column.chunk(0)
        return np.frombuffer(chunk.buffers()[1], np.float32, len(chunk), offset=4 * chunk.offset)
    return column.to_numpy(zero_copy_only=False)


# --- streaming or not -----------------------------------------------------------------


def memory_limit(params: LargeDataParams) -> int:
    """`data.memory_limit`, by default a quarter of this machine's memory."""
    if params.memory_limit is not None:
        return int(params.memory_limit)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def in_memory_bytes(shards: Shards) -> int:
    """What the in-memory path would hold: float32 inputs (read once as stored, once as a tensor)."""
    return 2 * 4 * _rows(shards) * math.prod(shards.sample_shape)


def streamed(params: Any, open_shards: Callable[[], Shards]) -> bool | Shards:
    """The shards to stream (`data.streaming: true`, or `auto` with data larger than `data.memory_limit`), else False."""
    if params.streaming is False:
        return False
    shards = open_shards()
    if params.streaming == "auto" and in_memory_bytes(shards) <= memory_limit(params):
        return False
    problem = getattr(shards, "problem", None)
    categorical = getattr(params, "categorical", None)
    if categorical:
        problem = (
            f"data.categorical: streaming reads numeric features as they are; one-hot columns "
            f"{', '.join(map(repr, categorical))} need the in-memory path: set data.streaming: false"
        )
    if problem:
        raise DataError(problem)
    return shards


def stream_raw(params: Any, shards: Shards, encoder: Any = None) -> RawData:
    """The training rows of `shards` as streamed inputs, their targets in memory (checked as the in-memory path does)."""
    raw = RawData(StreamRows(shards, None, buffer=int(params.shuffle_buffer)), shards.read_y())  # type: ignore[arg-type]
    check_arrays(raw)
    raw.encoder, raw.value_range = encoder, getattr(shards, "value_range", None)
    return raw


class ColumnsKept:
    """The `FeatureEncoder` of streamed table columns: numbers kept as they are, the column names stored
    (so `predict` reads new rows by the same columns)."""

    def __init__(self, features: list[str]) -> None:
        self.features = features

    def fit(self, x_train: Any) -> dict[str, Any]:
        return {"features": self.features, "categories": {}}

    def transform(self, x: Any, state: dict[str, Any]) -> Any:
        return x


# --- the rows of a split --------------------------------------------------------------


class StreamRows(LazyInputs):
    """Some rows of a streamed source (sorted indices among all its rows): indexable like an array."""

    decoded = False

    def __init__(
        self, shards: Shards, rows: np.ndarray | None, shape: tuple[int, ...] | None = None, buffer: int = 64 * 2**20
    ) -> None:
        self.shards, self.buffer = shards, buffer  # bytes of samples shuffled together
        self.rows = np.arange(_rows(shards), dtype=np.int64) if rows is None else rows
        self.shape = shape or (len(self.rows), *shards.sample_shape)
        starts = np.array([p.start for p in shards.pieces] + [_rows(shards)], dtype=np.int64)
        self.bounds = np.searchsorted(self.rows, starts)  # piece i holds rows[bounds[i]:bounds[i + 1]]

    def __getitem__(self, index: Any) -> "StreamRows":
        return StreamRows(self.shards, self.rows[index], buffer=self.buffer)

    def members(self, piece: int) -> tuple[int, int]:
        """The positions (in this split) of the rows piece `piece` holds."""
        return int(self.bounds[piece]), int(self.bounds[piece + 1])

    def read(self, piece: int, out: np.ndarray | None = None, whole: bool = False) -> np.ndarray:
        """This split's rows of piece `piece` (with `whole`, all its rows), as stored (float32), in `out` if
        given, else in a new array."""
        where = self.shards.pieces[piece]
        picked = None if whole else self.picked(piece)
        if out is None:
            out = np.empty((where.rows if picked is None else len(picked), *self.shards.sample_shape), np.float32)
        self.shards.read_x(where, picked, out)
        # One float64 sum is finite exactly when every value is (float32 values cannot overflow it): the
        # element-wise test, with its boolean array, runs only to find the row that is not.
        if not np.isfinite(out.sum(dtype=np.float64)):
            bad = int(np.argwhere(~np.isfinite(out))[0][0])
            raise DataError(
                f"{where.where(bad if picked is None else int(picked[bad]))} holds a missing or infinite value "
                f"(NaN/inf); fill it in or drop that sample"
            )
        return out

    def picked(self, piece: int) -> np.ndarray | None:
        """Which of piece `piece`'s rows this split holds (counted from the piece's first row); None: all."""
        lo, hi = self.members(piece)
        where = self.shards.pieces[piece]
        return None if hi - lo == where.rows else self.rows[lo:hi] - where.start

    def fit_preprocessing(self, params: Any, value_range: float | None) -> Preprocessing:
        """Training statistics in one streamed pass: the largest magnitude, or per-feature mean and std (Chan's merge)."""
        prep = Preprocessing(channels_last=bool(params.channels_last), flatten=params.flatten)
        if params.normalize not in ("scale", "imagenet", "standardize"):
            return prep
        if params.normalize != "standardize" and value_range:
            prep.scale = float(value_range)
            return prep
        count, mean, m2, peak = 0, torch.zeros(()), torch.zeros(()), 0.0
        for piece in range(len(self.shards.pieces)):
            lo, hi = self.members(piece)
            if lo == hi:
                continue
            x = prep.apply(torch.from_numpy(self.read(piece)), in_place=True)
            if params.normalize != "standardize":
                peak = max(peak, float(x.abs().max()))
                continue
            x = x.double()
            axes = stat_axes(tuple(x.shape[1:]))
            n = x.numel() // math.prod(x.shape[a] for a in range(1, x.ndim) if a not in axes)
            part_mean = x.mean(dim=axes, keepdim=True)[0]
            part_m2 = ((x - part_mean) ** 2).sum(dim=axes, keepdim=True)[0]
            delta = part_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + part_m2 + delta**2 * (count * n / total)
            count = total
        if params.normalize == "standardize":
            set_statistics(prep, mean, (m2 / max(count - 1, 1)).sqrt())
        else:
            prep.scale = max(peak, 1e-12)
        return prep

    def split(self, y: torch.Tensor, prep: Preprocessing) -> "StreamSplit":
        sample = prep.apply(torch.zeros(1, *self.shards.sample_shape)).shape[1:]
        return StreamSplit(StreamRows(self.shards, self.rows, (len(self.rows), *sample), self.buffer), y, prep)


@dataclass
class StreamSplit:
    """A split whose inputs stay on disk: the `StreamBatches` path of `batches.make_batches`."""

    x: StreamRows
    y: torch.Tensor
    prep: Preprocessing

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: torch.device) -> "StreamSplit":
        """The inputs stay on disk; batches move to the device as they are read."""
        return self


# --- an epoch's order -----------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Pieces whose rows are shuffled together (`seed` None: kept in order), then cut to `[lo, hi)`."""

    pieces: tuple[int, ...]
    seed: int | None
    lo: int
    hi: int


@dataclass
class Plan:
    """One rank's windows for one epoch, and the samples each rank reads (padded ranks wrap around)."""

    windows: list[Window] = field(default_factory=list)
    samples: int = 0


def _windows(rows: StreamRows, pieces: list[int], per_window: int, seed: int | None) -> list[Window]:
    """Consecutive `pieces` grouped until each group holds `per_window` samples."""
    windows: list[Window] = []
    group: list[int] = []
    held = 0
    for piece in pieces:
        lo, hi = rows.members(piece)
        if lo == hi:
            continue
        group.append(piece)
        held += hi - lo
        if held >= per_window:
            windows.append(Window(tuple(group), None if seed is None else seed + len(windows), 0, held))
            group, held = [], 0
    if group:
        windows.append(Window(tuple(group), None if seed is None else seed + len(windows), 0, held))
    return windows


def plan_epoch(rows: StreamRows, shuffle: bool, seed: int, epoch: int, rank: int, world_size: int, pad: bool) -> Plan:
    """This rank's windows for `epoch`: the pieces in a seeded order (kept in order without `shuffle`), every
    `world_size`-th to this rank; with `pad` (training), cut or wrapped round to the same number on every rank."""
    pieces = np.arange(len(rows.shards.pieces))
    mixing = (seed * 1_000_003 + epoch) % 2**63
    if shuffle:
        pieces = np.random.default_rng(mixing).permutation(pieces)
    sample_bytes = 4 * max(1, math.prod(rows.shards.sample_shape))
    per_window = max(1, rows.buffer // sample_bytes)
    mine = [int(p) for p in pieces[rank::world_size]]
    window_seed = (mixing * 7919 + rank * 104_729) % 2**62 if shuffle else None
    windows = _windows(rows, mine, per_window, window_seed)
    samples = sum(w.hi - w.lo for w in windows)
    if not pad:
        return Plan(windows, samples)
    # Every rank takes the same share every epoch (the in-memory path's ceil(N / world_size)): a rank whose
    # pieces hold more stops early (those rows come in another epoch's order), one with fewer wraps round.
    wanted = math.ceil(len(rows) / world_size)
    windows = _first(windows, wanted) if samples >= wanted else windows + _first(cycle(windows), wanted - samples)
    return Plan(windows, wanted)


def _first(windows: Iterable[Window], samples: int) -> list[Window]:
    """The windows that hold the first `samples` samples, the last one cut."""
    kept: list[Window] = []
    for w in windows:
        if samples <= 0:
            break
        take = min(samples, w.hi - w.lo)
        kept.append(Window(w.pieces, w.seed, w.lo, w.lo + take))
        samples -= take
    return kept


def skip(windows: list[Window], samples: int) -> list[Window]:
    """The windows left after the first `samples` samples (whole windows skipped without reading them)."""
    for k, w in enumerate(windows):
        if samples < w.hi - w.lo:
            return [Window(w.pieces, w.seed, w.lo + samples, w.hi), *windows[k + 1 :]]
        samples -= w.hi - w.lo
    return []


# --- reading, in DataLoader workers ---------------------------------------------------


class WindowReader(IterableDataset):
    """What a DataLoader worker runs: worker w reads windows w, w + workers, ... (one item per window, so the
    DataLoader's round-robin returns them in order); a bad file comes back as a message, not a traceback."""

    def __init__(self, split: StreamSplit, windows: list[Window]) -> None:
        self.split, self.windows = split, windows

    def __iter__(self) -> Iterator[tuple[int, Any, Any, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            torch.set_num_threads(1)
            # A terminal's Ctrl-C (or a scheduler's SIGTERM) reaches the whole process group: the main process
            # saves where it is and stops its workers; a worker dying first would fail the batch it was reading.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for k in range(worker, len(self.windows), workers):
            try:
                yield (k, *self.read(self.windows[k]))
            except DataError as exc:
                yield (k, str(exc), None, None)
                return

    def read(self, window: Window) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The window's rows, preprocessed, with the order they are trained in: `(x, order, y)`, where the
        window's samples are `x[order]` (shuffled with the window's seed), or `x` itself when kept in order,
        and `y` their targets in that order.

        The worker only reads: it gathers its pieces' rows straight into shared memory (where the
        DataLoader would otherwise copy them), and the main process gathers each batch from them,
        as the in-memory path gathers its batches from the whole split. Shuffling the window here
        would copy every sample once more, on the core that training shares with the workers.
        """
        rows, y = self.split.x, self.split.y
        spans = [rows.members(p) for p in window.pieces]
        held = sum(hi - lo for lo, hi in spans)
        pieces = [rows.shards.pieces[p] for p in window.pieces]
        # Pieces this split holds most of are read whole, the rows of other splits skipped by the order
        # (a gather here would copy them once more); a split holding a few rows of each (a validation
        # split) has just those read.
        whole = 2 * held >= sum(p.rows for p in pieces)
        sizes = [p.rows if whole else hi - lo for p, (lo, hi) in zip(pieces, spans)]
        raw = _empty((sum(sizes), *rows.shards.sample_shape), shared=get_worker_info() is not None)
        filled, offset = raw.numpy(), 0
        for index, size in zip(window.pieces, sizes):
            rows.read(index, filled[offset : offset + size], whole=whole)
            offset += size
        targets = torch.cat([y[slice(*span)] for span in spans]) if len(spans) > 1 else y[slice(*spans[0])]
        x = self.split.prep.apply(raw, in_place=True)  # raw is this window's own memory
        if x.data_ptr() != raw.data_ptr() or not x.is_contiguous():  # preprocessing made a new tensor
            x = _empty(tuple(x.shape), shared=get_worker_info() is not None).copy_(x)
        in_order = len(x) == held  # x holds exactly the split's rows of these pieces, in order
        if window.seed is None and in_order:
            return x[window.lo : window.hi], None, targets[window.lo : window.hi]
        if window.seed is None:
            chosen = np.arange(window.lo, window.hi)
        else:
            chosen = np.random.default_rng(window.seed).permutation(held)[window.lo : window.hi]
        order = chosen if in_order else self.positions(window.pieces, sizes)[chosen]
        return x, torch.from_numpy(order), targets[torch.from_numpy(chosen)]

    def positions(self, pieces: tuple[int, ...], sizes: list[int]) -> np.ndarray:
        """Where the split's rows of `pieces`, read whole (`sizes` rows each, one after another), lie in the window."""
        rows, starts = self.split.x, np.cumsum([0, *sizes[:-1]])
        picked = [rows.picked(index) for index in pieces]
        return np.concatenate(
            [
                np.arange(start, start + size) if p is None else p + start
                for p, start, size in zip(picked, starts, sizes)
            ]
        )


def _empty(shape: tuple[int, ...], shared: bool) -> torch.Tensor:
    """An uninitialised float32 tensor, in shared memory when `shared` (a worker's result crosses processes there)."""
    if not shared:
        return torch.empty(shape)
    storage = torch.UntypedStorage._new_shared(4 * math.prod(shape))
    return torch.tensor([], dtype=torch.float32).set_(storage).view(shape)


class StreamBatches:
    """Batches of a streamed split: windows read by DataLoader workers, cut into batches in the main process.

    The epoch's order depends only on (seed, epoch, rank), never on the number of
    workers, so `epoch(n, start)` resumes exactly at step `start`.
    """

    def __init__(
        self,
        split: StreamSplit,
        batch_size: int,
        shuffle: bool,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        workers: int | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.device, self.rank, self.world_size, self.pad, self.augment = device, rank, world_size, pad, augment
        self.workers = min(2, os.cpu_count() or 1) if workers is None else workers
        self.per_rank = plan_epoch(split.x, False, seed, 0, rank, world_size, pad).samples

    def __len__(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch` from step `start + 1` on."""
        plan = plan_epoch(self.split.x, self.shuffle, self.seed, epoch, self.rank, self.world_size, self.pad)
        windows = skip(plan.windows, start * self.batch_size)
        if not windows:
            return
        workers = min(self.workers, len(windows))
        loader = DataLoader(
            WindowReader(self.split, windows),
            batch_size=None,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2 if workers else None,
            generator=torch.Generator(),  # its own: drawing the workers' seeds from the global one would move dropout's
        )
        # The loader is iterated by rebatch itself: an error there ends the loop and so frees the loader's
        # iterator, which stops its workers (they ignore SIGTERM, so one left alive would hold up the exit).
        for x, y in rebatch(loader, self.batch_size, self.device):
            yield (self.augment(x) if self.augment is not None else x), y


def rebatch(windows: Iterable[tuple[int, Any, Any, Any]], size: int, device: Any = None) -> Iterator[Batch]:
    """Windows `(index, x, order, y)`, in order, cut into batches of `size`: rows `x[order]` (or `x` when
    `order` is None) with targets `y`; a batch may span windows. Each window is moved whole to `device`
    (one transfer; its batches are then gathered there)."""
    held: Batch | None = None
    expected = 0
    for k, x, order, y in windows:
        if y is None:
            raise DataError(x)
        if k != expected:  # the DataLoader keeps the order; this only guards against a change there
            raise RuntimeError(f"streamed window {k} arrived before window {expected}")
        expected += 1
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            order = None if order is None else order.to(device, non_blocking=True)
        take = _batch_taker(x, order, y)
        begin = 0
        if held is not None:  # the batch that spans two windows: only it is concatenated
            fill = min(size - len(held[0]), len(y))
            part = take(0, fill)
            held, begin = (torch.cat([held[0], part[0]]), torch.cat([held[1], part[1]])), fill
            if len(held[0]) < size:
                continue
            yield held
            held = None
        while begin + size <= len(y):
            yield take(begin, begin + size)
            begin += size
        held = take(begin, len(y)) if begin < len(y) else None
    if held is not None:
        yield held


def _batch_taker(x: torch.Tensor, order: torch.Tensor | None, y: torch.Tensor) -> Callable[[int, int], Batch]:
    """Samples `[a, b)` of a window: gathered from `x` by `order`, or a view of `x` when it is in order."""
    if order is None:
        return lambda a, b: (x[a:b], y[a:b])
    return lambda a, b: (torch.index_select(x, 0, order[a:b]), y[a:b])


# --- the position in an epoch, in the checkpoint --------------------------------------


@dataclass
class StreamPosition:
    """Where a streamed epoch stopped: `samples` read by this rank, and what the stream was (to refuse a changed one)."""

    step: int
    samples: int
    rows: int
    pieces: int

    def state(self) -> dict[str, Any]:
        return asdict(self)


def position(split: Any, step: int, batch_size: int) -> dict[str, Any] | None:
    """The checkpoint's `stream` field: None for in-memory data or at an epoch's end."""
    if not isinstance(split, StreamSplit) or not step:
        return None
    return StreamPosition(step, step * batch_size, len(split), len(split.x.shards.pieces)).state()


def check_position(saved: dict[str, Any] | None, split: Any, where: Any) -> None:
    """A checkpoint stopped inside a streamed epoch continues only over the same rows, cut into the same pieces."""
    if saved is None:
        return
    here = (len(split), len(split.x.shards.pieces)) if isinstance(split, StreamSplit) else None
    if here != (saved["rows"], saved["pieces"]):
        now = "in memory" if here is None else f"{here[0]:,} training rows in {here[1]} pieces"
        raise CheckpointError(
            f"'{where}' stopped at step {saved['step']} of a streamed epoch over {saved['rows']:,} training rows in "
            f"{saved['pieces']} pieces, but the data are now {now}: resume with the same files and data.streaming"
        )
