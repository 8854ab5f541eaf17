"""Cities: named places with an extent (or boundary), a year, embedding and label sources.

A catalogue is a TOML file; paths are relative to it:

    [cities.berlin]
    year = 2024
    extent = [13.30, 52.45, 13.45, 52.55]      # xmin, ymin, xmax, ymax
    extent_crs = "EPSG:4326"                    # default EPSG:4326
    # boundary = "berlin.gpkg"                  # or a polygon layer (any vector format)

    [cities.berlin.embeddings.s2]
    kind = "geotiff"                            # any kind of choices.SOURCE_KINDS
    path = "Berlin_S2.tif"                      # or an https:// or s3:// URL
    # variant = "1.1-dclimate"                  # TESSERA: when the data does not say

    [cities.berlin.labels.wudapt]
    kind = "polygons"                           # polygons | kml | so2sat | raster
    path = "Berlin_labels.shp"
    class_field = "Name"
    # layer = "lcz", epsg = 32633, coding = "wudapt", mapping = "1:2,101:A" (or {1 = 2, 101 = "A"})

Extents given in degrees are worked on in the city's local UTM zone (`utm_crs_for`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterio.crs import CRS

from . import checks
from .choices import LABEL_KINDS, SOURCE_KINDS
from .errors import LczError
from .extents import Bounds, reproject_extent
from .progress import Progress
from .rasters import EmbeddingSource, open_source
from .remote import is_url


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

            try:
                frame = gpd.read_file(self.boundary)
            except Exception as error:  # pyogrio raises DataSourceError and friends
                raise LczError(
                    "cities", f"city {self.name}: cannot read boundary {self.boundary}: {error}"
                ) from None
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

    def open_labels(self, name: str | None = None, progress: Progress | None = None) -> Any:
        """Open the label source called `name` with all its settings (an unknown one is refused)."""
        from .labels import open_labels

        settings = dict(self.label_settings(name))
        unknown = sorted(set(settings) - LABEL_SETTINGS)
        if unknown:
            raise LczError(
                "cities",
                f"city {self.name} labels: unknown settings {', '.join(unknown)}; "
                f"use {', '.join(sorted(LABEL_SETTINGS))}",
            )
        path, kind = settings.pop("path"), settings.pop("kind", "auto")
        return open_labels(path, kind, progress=progress, **settings)


# keys of a [cities.<name>.labels.<source>] table: open_labels' keywords
LABEL_SETTINGS = {
    "path",
    "kind",
    "class_field",
    "coding",
    "mapping",
    "layer",
    "epsg",
    "label_band",
    "label_nodata",
}


def _pick(table: dict[str, dict[str, Any]], name: str | None, what: str) -> dict[str, Any]:
    if name is None:
        if len(table) != 1:
            raise LczError("cities", f"{what}: name one of {sorted(table)}")
        return next(iter(table.values()))
    if name not in table:
        raise LczError("cities", f"{what}: no source named {name!r}; have {sorted(table)}")
    return table[name]


EMBEDDING_KEYS = ("kind", "path", "array", "dequantise", "version")
LABEL_KEYS = tuple(sorted(LABEL_SETTINGS))
CITY_KEYS = ("year", "extent", "extent_crs", "boundary", "embeddings", "labels")


def _sources(
    entry: dict[str, Any], key: str, where: str, keys: tuple[str, ...], kinds: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """The checked [cities.<name>.<key>.<source>] tables of a catalogue entry."""
    sources = checks.table(entry.get(key, {}), "cities", f"{where}.{key}")
    for name, settings in sources.items():
        at = f"{where}.{key}.{name}"
        checks.known_keys(checks.table(settings, "cities", at), "cities", at, keys, ("path",))
        checks.text(settings["path"], "cities", f"{at}.path")
        checks.text(settings.get("kind", "auto"), "cities", f"{at}.kind", kinds)
        for option in set(settings) - {"kind", "path"}:
            value, what = settings[option], f"{at}.{option}"
            if option == "epsg":
                checks.integer(value, "cities", what, 1024, 32767)
            elif option == "label_band":
                checks.integer(value, "cities", what, 1, checks.MAX_BANDS)
            elif option == "label_nodata":
                checks.number(value, "cities", what)
            elif option == "mapping" and isinstance(value, dict):
                checks.table(value, "cities", what)  # {"42": "G", ...}
            else:
                checks.text(value, "cities", what)
    return sources


def _check_extent(extent: Any, extent_crs: Any, where: str) -> Bounds:
    """An extent of four finite numbers in a known CRS that PROJ can place on the Earth."""
    box = checks.extent(extent, "cities", f"{where}.extent")
    checks.text(extent_crs, "cities", f"{where}.extent_crs")
    unplaceable = f"{where}.extent {box} cannot be placed on the Earth from {extent_crs}"
    try:
        lonlat = reproject_extent(box, extent_crs, "EPSG:4326")
    except LczError as error:
        raise LczError("cities", f"{where}.{error.parameter}: {error.message}") from None
    except Exception as error:  # PROJ failing on the numbers
        raise LczError("cities", f"{unplaceable} ({error})") from None
    if not all(math.isfinite(v) for v in lonlat):
        raise LczError("cities", f"{unplaceable}; give xmin, ymin, xmax, ymax in extent_crs")
    return box


def load_catalogue(path: str | os.PathLike) -> dict[str, City]:
    """Read a TOML city catalogue: {name: City}, paths resolved against the file's folder.

    Every key is checked (type, range, known name) before anything is opened or sized by it."""
    import tomllib  # Python 3.11+; the rest of the core runs on 3.10

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise LczError("cities", f"cannot read catalogue {path}: {error}") from None
    checks.known_keys(data, "cities", str(path), ("cities",))
    return parse_catalogue(data.get("cities", {}), path.parent, str(path))


def parse_catalogue(tables: Any, base: Path, origin: str) -> dict[str, City]:
    """The checked cities of a catalogue's [cities] tables, paths resolved against `base`;
    `origin` names the file in messages."""
    cities = {}
    for name, entry in checks.table(tables, "cities", f"{origin}: cities").items():
        where = f"{origin}: cities.{name}"
        checks.known_keys(checks.table(entry, "cities", where), "cities", where, CITY_KEYS)
        if "year" in entry:
            checks.integer(entry["year"], "cities", f"{where}.year", 1900, 2100)
        if "boundary" in entry:
            checks.text(entry["boundary"], "cities", f"{where}.boundary")
        extent, extent_crs = entry.get("extent"), entry.get("extent_crs", "EPSG:4326")

        def resolve(sources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            return {
                k: {**v, "path": v["path"] if is_url(v["path"]) else str(base / v["path"])}
                for k, v in sources.items()
            }

        cities[name] = City(
            name=name,
            year=entry.get("year"),
            extent=None if extent is None else _check_extent(extent, extent_crs, where),
            extent_crs=extent_crs,
            boundary=base / entry["boundary"] if "boundary" in entry else None,
            embeddings=resolve(_sources(entry, "embeddings", where, EMBEDDING_KEYS, SOURCE_KINDS)),
            labels=resolve(_sources(entry, "labels", where, LABEL_KEYS, LABEL_KINDS)),
        )
    if not cities:
        raise LczError("cities", f"{origin} names no cities; add [cities.<name>] tables")
    return cities


def pick_cities(catalogue: dict[str, City], names: Sequence[str] | None = None) -> list[City]:
    """The catalogue's cities called `names` (all of them when None or empty)."""
    names = [n.strip() for n in names or () if n.strip()] or list(catalogue)
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise LczError(
            "city",
            f"the catalogue has no city {', '.join(map(repr, unknown))}; it has "
            f"{', '.join(catalogue)}",
        )
    return [catalogue[n] for n in names]
