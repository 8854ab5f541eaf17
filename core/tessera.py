"""TESSERA embeddings (Feng et al. 2025) in the layouts they are published in, read onto a city's
grid: 128 int8 values per 10 m pixel times a float32 per-pixel scale.

- A geotessera tile folder (local or a URL): `global_0.1_degree_representation/<year>/grid_X_Y/
  grid_X_Y.npy` + `grid_X_Y_scales.npy`, each on the UTM grid of its landmask
  `global_0.1_degree_tiff_all/grid_X_Y.tiff`; or geotessera's exported tiles
  `[<year>/grid_X_Y/]grid_X_Y_<year>.tiff` (float32, NaN = nodata).
- A zarr v3 store: one group per UTM zone, `utmNN` (arrays (time, band, y, x), CRS EPSG:326NN
  for every zone, southern northings stored negative) or `NNN`/`NNS` (arrays (time, y, x, band)
  in EPSG:326NN/327NN); `embeddings` int8, `scales` float32 (time, y, x), coordinate arrays
  `time`, `band`, `x`, `y`; group attributes `proj:code` and `spatial:transform`.

A scale is valid only when finite, > 0 and < 1.0: NaN is water, +inf land not yet embedded,
and huge finite scales occur in published files; pixels with an invalid scale are missing.
Versions and variants are different feature spaces (`tessera_feature_space`): read from the
store's root attributes or a `tessera_metadata.json` sidecar, or given by the user.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from .errors import LczError
from .extents import Bounds
from .rasters import (
    EmbeddingSource,
    GeoTiffSource,
    MosaicSource,
    city_grid,
    grid_lonlat,
    north_up,
    overlaps_grid,
)
from .remote import exists, is_url, join, parent, read_bytes, remote_error

TESSERA_EMBEDDINGS = "global_0.1_degree_representation"
TESSERA_LANDMASKS = "global_0.1_degree_tiff_all"
TESSERA_METADATA = "tessera_metadata.json"
MAX_VALID_SCALE = 1.0
TESSERA_VARIANTS = ("auto", "1.0", "1.1-dclimate", "1.1-cambridge", "2.0")
SOUTH_OFFSET = 10_000_000.0  # false northing of the southern UTM zones
ZONE_LAYOUTS = {  # group name pattern -> default dimension order of `embeddings`
    "utm": ("time", "band", "y", "x"),
    "hemisphere": ("time", "y", "x", "band"),
}


def valid_scales(scales: np.ndarray) -> np.ndarray:
    """True where a scale denotes an embedded pixel: finite, > 0 and < 1.0."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(scales) & (scales > 0) & (scales < MAX_VALID_SCALE)


