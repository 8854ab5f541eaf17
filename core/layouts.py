"""Write embeddings in the layouts the real products are published in (see LCZ.md, "Data
products"): a TESSERA zarr store (`write_tessera_zone`) and an AlphaEarth COG mirror with its
index (`write_aef_mirror`). The demo city uses them so that the whole pipeline can run on each
product's layout; the tests use them to build byte-faithful fixtures.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from .errors import LczError
from .tessera import SOUTH_OFFSET, tessera_feature_space

# geotessera's store: inner chunks of 32 px, shards of 4096 px; smaller shards suit small cities
TESSERA_CHUNK = 32
TESSERA_SHARD = 4096
AEF_FILE_PX = 8192
AEF_MIRROR_PREFIX = "s3://us-west-2.opendata.source.coop/tge-labs/aef/v1/annual"


def utm_zone_of(crs: CRS) -> tuple[int, str]:
    """(zone number, 'N' or 'S') of a WGS84 UTM CRS (EPSG:326NN or 327NN)."""
    epsg = crs.to_epsg() or 0
    if 32601 <= epsg <= 32660:
        return epsg - 32600, "N"
    if 32701 <= epsg <= 32760:
        return epsg - 32700, "S"
    raise LczError("crs", f"{crs.to_string()} is not a WGS84 UTM zone (EPSG:326NN or 327NN)")


def quantise_tessera(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scales) of float (bands, H, W) embeddings, absmax per pixel;
    missing pixels (any NaN) get the scale +inf ("no data") and values 0."""
    missing = ~np.isfinite(embeddings).all(axis=0)
    data = np.where(missing, 0.0, embeddings)
    scales = (np.abs(data).max(axis=0) / 127.0).astype(np.float32)
    scales[scales == 0] = np.float32(1 / 127.0)
    values = np.clip(np.round(data / scales), -127, 127).astype(np.int8)
    scales[missing] = np.inf
    return values, scales


def write_tessera_zone(
    store: str | os.PathLike,
    embeddings: np.ndarray,
    transform: Affine,
    crs: str | CRS,
    years: list[int],
    *,
    layout: str = "utm",
    variant: str | None = "1.1-dclimate",
    chunk: int = TESSERA_CHUNK,
    shard: int = TESSERA_SHARD,
) -> str:
    """Add one UTM zone group to a TESSERA zarr v3 store (created if absent); return its name.

    `embeddings` is float (time, bands, H, W) (an array, or anything sliced like one) on a
    north-up 10 m grid in `crs` (EPSG:326NN or
    327NN), NaN where missing. layout 'utm': group utmNN, arrays (time, band, y, x), CRS
    EPSG:326NN with southern northings negative (geotessera's default store); 'hemisphere':
    group NNN or NNS, arrays (time, y, x, band), in the zone's own CRS."""
    import zarr
    from zarr.codecs import BloscCodec

    crs = CRS.from_user_input(crs)
    zone, hemisphere = utm_zone_of(crs)
    t_count, bands, height, width = embeddings.shape
    if layout == "utm":
        name, code = f"utm{zone:02d}", f"EPSG:{32600 + zone}"
        north = transform.f - (SOUTH_OFFSET if hemisphere == "S" else 0.0)
        dims, order = ["time", "band", "y", "x"], (0, 1, 2, 3)
    elif layout == "hemisphere":
        name, code, north = f"{zone:02d}{hemisphere}", f"EPSG:{crs.to_epsg()}", transform.f
        dims, order = ["time", "y", "x", "band"], (0, 2, 3, 1)
    else:
        raise LczError("layout", f"unknown TESSERA store layout {layout!r}; use utm or hemisphere")
    root = zarr.open_group(str(store), mode="a", zarr_format=3)
    if "geoemb:type" not in root.attrs:
        root.attrs.update(_tessera_root_attributes(bands, variant))
    group = root.create_group(name)
    compressor = BloscCodec(cname="zstd", clevel=3)
    shard = max(chunk, math.ceil(min(shard, max(height, width)) / chunk) * chunk)
    spatial = {"band": bands, "y": shard, "x": shard, "time": 1}
    inner = {"band": bands, "y": chunk, "x": chunk, "time": 1}
    emb_array = group.create_array(
        "embeddings",
        shape=tuple(embeddings.shape[i] for i in order),
        chunks=tuple(inner[d] for d in dims),
        shards=tuple(spatial[d] for d in dims),
        dtype="int8",
        fill_value=np.int8(0),
        compressors=compressor,
        dimension_names=dims,
    )
    scale_array = group.create_array(
        "scales",
        shape=(t_count, height, width),
        chunks=(1, chunk, chunk),
        shards=(1, shard, shard),
        dtype="float32",
        fill_value=np.float32("inf"),
        compressors=compressor,
        dimension_names=["time", "y", "x"],
    )
    for t in range(t_count):  # a row of shards at a time: memory bounded by the shard
        for r0 in range(0, height, shard):
            rows = slice(r0, min(r0 + shard, height))
            values, scales = quantise_tessera(np.asarray(embeddings[t, :, rows, :]))
            where = {"time": t, "band": slice(None), "y": rows, "x": slice(None)}
            emb_array[tuple(where[d] for d in dims)] = values.transpose([o - 1 for o in order[1:]])
            scale_array[t, rows, :] = scales
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    y = north + (np.arange(height) + 0.5) * transform.e
    for coord, data in (
        ("x", x),
        ("y", y),
        ("time", np.asarray(years, np.int32)),
        ("band", np.arange(bands, dtype=np.int32)),
    ):
        group.create_array(
            coord, shape=data.shape, dtype=data.dtype, fill_value=0, dimension_names=[coord]
        )[:] = data
    left, top = transform.c, north
    group.attrs.update(
        {
            "zarr_conventions": [{"name": "proj:"}, {"name": "spatial:"}],
            "proj:code": code,
            "spatial:dimensions": ["y", "x"],
            "spatial:transform": [transform.a, 0.0, left, 0.0, transform.e, top],
            "spatial:shape": [height, width],
            "spatial:bbox": [left, top + height * transform.e, left + width * transform.a, top],
            "spatial:registration": "pixel",
        }
    )
    with warnings.catch_warnings():  # zarr notes that consolidation is not in the v3 spec
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(store))
    return name


