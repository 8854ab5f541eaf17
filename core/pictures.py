"""Pictures of embeddings: a false-colour RGB and a cosine-similarity map, window by window.

RGB: the embeddings are standardised and projected on their first three principal components,
fitted on a seeded sample of at most SAMPLE_PIXELS valid pixels of the extent (one fit for every
window, so windows and tiles match); each component's sign makes its largest loading positive, and
a stretch (percentiles, histogram equalisation or +-SIGMA standard deviations, fitted on the same
sample) maps it to 0-255. Two passes over the data: sample, then transform. The sample is the
pixels with the smallest seeded hash of their position, so it does not depend on the windows.

Similarity: the cosine similarity of every pixel to a reference embedding (the pixel under a point,
or the mean over polygons), as a float32 GeoTIFF with NaN nodata and a colour ramp (.qml).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from .choices import STRETCHES
from .errors import LczError
from .extents import Bounds, reproject_extent
from .outputs import atomic_path, check_writable, raster_style_qml, write_text_atomic
from .progress import Progress, SubProgress, track
from .rasters import EmbeddingSource, crop_to_extent, open_source

SAMPLE_PIXELS = 100_000
BLOCK = 256  # pixels a side of the windows read
SIGMA = 2.5
MAX_PLOT_PIXELS = 1600  # longest side of a PNG's picture; larger outputs are read decimated
# viridis, low to high: the ramp of the similarity map
RAMP = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


# ---------------------------------------------------------------- sampling and fitting


def pixel_keys(rows: np.ndarray, cols: np.ndarray, seed: int) -> np.ndarray:
    """Seeded pseudo-random uint64 keys of pixel positions (splitmix64 of the position)."""
    z = (rows.astype(np.uint64) << np.uint64(32)) | cols.astype(np.uint64)
    z = z + np.uint64((seed + 1) * 0x9E3779B97F4A7C15 % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class PixelSample:
    """The at most `size` valid pixels with the smallest keys: the same whatever the windows."""

    def __init__(self, size: int = SAMPLE_PIXELS, seed: int = 0) -> None:
        self.size, self.seed = size, seed
        self.valid_pixels = 0
        self._keys = np.empty(0, np.uint64)
        self._values: np.ndarray | None = None

    def add(self, data: np.ndarray, row_off: int, col_off: int) -> None:
        """Offer the valid pixels of a (C, h, w) block whose top-left pixel is (row_off, col_off)."""
        rows, cols = np.nonzero(~np.isnan(data).any(axis=0))
        self.valid_pixels += len(rows)
        keys = np.concatenate([self._keys, pixel_keys(rows + row_off, cols + col_off, self.seed)])
        values = data[:, rows, cols].T
        if self._values is not None:
            values = np.concatenate([self._values, values])
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keys, values = keys[keep], values[keep]
        self._keys, self._values = keys, values

    def values(self) -> np.ndarray:
        """(n, C) float64, in key order (so that sums do not depend on the reading order)."""
        if self._values is None:
            return np.empty((0, 0))
        return self._values[np.argsort(self._keys, kind="stable")].astype(np.float64)


@dataclass(frozen=True)
class RgbProjection:
    """Standardisation, three principal components and a stretch: embeddings to 0-255 RGB."""

    mean: np.ndarray  # (C,)
    std: np.ndarray  # (C,)
    components: np.ndarray  # (3, C), on standardised values
    explained: np.ndarray  # (3,) fractions of the total variance
    stretch: str
    low: np.ndarray  # (3,) scores shown as 0 (percentile, sigma)
    high: np.ndarray  # (3,) scores shown as 255
    sorted_scores: np.ndarray  # (3, n) the sample's scores, for histogram equalisation

    def scores(self, data: np.ndarray) -> np.ndarray:
        """(3, h, w) float32 principal component scores of (C, h, w) embeddings."""
        weights = (self.components / self.std).astype(np.float32)
        offset = (weights @ self.mean).astype(np.float32)
        return np.tensordot(weights, data, axes=1) - offset[:, None, None]

    def rgb(self, data: np.ndarray) -> np.ndarray:
        """(3, h, w) float32 colours 0-255 of (C, h, w) embeddings; NaN where missing."""
        scores = self.scores(data)
        if self.stretch == "equalize":
            n = self.sorted_scores.shape[1]
            out = np.stack(
                [
                    np.searchsorted(self.sorted_scores[i], scores[i].ravel(), side="right")
                    .reshape(scores[i].shape)
                    .astype(np.float32)
                    for i in range(3)
                ]
            ) * np.float32(255 / n)
        else:
            low = self.low.astype(np.float32)[:, None, None]
            span = (self.high - self.low).astype(np.float32)[:, None, None]
            out = np.clip((scores - low) / span, 0, 1) * np.float32(255)
        out[:, np.isnan(scores).any(axis=0)] = np.nan
        return out


def check_stretch(stretch: str, percentiles: tuple[float, float]) -> None:
    """Refuse an unknown stretch or percentiles that are not 0 <= low < high <= 100."""
    if stretch not in STRETCHES:
        raise LczError("stretch", f"unknown stretch {stretch!r}; use one of {', '.join(STRETCHES)}")
    low, high = percentiles
    if not 0 <= low < high <= 100:
        raise LczError(
            "percentiles", f"{low:g}, {high:g}: give low, high with 0 <= low < high <= 100"
        )


def fit_rgb(
    sample: np.ndarray,
    stretch: str = "percentile",
    percentiles: tuple[float, float] = (2.0, 98.0),
    parameter: str = "extent",
) -> RgbProjection:
    """Fit the standardisation, the 3-component PCA and the stretch on (n, C) valid pixels."""
    check_stretch(stretch, percentiles)
    if sample.shape[0] == 0:
        raise LczError(
            parameter, "holds no valid embedding pixel (all missing); choose an area with data"
        )
    if sample.shape[1] < 3:
        raise LczError(
            "embeddings", f"has {sample.shape[1]} bands; an RGB picture needs at least 3"
        )
    mean = sample.mean(axis=0)
    std = sample.std(axis=0)
    std[std == 0] = 1.0  # a constant band adds nothing
    z = (sample - mean) / std
    values, vectors = np.linalg.eigh(z.T @ z / len(z))
    top = np.argsort(values)[::-1][:3]
    components = vectors[:, top].T
    # the sign that makes a component's largest loading positive (as scikit-learn's svd_flip)
    largest = np.abs(components).argmax(axis=1)
    components *= np.sign(components[np.arange(3), largest])[:, None]
    explained = values[top] / max(values.sum(), 1e-300)
    scores = z @ components.T
    if stretch == "sigma":
        centre, spread = scores.mean(axis=0), scores.std(axis=0)
        low, high = centre - SIGMA * spread, centre + SIGMA * spread
    else:
        low, high = np.percentile(scores, percentiles, axis=0)
    high = np.where(high > low, high, low + 1.0)  # a flat component shows as black
    return RgbProjection(
        mean, std, components, explained, stretch, low, high, np.sort(scores, axis=0).T
    )


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float colours 0-255 (NaN = missing, shown as 0) to uint8."""
    return np.clip(np.rint(np.nan_to_num(rgb, nan=0.0)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- shared helpers


def windows(width: int, height: int, block: int | None = None) -> list[Window]:
    """Square windows of `block` pixels (default BLOCK) tiling a width x height grid."""
    block = block or BLOCK
    return [
        Window(c, r, min(block, width - c), min(block, height - r))
        for r in range(0, height, block)
        for c in range(0, width, block)
    ]


def open_extent(
    stack: contextlib.ExitStack,
    embeddings: str | os.PathLike,
    extent: Bounds | None,
    extent_crs: str | None,
    source_options: Mapping[str, Any] | None,
) -> tuple[EmbeddingSource, EmbeddingSource]:
    """(whole source, source cut to `extent`) opened on `stack`; the extent in `extent_crs`.

    `source_options` are open_source's keywords (kind, array, dequantise, year, crs, variant)."""
    source = stack.enter_context(
        open_source(
            embeddings,
            parameter="embeddings",
            extent=extent,
            extent_crs=extent_crs,
            **(source_options or {}),
        )
    )
    if extent is None:
        return source, source
    if extent_crs or source.default_extent_crs:
        extent_crs = extent_crs or source.default_extent_crs
        extent = reproject_extent(extent, _crs(extent_crs, "extent_crs"), source.crs)
    return source, crop_to_extent(source, extent)


def _crs(value: Any, parameter: str):
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(value)
    except Exception as error:  # rasterio raises CRSError and friends
        raise LczError(parameter, f"{value!r} is not a CRS ({error}); e.g. EPSG:4326") from None


def to_crs(x: float, y: float, src: Any, dst: Any, parameter: str) -> tuple[float, float]:
    """The point (x, y) of CRS `src` (None: already `dst`) in `dst`; `parameter` names `src`."""
    from rasterio.warp import transform

    if src is None:
        return float(x), float(y)
    src = _crs(src, parameter)
    if src == dst:
        return float(x), float(y)
    xs, ys = transform(src, dst, [x], [y])
    if not (math.isfinite(xs[0]) and math.isfinite(ys[0])):
        raise LczError(parameter, f"({x}, {y}) cannot be transformed to {dst.to_string()}")
    return float(xs[0]), float(ys[0])


def _figure(bounds: Bounds, crs, title: str):
    """A matplotlib Figure (Agg canvas) and its axes, in map units when the CRS is projected."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 7), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    projected = bool(crs and crs.is_projected)
    ax.set_xlabel("easting (m)" if projected else "x")
    ax.set_ylabel("northing (m)" if projected else "y")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.set_xlim(bounds[0], bounds[2])
    ax.set_ylim(bounds[1], bounds[3])
    return fig, ax


def _read_decimated(path: Path, bands: list[int]):
    """Bands of a GeoTIFF read with at most MAX_PLOT_PIXELS a side, with its bounds and CRS."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        scale = max(1.0, max(src.width, src.height) / MAX_PLOT_PIXELS)
        shape = (len(bands), max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        data = src.read(bands, out_shape=shape, resampling=Resampling.nearest)
        return data, tuple(src.bounds), src.crs


def _save_png(fig, path: Path, parameter: str) -> None:
    with atomic_path(path, parameter) as tmp:
        fig.savefig(tmp, format="png")


def _image_extent(bounds: Bounds) -> tuple[float, float, float, float]:
    return bounds[0], bounds[2], bounds[1], bounds[3]


# ---------------------------------------------------------------- embedding RGB


def rgb_style_qml() -> str:
    """A QGIS style (.qml): a multiband colour renderer, bands 1-3 as RGB, band 4 alpha, no stretch."""
    channels = "\n".join(
        f"      <{name}ContrastEnhancement><minValue>0</minValue><maxValue>255</maxValue>"
        f"<algorithm>NoEnhancement</algorithm></{name}ContrastEnhancement>"
        for name in ("red", "green", "blue")
    )
    return raster_style_qml(
        '<rasterrenderer type="multibandcolor" redBand="1" greenBand="2" blueBand="3" '
        'alphaBand="4" opacity="1" nodataColor="">',
        channels,
    )


def _profile(source: EmbeddingSource, dtype: str, count: int, **extra: Any) -> dict[str, Any]:
    profile = {
        "driver": "GTiff",
        "dtype": dtype,
        "count": count,
        "width": source.width,
        "height": source.height,
        "crs": source.crs,
        "transform": source.transform,
        "compress": "deflate",
        **extra,
    }
    if source.width >= BLOCK and source.height >= BLOCK:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    return profile


def embedding_rgb(
    embeddings: str | os.PathLike,
    output: str | os.PathLike,
    *,
    png: str | os.PathLike | None = None,
    extent: Bounds | None = None,
    extent_crs: str | None = None,
    stretch: str = "percentile",
    percentiles: tuple[float, float] = (2.0, 98.0),
    seed: int = 0,
    source_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write a false-colour RGB GeoTIFF (PCA of the embeddings, alpha = valid) and a PNG."""
    import rasterio
    from rasterio.enums import ColorInterp

    progress = progress or Progress()
    check_stretch(stretch, percentiles)
    output = check_writable(output)
    png = check_writable(png, "png") if png else None
    with contextlib.ExitStack() as stack:
        _, source = open_extent(stack, embeddings, extent, extent_crs, source_options)
        blocks = windows(source.width, source.height)
        sample = PixelSample(SAMPLE_PIXELS, seed)
        for w in track(blocks, SubProgress(progress, 0, 45), len(blocks), "sampling"):
            sample.add(source.read(w), w.row_off, w.col_off)
        fit = fit_rgb(sample.values(), stretch, percentiles, "extent" if extent else "embeddings")
        profile = _profile(source, "uint8", 4, photometric="RGB", alpha="UNASSOCIATED")
        with atomic_path(output) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.colorinterp = [
                ColorInterp.red,
                ColorInterp.green,
                ColorInterp.blue,
                ColorInterp.alpha,
            ]
            for i, name in enumerate(("PC1", "PC2", "PC3", "valid")):
                dst.set_band_description(i + 1, name)
            dst.update_tags(
                RGB_METHOD="PCA of standardised embeddings; sign: largest loading positive",
                RGB_STRETCH=stretch if stretch != "percentile" else f"percentile {percentiles}",
                RGB_SEED=str(seed),
                RGB_SAMPLE_PIXELS=str(fit.sorted_scores.shape[1]),
                RGB_EXPLAINED_VARIANCE=" ".join(f"{v:.4f}" for v in fit.explained),
                RGB_SOURCE=source.name,
            )
            for w in track(blocks, SubProgress(progress, 45, 95), len(blocks), "colouring"):
                rgb = fit.rgb(source.read(w))
                valid = ~np.isnan(rgb[0])
                dst.write(to_uint8(rgb), [1, 2, 3], window=w)
                dst.write((valid * 255).astype(np.uint8), 4, window=w)
        qml = output.with_suffix(".qml")
        write_text_atomic(qml, rgb_style_qml())
        if png:
            progress.report(95, "picture")
            data, bounds, crs = _read_decimated(output, [1, 2, 3, 4])
            explained = ", ".join(f"{100 * v:.0f}%" for v in fit.explained)
            fig, ax = _figure(
                bounds, crs, f"{Path(source.name).name}: PCA RGB ({stretch}), variance {explained}"
            )
            ax.imshow(
                np.moveaxis(data, 0, 2), extent=_image_extent(bounds), interpolation="nearest"
            )
            _save_png(fig, png, "png")
        progress.report(100, "done")
        return {
            "output": str(output),
            "qml": str(qml),
            "png": str(png) if png else None,
            "width": source.width,
            "height": source.height,
            "crs": source.crs.to_string(),
            "stretch": stretch,
            "seed": seed,
            "sample_pixels": int(len(fit.sorted_scores[0])),
            "valid_pixels": int(sample.valid_pixels),
            "missing_pixels": int(source.width * source.height - sample.valid_pixels),
            "explained_variance": [round(float(v), 4) for v in fit.explained],
        }


# ---------------------------------------------------------------- similarity


def reference_at_point(
    source: EmbeddingSource, point: tuple[float, float], point_crs: str | None
) -> tuple[np.ndarray, tuple[float, float]]:
    """The embedding (C,) of the pixel under `point` and the point in the source CRS."""
    x, y = to_crs(*point, point_crs, source.crs, "point_crs")
    col, row = (math.floor(v) for v in ~source.transform * (x, y))
    if not (0 <= col < source.width and 0 <= row < source.height):
        left, bottom, right, top = source.bounds
        raise LczError(
            "point",
            f"({point[0]:.6g}, {point[1]:.6g}) is ({x:.6g}, {y:.6g}) in {source.crs.to_string()}, "
            f"outside the embeddings ({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}); give a "
            "point inside the data (and its CRS in point_crs)",
        )
    vector = source.read(Window(col, row, 1, 1))[:, 0, 0]
    if np.isnan(vector).any():
        raise LczError(
            "point",
            f"the embedding at ({point[0]:.6g}, {point[1]:.6g}) (pixel row {row}, column {col}) "
            "is missing; move the point onto a pixel with data, or give polygons",
        )
    return vector.astype(np.float64), (x, y)


def reference_in_polygons(
    source: EmbeddingSource, polygons: str | os.PathLike, layer: str | None = None
) -> tuple[np.ndarray, int]:
    """The mean embedding (C,) of the valid pixels whose centres the polygons cover, and their count."""
    import geopandas as gpd
    from rasterio.features import rasterize
    from rasterio.windows import transform as window_transform

    from .rasters import clip_window

    try:
        frame = gpd.read_file(polygons, layer=layer)
    except Exception as error:  # pyogrio raises DataSourceError and friends
        raise LczError("polygons", f"cannot read {polygons}: {error}") from None
    if frame.crs is None:
        raise LczError("polygons", f"{polygons} has no CRS; assign one first")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].to_crs(source.crs.to_wkt())
    total, count = np.zeros(source.count), 0
    area = clip_window(source.window_for(tuple(frame.total_bounds)), source.width, source.height)
    if area is not None and len(frame):
        for w in windows(area.width, area.height):
            w = Window(w.col_off + area.col_off, w.row_off + area.row_off, w.width, w.height)
            inside = rasterize(
                frame.geometry,
                out_shape=(w.height, w.width),
                transform=window_transform(w, source.transform),
                dtype="uint8",
            ).astype(bool)
            if inside.any():
                data = source.read(w)[:, inside]
                data = data[:, ~np.isnan(data).any(axis=0)]
                total += data.sum(axis=1, dtype=np.float64)
                count += data.shape[1]
    if count == 0:
        raise LczError(
            "polygons",
            f"{polygons} covers no pixel with embeddings (CRS {source.crs.to_string()}); "
            "draw the polygons over valid data",
        )
    return total / count, count


def similarity_style_qml(low: float, high: float) -> str:
    """A QGIS style (.qml): a pseudocolour ramp (viridis) from `low` to `high`."""
    steps = np.linspace(low, high, len(RAMP))
    items = "\n".join(
        f'          <item value="{v:.6g}" color="{c}" alpha="255" label="{v:.2f}"/>'
        for v, c in zip(steps, RAMP, strict=True)
    )
    return raster_style_qml(
        '<rasterrenderer type="singlebandpseudocolor" band="1" opacity="1" alphaBand="-1" '
        f'classificationMin="{low:.6g}" classificationMax="{high:.6g}" nodataColor="">',
        f"""      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" """
        f"""minimumValue="{low:.6g}" maximumValue="{high:.6g}">
{items}
        </colorrampshader>
      </rastershader>""",
    )


def cosine_similarity(data: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(h, w) float32 cosine similarity of (C, h, w) embeddings to a (C,) vector; NaN if missing."""
    unit = (reference / np.linalg.norm(reference)).astype(np.float32)
    norms = np.sqrt(np.einsum("chw,chw->hw", data, data))
    return np.clip(np.tensordot(unit, data, axes=1) / norms, -1, 1).astype(np.float32)


def embedding_similarity(
    embeddings: str | os.PathLike,
    output: str | os.PathLike,
    *,
    point: tuple[float, float] | None = None,
    point_crs: str | None = None,
    polygons: str | os.PathLike | None = None,
    layer: str | None = None,
    extent: Bounds | None = None,
    extent_crs: str | None = None,
    png: str | os.PathLike | None = None,
    source_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the cosine similarity of every pixel to the embedding at `point` (or the polygons' mean)."""
    import rasterio

    progress = progress or Progress()
    if (point is None) == (polygons is None):
        raise LczError("point", "give either a point or polygons (a vector file), not both")
    output = check_writable(output)
    png = check_writable(png, "png") if png else None
    with contextlib.ExitStack() as stack:
        whole, source = open_extent(stack, embeddings, extent, extent_crs, source_options)
        progress.report(0, "reference embedding")
        if point is not None:
            reference, at = reference_at_point(whole, point, point_crs)
            pixels = 1
        else:
            reference, pixels = reference_in_polygons(whole, polygons, layer)
            at = None
        # a histogram of the values gives the ramp's lower end (2nd percentile) at no extra pass
        edges = np.linspace(-1, 1, 2001)
        histogram, high = np.zeros(len(edges) - 1, np.int64), -1.0
        profile = _profile(source, "float32", 1, nodata=float("nan"))
        blocks = windows(source.width, source.height)
        with atomic_path(output) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.set_band_description(1, "cosine similarity")
            for w in track(blocks, SubProgress(progress, 5, 95), len(blocks), "similarity"):
                similarity = cosine_similarity(source.read(w), reference)
                values = similarity[~np.isnan(similarity)]
                histogram += np.histogram(values, edges)[0]
                high = max(high, float(values.max(initial=-1.0)))
                dst.write(similarity, 1, window=w)
            valid = int(histogram.sum())
            if valid == 0:
                raise LczError(
                    "extent" if extent else "embeddings",
                    "holds no valid embedding pixel (all missing); choose an area with data",
                )
            low = float(edges[np.searchsorted(np.cumsum(histogram) / valid, 0.02)])
            low = min(low, high - 0.01)  # a ramp needs some width
            reference_text = (
                f"point ({point[0]}, {point[1]}) {point_crs or ''}".strip()
                if point is not None
                else f"mean of {pixels} pixels in {polygons}"
            )
            dst.update_tags(SIMILARITY_REFERENCE=reference_text, SIMILARITY_SOURCE=source.name)
        qml = output.with_suffix(".qml")
        write_text_atomic(qml, similarity_style_qml(low, high))
        if png:
            progress.report(95, "picture")
            from matplotlib.colors import LinearSegmentedColormap

            data, bounds, crs = _read_decimated(output, [1])
            fig, ax = _figure(bounds, crs, f"cosine similarity to the {reference_text}")
            image = ax.imshow(
                data[0],
                extent=_image_extent(bounds),
                cmap=LinearSegmentedColormap.from_list("ramp", RAMP),
                vmin=low,
                vmax=high,
                interpolation="nearest",
            )
            fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
            if at is not None:
                ax.plot(*at, marker="+", color="red", markersize=14, mew=2)
            _save_png(fig, png, "png")
        progress.report(100, "done")
        return {
            "output": str(output),
            "qml": str(qml),
            "png": str(png) if png else None,
            "reference": reference_text,
            "reference_pixels": pixels,
            "point": list(at) if at is not None else None,
            "crs": source.crs.to_string(),
            "valid_pixels": valid,
            "ramp": [low, high],
        }
