"""`dltrain check --plot model.png`: the model's layers as a drawing of boxes and arrows.

Each box shows a layer's name, type, output shape and parameter count; each arrow one
input. Layers sit in rows by their depth (the longest path from a model input), so
parallel branches stand side by side and a residual connection is an arrow that skips
rows.
"""

from __future__ import annotations

from pathlib import Path

from .nn.model import BuiltModel
from .train.plots import _pyplot, save_figure


def _depths(built: BuiltModel) -> dict[str, int]:
    """Row of each node: inputs at 0, a layer one below its deepest input."""
    depth: dict[str, int] = {}
    for row in built.summary:
        depth[row.name] = 1 + max((depth.get(s, 0) for s in row.inputs), default=0)
    return depth


def write_graph(built: BuiltModel, path: Path, title: str) -> None:
    """Draw the model into `path` (any format matplotlib writes: png, svg, pdf)."""
    plt = _pyplot()
    depth = _depths(built)
    inputs = sorted({s for row in built.summary for s in row.inputs if s not in depth})
    rows: dict[int, list[str]] = {0: inputs}
    for row in built.summary:
        rows.setdefault(depth[row.name], []).append(row.name)
    position = {
        name: (column - (len(names) - 1) / 2, -level)
        for level, names in rows.items()
        for column, name in enumerate(names)
    }
    label = {name: f"{name}\ninput {list(built.input_shape)}" for name in inputs}
    for row in built.summary:
        label[row.name] = f"{row.name}: {row.type.split(':')[-1]}\n{list(row.output_shape)}  {row.params:,} params"
    width = max(len(names) for names in rows.values())
    figure, axes = plt.subplots(figsize=(max(4.0, 3.2 * width), 0.9 * (len(rows) + 1)))
    for row in built.summary:
        x1, y1 = position[row.name]
        for source in row.inputs:
            x0, y0 = position[source]
            skip = y0 - y1 > 1  # a connection that jumps rows (residual) bends around the boxes between
            axes.annotate(
                "",
                xy=(x1, y1 + 0.22),
                xytext=(x0, y0 - 0.22),
                arrowprops={
                    "arrowstyle": "->",
                    "color": "#555",
                    "connectionstyle": "arc3,rad=0.35" if skip and x0 == x1 else "arc3",
                },
            )
    for name, (x, y) in position.items():
        axes.text(
            x,
            y,
            label[name],
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "#e8eef7" if name in inputs else "white", "edgecolor": "#335"},
        )
    axes.set_xlim(-width / 2 - 0.2, width / 2 + 0.2)
    axes.set_ylim(-len(rows), 0.6)
    axes.axis("off")
    axes.set_title(f"{title}: {built.total_params:,} params ({built.trainable_params:,} trainable)", fontsize=9)
    figure.tight_layout()
    save_figure(plt, figure, path)  # atomic, like every plot
