"""Plot any 2-D LCZ array (or LCZ GeoTIFF) with the LCZ colours and a legend of the classes present.

Figures are matplotlib `Figure`s drawn by the Agg canvas, never through pyplot, so that a library
call leaves the user's matplotlib backend and open figures alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LczError
from .lcz import LCZ_CLASSES, NUM_CLASSES, classes_present
from .outputs import atomic_path, check_writable
from .progress import Progress

MAX_PLOT_PIXELS = 1600  # longest side read for a plot; larger rasters are read decimated
MAP_INCHES = 6.5  # longest side of the map in a figure of its own
WIDE = 2.0  # maps wider than this (width / height) get their legend below, in columns

# WGS84, for the length of a degree of longitude under a scale bar
_A, _E2 = 6378137.0, 0.00669437999014


def new_figure(width: float = 6.4, height: float = 4.8, dpi: float = 110, **kwargs: Any):
    """A matplotlib Figure with its own Agg canvas: pyplot and the user's backend stay untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi, **kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path: str | Path, dpi: float | None = None) -> Path:
    """Write `figure` as a PNG at `path` through a temporary name."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return Path(path)


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


def _metres_per_degree_of_longitude(latitude: float) -> float:
    """Length of one degree of longitude at `latitude` on the WGS84 ellipsoid."""
    phi = math.radians(latitude)
    return math.pi / 180 * _A * math.cos(phi) / math.sqrt(1 - _E2 * math.sin(phi) ** 2)


def _add_scale_bar(
    ax: Any, extent: tuple[float, float, float, float], metres_per_unit: float, aspect: float
):
    """A scale bar in m or km at the lower left, on a white box that shows over any class."""
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = _nice_length((extent[1] - extent[0]) * metres_per_unit)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    bar = AnchoredSizeBar(
        ax.transData,
        length / metres_per_unit,
        label,
        "lower left",
        pad=0.3,
        borderpad=0.8,
        sep=3,
        frameon=True,
        # as thick on a wide map as on a tall one: a fraction of the longer side, in y units
        size_vertical=max((extent[1] - extent[0]) / aspect, extent[3] - extent[2]) / 150,
        fontproperties=FontProperties(size=8),
    )
    bar.patch.set(facecolor="white", alpha=0.8, edgecolor="none")
    ax.add_artist(bar)


def lcz_legend_handles(codes: np.ndarray) -> list:
    """Legend patches of the LCZ classes present in `codes`, in class order."""
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=c.color, edgecolor="0.4", label=c.label) for c in classes_present(codes)
    ]


def plot_lcz(
    codes: np.ndarray,
    *,
    transform: Any = None,
    metric: bool = True,
    title: str | None = None,
    ax: Any = None,
    legend: bool = True,
):
    """Draw LCZ `codes` (2-D, 1-17, 0 = nodata) on `ax` (or a new figure); return the figure.

    `transform` (an Affine) places the map in its CRS: metres when `metric`, else degrees, drawn
    with the aspect and scale bar of the map's mid-latitude. In a figure of its own the figure is
    sized to the map and its legend, which goes beside a map or below a wide one. On the caller's
    axes, `legend` False leaves the legend to the caller (one legend for several maps).
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"an LCZ map must be 2-D, got shape {codes.shape}")
    height, width = codes.shape
    extent = None
    aspect = 1.0  # display length of a y unit over that of an x unit
    if transform is not None:
        left, top = transform * (0, 0)
        right, bottom = transform * (width, height)
        extent = (left, right, min(bottom, top), max(bottom, top))
        if top < bottom:  # rows stored bottom-up
            codes = codes[::-1]
        if not metric:
            aspect = 1 / math.cos(math.radians((extent[2] + extent[3]) / 2))
    shape = (abs(extent[1] - extent[0]), abs(extent[3] - extent[2]) * aspect) if extent else None
    map_aspect = shape[0] / shape[1] if shape else width / height  # display width / height
    own = ax is None
    if own:
        figure = new_figure()
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    cmap, norm = lcz_colormap_and_norm()
    ax.imshow(codes, cmap=cmap, norm=norm, interpolation="nearest", extent=extent, aspect=aspect)
    legend_options = {
        "handles": lcz_legend_handles(codes),
        "frameon": False,
        "fontsize": 8,
        "title": "Local Climate Zones",
        "title_fontsize": 9,
    }
    if extent is not None and metric:
        ax.set_xlabel("easting (m)")
        ax.set_ylabel("northing (m)")
        ax.ticklabel_format(style="plain", useOffset=False)
        _add_scale_bar(ax, extent, 1.0, aspect)
    elif extent is not None:
        ax.set_xlabel("longitude (°)")
        ax.set_ylabel("latitude (°)")
        ax.ticklabel_format(useOffset=False)
        latitude = (extent[2] + extent[3]) / 2
        _add_scale_bar(ax, extent, _metres_per_degree_of_longitude(latitude), aspect)
    else:
        ax.set_xlabel("column (px)")
        ax.set_ylabel("row (px)")
    if title:
        ax.set_title(title)
    if own:
        _fit_map_and_legend(figure, ax, map_aspect, legend_options)
    elif legend:  # the caller's figure and layout: the legend goes beside these axes
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), **legend_options)
    return figure


