"""A small SYNTHETIC demo city ("Synthetica"), generated deterministically from a seed.

Nothing here is real data. It gives `make demo`, the tests and new users a complete, realistic-looking
case: an LCZ label map at 10 m (4.8 km x 4.8 km by default; the city, about 4.4 km across, in the
middle: compact core, open and sparse rings, an industrial sector, a river, parks, forest and
farmland), 64-band embeddings derived from it (class prototypes, mixed pixels at class edges,
spatially correlated noise, missing pixels) as GeoTIFF and zarr, So2Sat-style patch points, label
polygons and a 100 m reference map with realistic disagreement.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import LczError
from .outputs import LczRasterWriter, atomic_path
from .progress import Progress
from .steps.demo import DEMO_CITY

DEMO_CRS = "EPSG:32633"
DEMO_ORIGIN = (380_000.0, 5_825_000.0)  # upper-left corner, metres
DEMO_SIZE = DEMO_CITY.param("size").default  # pixels a side
DEMO_PIXEL = 10.0  # metres
DEMO_BANDS = 64
PATCH_PX = 32
REFERENCE_PIXEL = 100.0
# Pairs of classes a 100 m product confuses most often (used for the reference map's errors).
SIMILAR = {2: 3, 1: 2, 4: 5, 5: 6, 6: 9, 9: 6, 8: 10, 10: 8, 11: 12, 12: 14, 14: 12, 16: 14, 17: 17}


@dataclass
class DemoCity:
    """Paths of the files of a generated demo city."""

    folder: Path
    labels: Path
    embeddings_tif: Path
    embeddings_zarr: Path
    patches: Path
    polygons: Path
    reference: Path

    def as_dict(self) -> dict[str, str]:
        """The paths as strings."""
        return {k: str(v) for k, v in asdict(self).items()}


def _gaussian_blur(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each 2-D layer of `stack` (..., H, W) with a Gaussian, reflecting at the borders."""
    pad = int(4 * sigma) + 1
    padded = np.pad(stack, [(0, 0)] * (stack.ndim - 2) + [(pad, pad), (pad, pad)], mode="reflect")
    h, w = padded.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    blurred = np.fft.irfft2(np.fft.rfft2(padded) * kernel, s=(h, w))
    return blurred[..., pad:-pad, pad:-pad]


def demo_labels(seed: int = 0, size: int = DEMO_SIZE) -> np.ndarray:
    """The demo city's LCZ map (size x size pixels, codes 1-17) at 10 m; the city in the middle.

    The city grows with `size` (distances below are for the default size), the texture does not."""
    rng = np.random.default_rng(seed)
    n, scale = size, size / DEMO_SIZE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64) * DEMO_PIXEL
    cx, cy = n * DEMO_PIXEL / 2, n * DEMO_PIXEL / 2
    wobble = _gaussian_blur(rng.normal(size=(n, n)), 12.0 * scale)
    wobble *= 350.0 / wobble.std()
    r = np.hypot(xx - cx, yy - cy) / scale + wobble
    angle = np.degrees(np.arctan2(yy - cy, xx - cx))
    texture = _gaussian_blur(rng.normal(size=(n, n)), 3.0)
    texture /= texture.std()

    labels = np.full((n, n), 14, dtype=np.uint8)  # farmland (low plants)
    labels[texture > 1.0] = 12  # scattered trees in the fields
    forest = _gaussian_blur(rng.normal(size=(n, n)), 10.0)
    labels[(forest > forest.std() * 0.8) & (r > 1900)] = 11
    labels[(r < 2200)] = 9  # sparsely built fringe
    labels[(r < 1800)] = 6  # open low-rise suburbs
    labels[(r < 1250)] = 5  # open mid-rise
    labels[(r < 1250) & (texture > 0.9)] = 4  # open high-rise towers
    labels[(r < 700)] = 2  # compact mid-rise core
    labels[(r < 300) & (texture > -0.2)] = 1  # compact high-rise centre
    labels[(r > 900) & (r < 2000) & (angle > 20) & (angle < 70)] = 10  # industrial sector
    labels[(r > 900) & (r < 2000) & (angle > 20) & (angle < 70) & (texture > 0.3)] = 8
    park = np.hypot(xx - cx + 900 * scale, yy - cy - 500 * scale) < 280 * scale
    labels[park] = 11
    labels[(r > 2200) & (texture < -1.6)] = 16  # bare soil (fallow fields)
    river_centre = cy + 900 * scale * np.sin(xx / (1500.0 * scale)) + 0.6 * (xx - cx)
    labels[np.abs(yy - river_centre) < 60] = 17
    return labels