def dequantise(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 values x scales (broadcast), NaN where the scale is invalid."""
    scales = np.asarray(scales, dtype=np.float32)
    masked = np.where(valid_scales(scales), scales, np.float32(np.nan))
    return np.multiply(values, masked, dtype=np.float32)  # one pass, no float copy of values


def band_names(count: int) -> list[str]:
    """TESSERA band names T000 ... (the same whichever layout they come from)."""
    return [f"T{i:03d}" for i in range(count)]


# ---------------------------------------------------------------- versions and variants


def tessera_feature_space(version: str, variant: str | None = None) -> str:
    """The feature-space name of a TESSERA version and variant, e.g. 'tessera 1.1 dclimate'.

    `version` may carry the variant ('1.1-dclimate', 'v1.1-cam', 'v2-2B-L~beta1'); the 1.0
    variants hold the same embeddings, 1.1 has two (dclimate, the global run, and cambridge)."""
    text = str(version).strip()
    text = text[len("tessera ") :] if text.lower().startswith("tessera ") else text
    match = re.match(r"^v?(\d+)(?:\.(\d+))?(?:[- ](.+))?$", text, re.IGNORECASE)
    if not match:
        raise LczError(
            "variant",
            f"{version!r} is not a TESSERA version; use one of {', '.join(TESSERA_VARIANTS[1:])}",
        )
    number = f"{match[1]}.{match[2] or 0}"
    name = (variant or match[3] or "").strip()
    name = {"cam": "cambridge", "vultr": "", "dclimate": "dclimate", "cambridge": "cambridge"}.get(
        name.lower(), name
    )
    if number == "1.0":
        name = ""
    if number == "1.1" and not name:
        raise LczError(
            "variant",
            "TESSERA 1.1 has two variants with different feature spaces: give "
            "1.1-dclimate (the global run) or 1.1-cambridge",
        )
    return f"tessera {number}" + (f" {name}" if name else "")


def _described_feature_space(description: dict[str, Any]) -> str | None:
    """The feature space a metadata dict (sidecar or attributes) names, if any."""
    version = description.get("dataset_version") or description.get("tessera:dataset_version")
    variant = description.get("dataset_variant") or description.get("tessera:dataset_variant")
    version = version or description.get("dataset_path")
    version = version or description.get("TESSERA_DATASET_VERSION")
    variant = variant or description.get("TESSERA_DATASET_VARIANT")
    return tessera_feature_space(str(version), variant) if version else None


def _sidecar_feature_space(*folders: str | os.PathLike, parameter: str) -> str | None:
    """The feature space of the first `tessera_metadata.json` found in `folders`."""
    for folder in folders:
        location = join(folder, TESSERA_METADATA)
        if is_url(location):
            if not exists(str(location), parameter):
                continue
            text = read_bytes(str(location), parameter).decode("utf-8")
        elif Path(location).is_file():
            text = Path(location).read_text(encoding="utf-8")
        else:
            continue
        try:
            return _described_feature_space(json.loads(text))
        except json.JSONDecodeError as error:
            raise LczError(parameter, f"{location} is not valid JSON: {error}") from None
    return None


def _feature_space(found: str | None, variant: str | None, where: str) -> str:
    """The feature space of a source: what it says, checked against what the user gives."""
    given = None if variant in (None, "", "auto") else tessera_feature_space(variant)
    if found and given and found != given:
        raise LczError(
            "variant",
            f"{where} holds {found} embeddings, not {given}; leave variant on auto or fix it",
        )
    if not (found or given):
        raise LczError(
            "variant",
            f"{where} does not say which TESSERA version and variant it holds (no "
            f"{TESSERA_METADATA}, no dataset attributes); give variant, e.g. 1.1-dclimate",
        )
    return found or given  # type: ignore[return-value]


# ---------------------------------------------------------------- tiles


class TesseraTile(EmbeddingSource):
    """One geotessera tile: int8 (H, W, 128) x scales, on the grid of its landmask GeoTIFF."""

    def __init__(
        self,
        npy: str | Path,
        landmask: str | Path,
        feature_space: str,
        parameter: str = "embeddings",
    ) -> None:
        import rasterio

        from .remote import gdal_path

        super().__init__()
        stem = Path(str(npy)).stem
        scales = join(parent(npy), f"{stem}_scales.npy")
        self._values, self._scales = _open_npy(npy, parameter), _open_npy(scales, parameter)
        try:
            with rasterio.open(gdal_path(landmask)) as mask:
                self.crs = mask.crs
                if mask.transform.e > 0:
                    raise LczError(
                        parameter, f"{landmask}: bottom-up TESSERA landmasks are unexpected"
                    )
                self.transform = north_up(mask.transform, mask.height, parameter)
                shape = (mask.height, mask.width)
        except rasterio.errors.RasterioIOError as error:
            raise LczError(parameter, f"cannot read the landmask {landmask}: {error}") from None
        if tuple(self._values.shape[:2]) != shape:
            raise LczError(parameter, f"{npy} is {self._values.shape[:2]}, its landmask {shape}")
        self.height, self.width, self.count = self._values.shape
        self.band_names = band_names(self.count)
        self.dtype = str(self._values.dtype)
        self.name = f"{feature_space} {npy}"
        self.feature_space = feature_space

    def _read(self, window: Window) -> np.ndarray:
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        scales = np.asarray(self._scales[rows, cols], dtype=np.float32)
        data = dequantise(
            np.asarray(self._values[rows, cols]), scales if scales.ndim == 3 else scales[..., None]
        )
        return np.ascontiguousarray(np.moveaxis(data, 2, 0))


def _open_npy(location: str | Path, parameter: str):
    """A .npy array read lazily: memory-mapped from disk, by byte range from a URL."""
    from .remote import RemoteNpy

    if is_url(location):
        return RemoteNpy(str(location), parameter)
    try:
        return np.load(location, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise LczError(parameter, f"cannot read {location}: {error}") from None


class TesseraTiff(GeoTiffSource):
    """One exported TESSERA tile GeoTIFF (float32, NaN = nodata), band names as for .npy tiles."""

    def __init__(self, path: str | Path, feature_space: str, parameter: str = "embeddings") -> None:
        super().__init__(path, parameter)
        self.band_names = band_names(self.count)
        self.feature_space = feature_space
        self.name = f"{feature_space} {path}"

    def tags(self) -> dict[str, str]:
        """The file's dataset tags."""
        return self._dataset.tags()


def tessera_tile_names(bounds_lonlat: Bounds) -> list[str]:
    """Names (grid_<lon>_<lat>, centres on 0.05 + k * 0.1 degrees) of tiles meeting a lon/lat box."""
    west, south, east, north = bounds_lonlat
    names = []
    for j in range(math.floor(south * 10), math.ceil(north * 10)):
        for i in range(math.floor(west * 10), math.ceil(east * 10)):
            names.append(f"grid_{(i + 0.5) / 10:.2f}_{(j + 0.5) / 10:.2f}")
    return names


def is_tessera_folder(path: Path) -> bool:
    """True for a local geotessera tile folder (either layout)."""
    return (
        (path / TESSERA_EMBEDDINGS).is_dir()
        or (path / TESSERA_METADATA).is_file()
        or next(path.glob("grid_*_*.tif*"), None) is not None
        or next(path.glob("*/grid_*/grid_*_*.tif*"), None) is not None
    )


def _file_exists(location: str | Path, parameter: str) -> bool:
    return exists(str(location), parameter) if is_url(location) else Path(location).is_file()


def _years_in_folder(root: Path) -> list[int]:
    """Years a local tile folder holds (from its folder and file names)."""
    years = set()
    if (root / TESSERA_EMBEDDINGS).is_dir():
        years |= {int(p.name) for p in (root / TESSERA_EMBEDDINGS).iterdir() if p.name.isdigit()}
    for tif in [*root.glob("grid_*_*.tif*"), *root.glob("*/grid_*/grid_*_*.tif*")]:
        match = re.search(r"_(\d{4})\.tiff?$", tif.name)
        if match:
            years.add(int(match[1]))
    return sorted(years)


def tessera_tiles_source(
    root: str | os.PathLike,
    *,
    year: int | None,
    extent: Bounds,
    extent_crs: str = "EPSG:4326",
    crs: str | None = None,
    variant: str = "auto",
    parameter: str = "embeddings",
) -> MosaicSource:
    """The geotessera tiles (either layout, local or at a URL) covering `extent`, read onto the
    city grid (see `rasters.city_grid`) for `year`."""
    if year is None:
        raise LczError("year", "give the year of the TESSERA embeddings to read, e.g. 2024")
    grid = city_grid(extent, extent_crs, crs)
    lonlat = grid_lonlat(grid)  # the margin too
    found = _sidecar_feature_space(root, parameter=parameter)
    located = []
    for name in tessera_tile_names(lonlat):
        npy = join(root, TESSERA_EMBEDDINGS, str(year), name, f"{name}.npy")
        if _file_exists(npy, parameter):
            located.append((npy, join(root, TESSERA_LANDMASKS, f"{name}.tiff")))
            continue
        for tif in (
            join(root, str(year), name, f"{name}_{year}.tiff"),
            join(root, f"{name}_{year}.tiff"),
        ):
            if _file_exists(tif, parameter):
                located.append((tif, None))
                break
    if not located:
        years = [] if is_url(root) else _years_in_folder(Path(root))
        if years and year not in years:
            raise LczError("year", f"{year} is not in {root}; it holds {years}")
        box = tuple(round(v, 4) for v in lonlat)
        raise LczError("extent", f"no TESSERA tiles of {year} under {root} cover lon/lat {box}")
    tiles: list[EmbeddingSource] = []
    for location, landmask in located:
        if landmask is not None:
            space = _feature_space(found, variant, str(root))
            tiles.append(TesseraTile(location, landmask, space, parameter))
        else:
            tiff = TesseraTiff(location, "", parameter)
            space = _feature_space(
                found or _described_feature_space(tiff.tags()), variant, str(location)
            )
            tiff.feature_space = space
            tiles.append(tiff)
    spaces = {t.feature_space for t in tiles}
    if len(spaces) > 1:
        raise LczError(parameter, f"{root} mixes TESSERA feature spaces {sorted(spaces)}")
    mosaic = MosaicSource(_aligned_first(tiles, grid[0]), f"tessera {year} {root}", grid=grid)
    mosaic.default_extent_crs = "EPSG:4326"
    return mosaic


def _aligned_first(members: list[EmbeddingSource], crs: CRS) -> list[EmbeddingSource]:
    """Members in the city's CRS first, so that they are pasted and others only fill gaps."""
    return sorted(members, key=lambda m: m.crs != crs)


# ---------------------------------------------------------------- zarr store


class TesseraZone(EmbeddingSource):
    """One UTM zone group of a TESSERA zarr store, one year, dequantised and masked."""

    whole_vector_nan = True  # scales are per pixel; zero vectors are masked from the int8

    def __init__(
        self, group, name: str, year: int, feature_space: str, city_crs: CRS, parameter: str
    ) -> None:
        super().__init__()
        self.name, self.feature_space, self.parameter = name, feature_space, parameter
        for required in ("embeddings", "scales"):
            if required not in group:
                raise LczError(
                    parameter, f"{name} has no '{required}' array; is it a TESSERA store?"
                )
        self._emb, self._scales = group["embeddings"], group["scales"]
        layout = "utm" if name.rstrip("/").rsplit("/", 1)[-1].startswith("utm") else "hemisphere"
        dims = tuple(getattr(self._emb.metadata, "dimension_names", None) or ZONE_LAYOUTS[layout])
        if sorted(dims) != ["band", "time", "x", "y"]:
            raise LczError(
                parameter, f"{name}/embeddings has dimensions {dims}, not time, band, y, x"
            )
        self._dims = dims
        self._scale_dims = tuple(
            getattr(self._scales.metadata, "dimension_names", None) or ("time", "y", "x")
        )
        shape = dict(zip(dims, self._emb.shape, strict=True))
        self.count, self.height, self.width = shape["band"], shape["y"], shape["x"]
        self.band_names, self.dtype = band_names(self.count), str(self._emb.dtype)
        years = zone_years(group, name, parameter)
        if year not in years:
            raise LczError("year", f"{year} is not in {name}; it holds {years}")
        self._t = years.index(year)
        attrs = dict(group.attrs)
        code = attrs.get("proj:code") or (
            f"EPSG:{attrs['proj:epsg']}" if "proj:epsg" in attrs else None
        )
        if not code:
            raise LczError(parameter, f"{name} has no proj:code attribute (its CRS)")
        stored_crs = CRS.from_user_input(code)
        transform = _zone_transform(group, attrs, name, parameter)
        self.crs, self.transform = stored_crs, transform
        epsg = stored_crs.to_epsg() or 0
        # southern northings stored negative in EPSG:326NN are EPSG:327NN shifted by 10,000 km
        if 32601 <= epsg <= 32660 and city_crs.to_epsg() == epsg + 100:
            self.crs = city_crs
            self.transform = Affine(
                transform.a, 0, transform.c, 0, transform.e, transform.f + SOUTH_OFFSET
            )

    def read_quantised(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(int8 (bands, rows, cols), float32 scales (rows, cols)) of a window inside the zone;
        scales NaN where invalid or the vector is all zero."""
        rows = slice(window.row_off, window.row_off + window.height)
        cols = slice(window.col_off, window.col_off + window.width)
        where = {"time": self._t, "band": slice(None), "y": rows, "x": cols}
        try:
            values = self._emb[tuple(where[d] for d in self._dims)]
            scales = self._scales[tuple(where[d] for d in self._scale_dims)]
        except LczError:
            raise
        except Exception as error:  # a remote store that fails mid-run
            raise remote_error(self.name, error, self.parameter) from None
        kept = [d for d in self._dims if d != "time"]
        values = np.moveaxis(values, [kept.index(d) for d in ("band", "y", "x")], [0, 1, 2])
        kept_scales = [d for d in self._scale_dims if d != "time"]
        scales = np.transpose(scales, [kept_scales.index(d) for d in ("y", "x")])
        zero = (values.max(axis=0) == 0) & (values.min(axis=0) == 0)  # on int8: cheap
        self.zero_pixels += int(zero.sum())
        valid = valid_scales(scales) & ~zero
        return values, np.where(valid, scales, np.float32(np.nan)).astype(np.float32)

    def _read(self, window: Window) -> np.ndarray:
        values, scales = self.read_quantised(window)
        return np.multiply(values, scales[None], dtype=np.float32)


def zone_years(group, name: str, parameter: str) -> list[int]:
    """The years of a zone group's `time` coordinate (integers or datetime64)."""
    if "time" not in group:
        raise LczError(parameter, f"{name} has no 'time' coordinate array")
    times = np.asarray(group["time"][:])
    if np.issubdtype(times.dtype, np.datetime64):
        return [int(t) + 1970 for t in times.astype("datetime64[Y]").astype(np.int64)]
    return [int(t) for t in times]


def _zone_transform(group, attrs: dict, name: str, parameter: str) -> Affine:
    """The north-up transform of a zone group: `spatial:transform`, else its x and y centres."""
    if "spatial:transform" in attrs:
        a, b, c, d, e, f = (float(v) for v in attrs["spatial:transform"][:6])
        if b or d or e >= 0:
            raise LczError(
                parameter, f"{name}: spatial:transform {attrs['spatial:transform']} is not north-up"
            )
        return Affine(a, b, c, d, e, f)
    if "x" in group and "y" in group:
        x, y = group["x"][:2], group["y"][:2]
        dx, dy = float(x[1] - x[0]), float(y[1] - y[0])
        return Affine(dx, 0, float(x[0]) - dx / 2, 0, dy, float(y[0]) - dy / 2)
    raise LczError(parameter, f"{name} has neither spatial:transform nor x and y coordinates")


def _open_group(location: str | os.PathLike, parameter: str):
    """The root group of a local or remote zarr store."""
    import zarr

    from .remote import zarr_store

    try:
        if is_url(location):
            return zarr.open_group(store=zarr_store(str(location)), mode="r")
        return zarr.open_group(str(location), mode="r")
    except LczError:
        raise
    except (
        FileNotFoundError,
        zarr.errors.GroupNotFoundError,
        zarr.errors.NodeTypeValidationError,
    ) as error:
        raise LczError(
            parameter, f"{location} is not a zarr store with a root group: {error}"
        ) from None
    except Exception as error:
        raise remote_error(str(location), error, parameter) from None


def is_tessera_store(path: Path) -> bool:
    """True for a local zarr store with TESSERA zone groups."""
    import zarr

    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception:  # not a group: a plain array store
        return False
    return any(re.fullmatch(r"utm\d\d|\d\d[NS]", name) for name in root.group_keys())


def _zone_candidates(lonlat: Bounds) -> list[str]:
    """Zone group names that may hold the box, the zone of its centre first."""
    west, south, east, north = lonlat

    def zone(lon: float) -> int:
        return max(1, min(60, math.floor((lon + 180) / 6) + 1))

    # zone grids reach a little past their 6-degree band: look a tile beyond
    zones = list(range(zone(west - 0.1), zone(east + 0.1) + 1))
    centre = zone((west + east) / 2)
    zones.sort(key=lambda z: (z != centre, z))
    hemispheres = [h for h, inside in (("N", north >= 0), ("S", south < 0)) if inside]
    names = []
    for z in zones:
        names.append(f"utm{z:02d}")
        names += [f"{z:02d}{h}" for h in hemispheres]
    return names


def tessera_store_source(
    location: str | os.PathLike,
    *,
    year: int | None,
    extent: Bounds,
    extent_crs: str = "EPSG:4326",
    crs: str | None = None,
    variant: str = "auto",
    parameter: str = "embeddings",
) -> MosaicSource:
    """The zone groups of a TESSERA zarr store (local or at a URL) covering `extent`, one year,
    read onto the city grid (see `rasters.city_grid`); only the chunks read are fetched."""
    root = _open_group(location, parameter)
    found = _described_feature_space(dict(root.attrs)) or _sidecar_feature_space(
        location, parent(location), parameter=parameter
    )
    space = _feature_space(found, variant, str(location))
    grid = city_grid(extent, extent_crs, crs)
    lonlat = grid_lonlat(grid)
    groups = []
    for name in _zone_candidates(lonlat):
        try:
            present = name in root
        except Exception as error:
            raise remote_error(str(join(location, name)), error, parameter) from None
        if present:
            groups.append((name, root[name]))
    if not groups:
        box = tuple(round(v, 4) for v in lonlat)
        raise LczError("extent", f"{location} has no UTM zone group covering lon/lat {box}")
    years = sorted(
        {y for name, g in groups for y in zone_years(g, f"{location}/{name}", parameter)}
    )
    if year is None:
        if len(years) != 1:
            raise LczError("year", f"{location} holds the years {years}; give one")
        year = years[0]
    if year not in years:
        raise LczError("year", f"{year} is not in {location}; it holds {years}")
    zones = [
        TesseraZone(g, f"{location}/{name}", year, space, grid[0], parameter)
        for name, g in groups
        if year in zone_years(g, name, parameter)
    ]
    zones = [z for z in zones if overlaps_grid(z, grid)]
    if not zones:
        box = tuple(round(v, 4) for v in lonlat)
        raise LczError("extent", f"lon/lat {box} lies outside the zones of {location}")
    mosaic = MosaicSource(_aligned_first(zones, grid[0]), f"{space} {year} {location}", grid=grid)
    mosaic.default_extent_crs = "EPSG:4326"
    return mosaic