def _fit_map_and_legend(figure, ax, map_aspect: float, legend_options: dict) -> None:
    """Size the figure to the map, its decorations as drawn and the legend (beside the map, or
    below a wide one in columns), so that nothing overflows whatever the shape and class count."""
    from matplotlib.ticker import MaxNLocator

    if map_aspect >= 1:
        map_w, map_h = MAP_INCHES, MAP_INCHES / map_aspect
    else:
        map_w, map_h = MAP_INCHES * map_aspect, MAP_INCHES
    # tick labels of about 0.8 inch (7-digit metres), no closer than they fit
    ax.xaxis.set_major_locator(MaxNLocator(nbins=max(1, int(map_w / 0.8)), min_n_ticks=1))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=max(1, int(map_h / 0.4)), min_n_ticks=1))
    ax.tick_params(labelsize=8)
    # draw once on a roomy page to measure what surrounds the map (ticks, labels, title)
    figure.set_size_inches(map_w + 6, map_h + 6)
    ax.set_position([3 / (map_w + 6), 3 / (map_h + 6), map_w / (map_w + 6), map_h / (map_h + 6)])
    renderer = figure.canvas.get_renderer()
    dpi = figure.dpi
    tight, box = ax.get_tightbbox(renderer), ax.get_window_extent(renderer)
    left, right = (box.x0 - tight.x0) / dpi, (tight.x1 - box.x1) / dpi
    bottom, top = (box.y0 - tight.y0) / dpi, (tight.y1 - box.y1) / dpi
    gap = 0.15
    handles = legend_options["handles"]
    if map_aspect > WIDE:
        probe = figure.legend(**legend_options)
        column = probe.get_window_extent(renderer).width / dpi
        probe.remove()
        ncols = max(1, min(len(handles), int((left + map_w + right) // column)))
        legend = figure.legend(**legend_options, ncols=ncols, loc="upper center")
        legend_box = legend.get_window_extent(renderer)
        legend_w, legend_h = legend_box.width / dpi, legend_box.height / dpi
        width = max(left + map_w + right, legend_w) + 2 * gap
        height = gap + top + map_h + bottom + gap + legend_h + gap
        x0 = (width - (left + map_w + right)) / 2 + left
        legend.set_bbox_to_anchor(
            (width / 2 / width, (legend_h + gap) / height), figure.transFigure
        )
    else:
        legend = figure.legend(**legend_options, loc="upper left")
        legend_box = legend.get_window_extent(renderer)
        legend_w, legend_h = legend_box.width / dpi, legend_box.height / dpi
        width = gap + left + map_w + right + gap + legend_w + gap
        height = max(gap + top + map_h + bottom + gap, legend_h + 2 * gap)
        x0 = gap + left
        legend.set_bbox_to_anchor(
            ((width - gap - legend_w) / width, (height - gap) / height), figure.transFigure
        )
    figure.set_size_inches(width, height)
    y0 = height - gap - top - map_h
    ax.set_position([x0 / width, y0 / height, map_w / width, map_h / height])


def save_lcz_plot(codes: np.ndarray, output: str | Path, **kwargs: Any) -> Path:
    """Plot LCZ `codes` to a PNG at `output` (keyword arguments as for `plot_lcz`)."""
    output = check_writable(output)
    return save_png(plot_lcz(codes, **kwargs), output)


def plot_lcz_raster(
    input: str | Path,
    output: str | Path,
    *,
    title: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Plot an LCZ GeoTIFF (codes 1-17) to a PNG, reading it decimated when it is large."""
    progress = progress or Progress()
    progress.report(0, "reading")
    codes, transform, crs = read_lcz_raster(input)
    progress.report(50, "plotting")
    path = save_lcz_plot(
        codes,
        output,
        transform=transform if crs else None,
        metric=bool(crs and crs.is_projected),
        title=title if title is not None else Path(input).stem,
    )
    progress.report(100, "done")
    return {
        "output": str(path),
        "classes": [c.short for c in classes_present(codes)],
        "crs": crs.to_string() if crs else None,
    }


def read_lcz_raster(input: str | Path, max_pixels: int = MAX_PLOT_PIXELS) -> tuple:
    """An LCZ GeoTIFF's codes (uint8, 0 = nodata), read decimated to at most `max_pixels` a side,
    with the transform of the array read and the CRS (None when it has none)."""
    from rasterio.enums import Resampling

    from .rasters import open_raster

    with open_raster(input) as src:
        scale = max(1.0, max(src.width, src.height) / max_pixels)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        codes = src.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
        codes = codes.filled(0)
        if codes.dtype.kind == "f":
            codes = np.nan_to_num(codes, nan=0.0)
        transform = src.transform * src.transform.scale(src.width / shape[1], src.height / shape[0])
        crs = src.crs
        bands = src.count
    unknown = np.setdiff1d(np.unique(codes), np.arange(NUM_CLASSES + 1))
    if unknown.size:
        values = ", ".join(f"{v:g}" for v in unknown[:5])
        raise LczError(
            "input",
            f"band 1 (of {bands}) holds values such as {values} that are not LCZ codes 1-17; "
            "import the map first (Import LCZ map) to translate its coding",
        )
    return codes.astype(np.uint8), transform, crs