def demo_embeddings(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Embeddings (DEMO_BANDS x H x W, float32, NaN = missing) derived from a label map."""
    rng = np.random.default_rng(seed + 1)
    prototypes = rng.normal(size=(17, DEMO_BANDS))
    one_hot = (labels[None] == np.arange(1, 18)[:, None, None]).astype(np.float64)
    mixed = _gaussian_blur(one_hot, 1.2)  # mixed pixels at class edges
    emb = np.tensordot(prototypes.T, mixed, axes=1)
    emb += 0.6 * _gaussian_blur(rng.normal(size=emb.shape), 4.0) * 4.0  # correlated noise
    emb += 0.35 * rng.normal(size=emb.shape)
    emb = emb.astype(np.float32)
    # Missing pixels: a few gaps (clouds, tile seams) and scattered dropouts.
    n = labels.shape[0]
    for _ in range(4):
        y, x = rng.integers(0, n - 40, size=2)
        h, w = rng.integers(8, 40, size=2)
        emb[:, y : y + h, x : x + w] = np.nan
    emb[:, rng.random((n, n)) < 0.002] = np.nan
    return emb


def _transform(pixel: float):
    from affine import Affine

    return Affine(pixel, 0.0, DEMO_ORIGIN[0], 0.0, -pixel, DEMO_ORIGIN[1])


def _reference_map(labels: np.ndarray, seed: int) -> np.ndarray:
    """A 100 m LCZ map: the 10 m classes' mode per block, with a product's typical confusions."""
    rng = np.random.default_rng(seed + 2)
    k = int(REFERENCE_PIXEL / DEMO_PIXEL)
    blocks = labels.reshape(labels.shape[0] // k, k, labels.shape[1] // k, k).transpose(0, 2, 1, 3)
    flat = blocks.reshape(blocks.shape[0], blocks.shape[1], -1)
    counts = (flat[..., None] == np.arange(1, 18)).sum(axis=2)
    reference = (counts.argmax(axis=2) + 1).astype(np.uint8)
    confuse = rng.random(reference.shape) < 0.18
    reference[confuse] = np.vectorize(lambda c: SIMILAR.get(int(c), int(c)))(reference[confuse])
    return reference


def make_demo_city(
    folder: str | Path, seed: int = 0, size: int = DEMO_SIZE, progress: Progress | None = None
) -> DemoCity:
    """Write the synthetic demo city (size x size pixels of 10 m) into `folder`; return its paths."""
    import geopandas as gpd
    import rasterio
    import zarr
    from shapely.geometry import Point, box

    progress = progress or Progress()
    if size < 2 * PATCH_PX or size % int(REFERENCE_PIXEL / DEMO_PIXEL):
        raise LczError(
            "size", f"{size} must be a multiple of 10 pixels and at least {2 * PATCH_PX}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    city = DemoCity(
        folder=folder,
        labels=folder / "synthetic_lcz_labels_10m.tif",
        embeddings_tif=folder / "synthetic_embeddings.tif",
        embeddings_zarr=folder / "synthetic_embeddings.zarr",
        patches=folder / "synthetic_patches.gpkg",
        polygons=folder / "synthetic_polygons.gpkg",
        reference=folder / "synthetic_reference_100m.tif",
    )
    transform = _transform(DEMO_PIXEL)
    progress.report(0, "labels")
    labels = demo_labels(seed, size)
    with LczRasterWriter(
        city.labels, crs=DEMO_CRS, transform=transform, width=size, height=size
    ) as writer:
        writer.write(labels)

    progress.report(10, "embeddings")
    emb = demo_embeddings(labels, seed)
    band_names = [f"A{i:02d}" for i in range(DEMO_BANDS)]
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": DEMO_BANDS,
        "width": size,
        "height": size,
        "crs": DEMO_CRS,
        "transform": transform,
        "nodata": float("nan"),
        "tiled": True,
        "blockxsize": 128,
        "blockysize": 128,
        "compress": "deflate",
        "interleave": "pixel",
    }
    with atomic_path(city.embeddings_tif) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(emb)
            dst.descriptions = tuple(band_names)
            dst.update_tags(SOURCE="synthetic demo embeddings (not real data)")
    progress.report(50, "embeddings (zarr)")
    crs_wkt = rasterio.crs.CRS.from_string(DEMO_CRS).to_wkt()
    root = zarr.open_group(str(city.embeddings_zarr), mode="w")
    array = root.create_array(
        "embeddings",
        shape=emb.shape,
        dtype="float32",
        chunks=(DEMO_BANDS, 128, 128),
        fill_value=float("nan"),
        dimension_names=("band", "y", "x"),
    )
    array[:] = emb
    array.attrs.update(
        crs_wkt=crs_wkt,
        transform=list(transform)[:6],
        band_names=band_names,
        nodata="nan",
        source="synthetic demo embeddings (not real data)",
    )

    progress.report(70, "patches and polygons")
    rows = []
    for top in range(0, size, PATCH_PX):
        for left in range(0, size, PATCH_PX):
            patch = labels[top : top + PATCH_PX, left : left + PATCH_PX]
            counts = np.bincount(patch.ravel(), minlength=18)
            code = int(counts.argmax())
            share = counts[code] / patch.size
            if share >= 0.5:
                x, y = transform * (left + PATCH_PX / 2, top + PATCH_PX / 2)
                rows.append({"lcz": code, "share": round(float(share), 3), "geometry": Point(x, y)})
    _write_vector(gpd.GeoDataFrame(rows, crs=DEMO_CRS), city.patches)

    polygons = []
    # squares of one class, up to 3 per class; a small city has only small uniform areas
    for square in (20, 10, 6, 4):
        inset = max(1, square // 10)  # pixels kept off the square's edge
        for code in np.unique(labels):
            found = 0
            for top in range(0, size - square, square):
                for left in range(0, size - square, square):
                    window = labels[top : top + square, left : left + square]
                    if found < 3 and np.all(window == code):
                        x0, y0 = transform * (left + inset, top + square - inset)
                        x1, y1 = transform * (left + square - inset, top + inset)
                        polygons.append({"lcz": int(code), "geometry": box(x0, y0, x1, y1)})
                        found += 1
        if polygons:
            break
    frame = gpd.GeoDataFrame(polygons, columns=["lcz", "geometry"], crs=DEMO_CRS)
    _write_vector(frame, city.polygons)

    progress.report(85, "reference map")
    reference = _reference_map(labels, seed)
    ref_profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "nodata": 0,
        "crs": DEMO_CRS,
        "width": reference.shape[1],
        "height": reference.shape[0],
        "transform": _transform(REFERENCE_PIXEL),
    }
    with atomic_path(city.reference) as tmp:
        with rasterio.open(tmp, "w", **ref_profile) as dst:
            dst.write(reference, 1)
            dst.update_tags(SOURCE="synthetic 100 m reference LCZ map (not real data)")
    (folder / "README.txt").write_text(
        "SYNTHETIC demo city 'Synthetica' made by lcz_core.demo (seed "
        f"{seed}); not real data.\n" + json.dumps(city.as_dict(), indent=2) + "\n",
        encoding="utf-8",
    )
    progress.report(100, "done")
    return city


def _write_vector(frame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_file(tmp, driver="GPKG", layer=path.stem)
