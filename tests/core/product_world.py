"""A test world for the product readers: vectors that are a function of the place only (and
differ from pixel to pixel), sampled on any UTM grid, and the nearest-pixel expectation."""

from __future__ import annotations

import numpy as np
from affine import Affine
from pyproj import Transformer

BANDS = 16


def world(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(BANDS, ...) vectors that differ from pixel to pixel, a function of the place only."""
    k = np.arange(BANDS).reshape(-1, *([1] * np.ndim(lon)))
    return (np.sin(lon * 7.3e4 + k) + np.cos(lat * 5.1e4 - 2 * k)).astype(np.float32)


def zone_grid(crs: str, lonlat_box, res: float = 10.0) -> tuple[Affine, int, int]:
    """A 10 m grid (on whole multiples of 10 m) in `crs` covering a lon/lat box."""
    from rasterio.warp import transform_bounds

    left, bottom, right, top = transform_bounds("EPSG:4326", crs, *lonlat_box, densify_pts=21)
    x0, y0 = np.floor(left / res) * res, np.ceil(top / res) * res
    width, height = int(np.ceil((right - x0) / res)), int(np.ceil((y0 - bottom) / res))
    return Affine(res, 0, x0, 0, -res, y0), width, height


def sample_world(crs: str, transform: Affine, width: int, height: int) -> np.ndarray:
    """The world's vectors at the pixel centres of a grid."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x, y = transform.c + cols * transform.a, transform.f + rows * transform.e
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return world(lon, lat)


def expected_on(source, crs: str, transform: Affine, values: np.ndarray) -> np.ndarray:
    """`values` on `transform` (in `crs`) sampled at the source grid's pixel centres (nearest,
    every centre projected exactly); NaN outside."""
    cols, rows = np.meshgrid(np.arange(source.width) + 0.5, np.arange(source.height) + 0.5)
    x = source.transform.c + cols * source.transform.a
    y = source.transform.f + rows * source.transform.e
    px, py = Transformer.from_crs(source.crs, crs, always_xy=True).transform(x, y)
    c = np.floor((px - transform.c) / transform.a).astype(int)
    r = np.floor((py - transform.f) / transform.e).astype(int)
    inside = (r >= 0) & (r < values.shape[1]) & (c >= 0) & (c < values.shape[2])
    out = np.full((values.shape[0], *r.shape), np.nan, np.float32)
    out[:, inside] = values[:, r[inside], c[inside]]
    return out
