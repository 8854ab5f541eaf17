"""AlphaEarth Foundations embeddings (Brown et al. 2025) from the published COG layout.

Google's bucket and its free public mirror share one layout: `<root>/<year>/<zone>/<file>.tiff`
(int8 COGs of 8192 x 8192 px, 64 bands A00-A63, -128 = nodata, one UTM zone per folder; the
mirror's rows are stored bottom-up, with a `.vrt` beside each file) and an index
`<root>/aef_index.parquet` with one row per file: its footprint (`geom`/`geometry` in degrees or
`wgs84_west` ... `wgs84_north`), `crs`, `year`, `utm_zone` and `path`. Given the index (a path
or a URL) and a year, the files covering a city are found in the index, opened beside it
(`<index folder>/<year>/<zone>/<file name>`, whatever bucket the index's `path` names; remote
files through GDAL's /vsicurl/, which fetches only the blocks read) and mosaicked onto the city
grid across files and UTM zones, dequantised by the chosen rule.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import LczError
from .extents import Bounds
from .rasters import (
    AlphaEarthSource,
    EmbeddingSource,
    MosaicSource,
    city_grid,
    grid_lonlat,
    overlaps_grid,
)
from .remote import is_url, join, parent, read_bytes

AEF_INDEX = "aef_index.parquet"
FOOTPRINT_COLUMNS = ("wgs84_west", "wgs84_south", "wgs84_east", "wgs84_north")


def read_index(index: str | os.PathLike, parameter: str = "embeddings"):
    """The AlphaEarth file index (GeoParquet, or any vector format GDAL reads) as a GeoDataFrame."""
    import geopandas as gpd

    name = str(index)
    try:
        with contextlib.ExitStack() as stack:
            source = Path(index)
            if is_url(name):  # fetched whole: an index is small beside the files it lists
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                source = folder / name.rsplit("/", 1)[-1]
                source.write_bytes(read_bytes(name, parameter))
            if name.endswith(".parquet"):
                frame = gpd.read_parquet(source)
            else:
                frame = gpd.read_file(source)
    except LczError:
        raise
    except ImportError as error:
        raise LczError(
            parameter,
            f"reading {name} needs pyarrow ({error}); pip install pyarrow, or convert the index "
            "to GeoPackage",
        ) from None
    except Exception as error:  # pyarrow, pyogrio and shapely raise many types
        raise LczError(parameter, f"cannot read the index {name}: {error}") from None
    missing = [c for c in ("year", "path") if c not in frame.columns]
    if missing:
        raise LczError(parameter, f"{name} has no column {', '.join(missing)}; is it an aef_index?")
    return frame


def _footprints(frame):
    """(west, south, east, north) columns of every file, in degrees."""
    if all(c in frame.columns for c in FOOTPRINT_COLUMNS):
        return [frame[c].to_numpy(dtype=float) for c in FOOTPRINT_COLUMNS]
    bounds = frame.to_crs("EPSG:4326").bounds if frame.crs else frame.bounds
    return [bounds[c].to_numpy(dtype=float) for c in ("minx", "miny", "maxx", "maxy")]


def file_location(index: str | os.PathLike, path: str) -> str | Path:
    """Where a file the index lists lies: `<index folder>/<year>/<zone>/<file name>`."""
    return join(parent(index), *path.replace("\\", "/").rstrip("/").split("/")[-3:])


def aef_index_source(
    index: str | os.PathLike,
    *,
    year: int | None,
    extent: Bounds,
    extent_crs: str = "EPSG:4326",
    crs: str | None = None,
    dequantise: str = "quadratic",
    parameter: str = "embeddings",
) -> MosaicSource:
    """The AlphaEarth files of `year` covering `extent`, read onto the city grid (see
    `rasters.city_grid`) and stitched across files and UTM zones (nearest)."""
    frame = read_index(index, parameter)
    years = sorted(int(y) for y in frame["year"].unique())
    if year is None or int(year) not in years:
        given = "give the year" if year is None else f"{year} is not in {index}"
        raise LczError("year", f"{given}; the index lists {years}")
    grid = city_grid(extent, extent_crs, crs)
    west, south, east, north = grid_lonlat(grid)  # the margin too
    fw, fs, fe, fn = _footprints(frame)
    hits = frame[
        (frame["year"].astype(int).to_numpy() == int(year))
        & (fw < east)
        & (fe > west)
        & (fs < north)
        & (fn > south)
    ]
    if hits.empty:
        box = tuple(round(v, 4) for v in (west, south, east, north))
        raise LczError("extent", f"no AlphaEarth file of {year} in {index} covers lon/lat {box}")
    files: list[EmbeddingSource] = []
    for path in hits["path"]:
        location = file_location(index, str(path))
        if not is_url(location) and not Path(location).is_file():
            raise LczError(
                parameter,
                f"{location}, listed in {index}, is missing; download it there "
                "(<year>/<zone>/<file> beside the index)",
            )
        member = AlphaEarthSource(location, dequantise, parameter)
        if overlaps_grid(member, grid):
            files.append(member)
        else:
            member.close()
    if not files:
        raise LczError("extent", f"the files of {index} listed for the extent do not reach it")
    files.sort(key=lambda f: f.crs != grid[0])  # the city's zone pasted, others fill gaps
    mosaic = MosaicSource(files, f"alphaearth {year} {index}", grid=grid)
    mosaic.default_extent_crs = "EPSG:4326"
    return mosaic
