"""Plot any 2-D LCZ array (or LCZ GeoTIFF) with the LCZ colours and a legend of the classes present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import LczError
from .lcz import LCZ_CLASSES, NUM_CLASSES, classes_present
from .outputs import atomic_path, check_writable
from .progress import Progress

MAX_PLOT_PIXELS = 1600  # longest side read for a plot; larger rasters are read decimated


def lcz_colormap_and_norm():
    """A matplotlib colormap and norm mapping codes 0-17 to the LCZ colours (0 transparent)."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    colors = [(0, 0, 0, 0)] + [c.color for c in LCZ_CLASSES]
    return ListedColormap(colors), BoundaryNorm(np.arange(-0.5, NUM_CLASSES + 1.5), NUM_CLASSES + 1)


def _nice_length(span: float) -> float:
    """A round scale-bar length near a fifth of `span`."""
    target = span / 5
    magnitude = 10 ** np.floor(np.log10(target))
    return float(max(m * magnitude for m in (1, 2, 5) if m * magnitude <= target))


def plot_lcz(
    codes: np.ndarray,
    *,
    transform: Any = None,
    metric: bool = True,
    title: str | None = None,
    ax: Any = None,
):
    """Draw LCZ `codes` (2-D, 1-17, 0 = nodata) on `ax` (or a new figure); return the figure."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"an LCZ map must be 2-D, got shape {codes.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 7), dpi=110)
    else:
        fig = ax.figure
    cmap, norm = lcz_colormap_and_norm()
    extent = None
    if transform is not None:
        height, width = codes.shape
        left, top = transform * (0, 0)
        right, bottom = transform * (width, height)
        extent = (left, right, min(bottom, top), max(bottom, top))
        if top < bottom:  # rows stored bottom-up
            codes = codes[::-1]
    ax.imshow(codes, cmap=cmap, norm=norm, interpolation="nearest", extent=extent)
    present = classes_present(codes)
    handles = [Patch(facecolor=c.color, edgecolor="0.4", label=c.label) for c in present]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8,
        title="Local Climate Zones",
        title_fontsize=9,
    )
    if extent is not None and metric:
        ax.set_xlabel("easting (m)")
        ax.set_ylabel("northing (m)")
        ax.ticklabel_format(style="plain", useOffset=False)
        length = _nice_length(extent[1] - extent[0])
        x0 = extent[0] + 0.05 * (extent[1] - extent[0])
        y0 = extent[2] + 0.05 * (extent[3] - extent[2])
        ax.plot([x0, x0 + length], [y0, y0], color="black", linewidth=3)
        label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
        ax.text(
            x0 + length / 2,
            y0 + 0.015 * (extent[3] - extent[2]),
            label,
            ha="center",
            va="bottom",
            fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
        )
    elif extent is not None:
        ax.set_xlabel("longitude (deg)")
        ax.set_ylabel("latitude (deg)")
    else:
        ax.set_xlabel("column (px)")
        ax.set_ylabel("row (px)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_lcz_plot(codes: np.ndarray, output: str | Path, **kwargs: Any) -> Path:
    """Plot LCZ `codes` to a PNG at `output` (keyword arguments as for `plot_lcz`)."""
    import matplotlib.pyplot as plt

    output = check_writable(output)
    fig = plot_lcz(codes, **kwargs)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return output


def plot_lcz_raster(
    input: str | Path,
    output: str | Path,
    *,
    title: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Plot an LCZ GeoTIFF (codes 1-17) to a PNG, reading it decimated when it is large."""
    from rasterio.enums import Resampling

    from .lczmap import open_raster

    progress = progress or Progress()
    progress.report(0, "reading")
    with open_raster(input) as src:
        scale = max(1.0, max(src.width, src.height) / MAX_PLOT_PIXELS)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        codes = src.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
        codes = codes.filled(0)
        if codes.dtype.kind == "f":
            codes = np.nan_to_num(codes, nan=0.0)
        transform = src.transform * src.transform.scale(src.width / shape[1], src.height / shape[0])
        metric = bool(src.crs and src.crs.is_projected)
        crs = src.crs.to_string() if src.crs else None
    unknown = np.setdiff1d(np.unique(codes), np.arange(NUM_CLASSES + 1))
    if unknown.size:
        raise LczError(
            "input",
            f"values {unknown[:10].tolist()} are not LCZ codes 1-17; "
            "import the map first (Import LCZ map) to translate its coding",
        )
    progress.report(50, "plotting")
    path = save_lcz_plot(
        codes.astype(np.uint8),
        output,
        transform=transform,
        metric=metric,
        title=title if title is not None else Path(input).stem,
    )
    progress.report(100, "done")
    return {
        "output": str(path),
        "classes": [c.short for c in classes_present(codes)],
        "crs": crs,
    }