def _tessera_root_attributes(bands: int, variant: str | None) -> dict:
    """Root attributes of a store, as geotessera writes them (plus the dataset, if known)."""
    attrs: dict = {
        "zarr_conventions": [{"name": "geoemb:"}],
        "geoemb:type": "pixel",
        "geoemb:dimensions": bands,
        "geoemb:data_type": "int8",
        "geoemb:gsd": 10.0,
        "geoemb:spatial_layout": "utm_zones",
        "geoemb:quantization": {
            "method": "per_pixel_scale",
            "original_dtype": "float32",
            "quantized_dtype": "int8",
            "scale": {"type": "array", "array_name": "scales", "nodata": "+inf"},
        },
    }
    if variant:
        number, *name = tessera_feature_space(variant).split(" ")[1:]
        attrs["tessera:dataset_version"] = number
        if name:
            attrs["tessera:dataset_variant"] = name[0]
    return attrs


def quantise_aef(embeddings: np.ndarray) -> np.ndarray:
    """int8 of float embeddings by the inverse of sign(v) * (v / 127.5) ** 2; NaN -> -128."""
    missing = ~np.isfinite(embeddings).all(axis=0)
    data = np.where(missing, 0.0, embeddings)
    values = np.clip(np.round(np.sign(data) * np.sqrt(np.abs(data)) * 127.5), -127, 127)
    values = values.astype(np.int8)
    values[:, missing] = -128
    return values


def write_aef_mirror(
    root: str | os.PathLike,
    embeddings: np.ndarray,
    transform: Affine,
    crs: str | CRS,
    year: int,
    *,
    file_px: int = AEF_FILE_PX,
    bottom_up: bool = True,
    index: bool = True,
) -> list[Path]:
    """Write float (64, H, W) embeddings (unit vectors, NaN = missing) as AlphaEarth COGs in the
    public layout `<root>/<year>/<zone>/<id>-<yoff>-<xoff>.tiff` (files of `file_px` a side, rows
    bottom-up as on the free mirror), and (re)write `<root>/aef_index.*` over every file there."""
    import rasterio
    from rasterio.shutil import copy as copy_raster

    from .outputs import atomic_path

    crs = CRS.from_user_input(crs)
    zone, hemisphere = utm_zone_of(crs)
    folder = Path(root) / str(year) / f"{zone}{hemisphere}"
    folder.mkdir(parents=True, exist_ok=True)
    image = hashlib.sha1(f"{zone}{hemisphere}{year}{transform}".encode()).hexdigest()[:16]
    values = quantise_aef(embeddings)
    bands, height, width = values.shape
    written = []
    for yoff in range(0, height, file_px):
        for xoff in range(0, width, file_px):
            part = values[:, yoff : yoff + file_px, xoff : xoff + file_px]
            h, w = part.shape[1:]
            left, top = transform * (xoff, yoff)
            if bottom_up:
                part = part[:, ::-1, :]
                placed = Affine(transform.a, 0, left, 0, -transform.e, top + h * transform.e)
            else:
                placed = Affine(transform.a, 0, left, 0, transform.e, top)
            path = folder / f"{image}-{yoff:010d}-{xoff:010d}.tiff"
            profile = dict(driver="GTiff", width=w, height=h, count=bands, dtype="int8")
            profile.update(crs=crs, transform=placed, nodata=-128, interleave="pixel")
            with atomic_path(path) as tmp, rasterio.MemoryFile() as memory:
                with memory.open(**profile) as dataset:
                    dataset.write(part)
                    dataset.descriptions = tuple(f"A{i:02d}" for i in range(bands))
                    copy_raster(
                        dataset,
                        tmp,
                        driver="COG",
                        blocksize=256,
                        compress="deflate",
                        overviews="NONE",
                    )
            written.append(path)
    if index:
        write_aef_index(root)
    return written


def write_aef_index(root: str | os.PathLike) -> Path:
    """Write `<root>/aef_index.parquet` with one row per file under `<root>/<year>/<zone>/`, in the published index's columns."""
    import geopandas as gpd
    import rasterio
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    from .outputs import atomic_path

    root = Path(root)
    rows = []
    for fid, path in enumerate(sorted(root.glob("[0-9][0-9][0-9][0-9]/*/*.tiff"))):
        with rasterio.open(path) as dataset:
            left, bottom, right, top = dataset.bounds
            west, south, east, north = transform_bounds(
                dataset.crs, "EPSG:4326", left, bottom, right, top, densify_pts=21
            )
            rows.append(
                {
                    "fid": fid,
                    "path": f"{AEF_MIRROR_PREFIX}/{path.relative_to(root).as_posix()}",
                    "year": int(path.parts[-3]),
                    "crs": dataset.crs.to_string(),
                    "utm_zone": path.parts[-2],
                    "utm_west": left,
                    "utm_south": bottom,
                    "utm_east": right,
                    "utm_north": top,
                    "wgs84_west": west,
                    "wgs84_south": south,
                    "wgs84_east": east,
                    "wgs84_north": north,
                    "geometry": box(west, south, east, north),
                }
            )
    frame = gpd.GeoDataFrame(rows, crs="EPSG:4326")
    target = root / "aef_index.parquet"
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp)
    return target
