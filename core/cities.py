"""Cities: named places with an extent (or boundary), a year, embedding and label sources.

A catalogue is a TOML file; paths are relative to it:

    [cities.berlin]
    year = 2024
    extent = [13.30, 52.45, 13.45, 52.55]      # xmin, ymin, xmax, ymax
    extent_crs = "EPSG:4326"                    # default EPSG:4326
    # boundary = "berlin.gpkg"                  # or a polygon layer (any vector format)

    [cities.berlin.embeddings.s2]
    kind = "geotiff"                            # any kind of rasters.SOURCE_KINDS
    path = "Berlin_S2.tif"                      # or an https:// or s3:// URL
    # variant = "1.1-dclimate"                  # TESSERA: when the data does not say

    [cities.berlin.labels.wudapt]
    kind = "polygons"                           # polygons | kml | so2sat | raster
    path = "Berlin_labels.shp"
    class_field = "Name"

Extents given in degrees are worked on in the city's local UTM zone (`utm_crs_for`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterio.crs import CRS

from .errors import LczError
from .rasters import Bounds, EmbeddingSource, open_source
from .remote import is_url


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS84 UTM zone CRS ('EPSG:326NN' north, 'EPSG:327NN' south) holding lon/lat."""
    if not (-180 <= lon <= 180 and -80 <= lat <= 84):
        raise LczError("extent", f"lon {lon}, lat {lat} is outside the UTM zones (lat -80 to 84)")
    zone = min(int((lon + 180) // 6) + 1, 60)
    if 56 <= lat < 64 and 3 <= lon < 12:  # southern Norway
        zone = 32
    if 72 <= lat < 84 and 0 <= lon < 42:  # Svalbard
        zone = 31 if lon < 9 else 33 if lon < 21 else 35 if lon < 33 else 37
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def reproject_extent(extent: Bounds, src_crs: str | CRS, dst_crs: str | CRS) -> Bounds:
    """The box in `dst_crs` covering `extent` given in `src_crs` (edges densified)."""
    from rasterio.warp import transform_bounds

    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    if src == dst:
        return tuple(float(v) for v in extent)  # type: ignore[return-value]
    return tuple(transform_bounds(src, dst, *extent, densify_pts=21))  # type: ignore[return-value]


def extent_to_utm(extent: Bounds, extent_crs: str | CRS) -> tuple[Bounds, str]:
    """Reproject an extent to the UTM zone of its centre: (box in UTM, 'EPSG:...')."""
    lonlat = reproject_extent(extent, extent_crs, "EPSG:4326")
    crs = utm_crs_for((lonlat[0] + lonlat[2]) / 2, (lonlat[1] + lonlat[3]) / 2)
    return reproject_extent(extent, extent_crs, crs), crs


@dataclass
class City:
    """One catalogue entry; `embeddings` and `labels` map a source name to its settings."""

    name: str
    year: int | None = None
    extent: Bounds | None = None
    extent_crs: str = "EPSG:4326"
    boundary: Path | None = None
    embeddings: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)

    def extent_in(self, crs: str | CRS) -> Bounds:
        """The city's extent (or its boundary's bounds) as a box in `crs`."""
        if self.extent is not None:
            return reproject_extent(self.extent, self.extent_crs, crs)
        if self.boundary is not None:
            import geopandas as gpd

            frame = gpd.read_file(self.boundary)
            if frame.crs is None:
                raise LczError("cities", f"{self.boundary} has no CRS; city {self.name}")
            return tuple(frame.to_crs(CRS.from_user_input(crs).to_wkt()).total_bounds)  # type: ignore[return-value]
        raise LczError("cities", f"city {self.name} has neither extent nor boundary")

    def open_embeddings(self, name: str | None = None) -> EmbeddingSource:
        """Open the embedding source called `name` (the only one when None)."""
        settings = _pick(self.embeddings, name, f"city {self.name} embeddings")
        options = {k: v for k, v in settings.items() if k not in ("kind", "path")}
        if "version" in options:  # the name older catalogues give the TESSERA variant
            options["variant"] = options.pop("version")
        # the global products (TESSERA, AlphaEarth index) read the city's extent and year
        options.setdefault("year", self.year)
        if self.extent is not None or self.boundary is not None:
            options.update(extent=self.extent_in("EPSG:4326"), extent_crs="EPSG:4326")
        return open_source(settings["path"], settings.get("kind", "auto"), "cities", **options)

    def label_settings(self, name: str | None = None) -> dict[str, Any]:
        """The settings of the label source called `name` (the only one when None)."""
        return _pick(self.labels, name, f"city {self.name} labels")


def _pick(table: dict[str, dict[str, Any]], name: str | None, what: str) -> dict[str, Any]:
    if name is None:
        if len(table) != 1:
            raise LczError("cities", f"{what}: name one of {sorted(table)}")
        return next(iter(table.values()))
    if name not in table:
        raise LczError("cities", f"{what}: no source named {name!r}; have {sorted(table)}")
    return table[name]


def load_catalogue(path: str | os.PathLike) -> dict[str, City]:
    """Read a TOML city catalogue: {name: City}, paths resolved against the file's folder."""
    import tomllib  # Python 3.11+; the rest of the core runs on 3.10

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise LczError("cities", f"cannot read catalogue {path}: {error}") from None
    base = path.parent
    cities = {}
    for name, entry in data.get("cities", {}).items():
        extent = entry.get("extent")
        if extent is not None and (
            len(extent) != 4 or extent[0] >= extent[2] or extent[1] >= extent[3]
        ):
            raise LczError("cities", f"city {name}: extent must be [xmin, ymin, xmax, ymax]")

        def resolve(sources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            return {
                k: {**v, "path": v["path"] if is_url(v["path"]) else str(base / v["path"])}
                for k, v in sources.items()
            }

        cities[name] = City(
            name=name,
            year=entry.get("year"),
            extent=tuple(float(v) for v in extent) if extent else None,
            extent_crs=entry.get("extent_crs", "EPSG:4326"),
            boundary=base / entry["boundary"] if "boundary" in entry else None,
            embeddings=resolve(entry.get("embeddings", {})),
            labels=resolve(entry.get("labels", {})),
        )
    if not cities:
        raise LczError("cities", f"{path} names no cities; add [cities.<name>] tables")
    return cities
