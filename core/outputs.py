"""Outputs written safely (temporary name, renamed when complete) and LCZ rasters written styled.

An LCZ GeoTIFF is tiled and compressed, with overviews once it is larger than a tile, and it
carries its palette three ways so it opens styled everywhere: the GeoTIFF colour table, the
category names (GDAL's .aux.xml, read by GDAL and QGIS) and a QGIS `.qml` sidecar with a paletted
renderer whose legend lists only the classes present.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from .errors import LczError
from .lcz import CLASS_BY_CODE, LCZ_CLASSES, NODATA, NUM_CLASSES

LCZ_PROFILE = {
    "driver": "GTiff",
    "dtype": "uint8",
    "count": 1,
    "nodata": NODATA,
    "compress": "deflate",
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
}


def overview_factors(width: int, height: int, tile: int = 256) -> list[int]:
    """Overview decimations (2, 4, ...) until the smallest fits in one tile: none for a small raster."""
    factors: list[int] = []
    while math.ceil(max(width, height) / (factors[-1] if factors else 1)) > tile:
        factors.append(2 ** (len(factors) + 1))
    return factors


def check_writable(path: str | os.PathLike, parameter: str = "output") -> Path:
    """Fail early, naming `parameter`, if `path` cannot be written."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise LczError(parameter, f"{path} is a folder; give a file name")
    if not folder.is_dir():
        raise LczError(parameter, f"folder {folder} does not exist; create it or choose another")
    if not os.access(folder, os.W_OK):
        raise LczError(parameter, f"folder {folder} is not writable; choose another output path")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, parameter: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = check_writable(path, parameter)
    # the suffix stays last so that drivers which look at it (GPKG, zarr) are content
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.partial-", suffix=path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}.aux.xml")):
            leftover.unlink(missing_ok=True)


def lcz_colormap() -> dict[int, tuple[int, int, int, int]]:
    """GeoTIFF colour table: 0 transparent, 1-17 the official colours."""
    table = {NODATA: (0, 0, 0, 0)}
    table.update({c.code: (*c.rgb, 255) for c in LCZ_CLASSES})
    return table


def qml_style(codes: list[int]) -> str:
    """A QGIS style (.qml) with a paletted renderer over the given LCZ codes."""
    entries = "\n".join(
        f'        <paletteEntry value="{c}" color="{CLASS_BY_CODE[c].color}" alpha="255" '
        f"label={quoteattr(CLASS_BY_CODE[c].label)}/>"
        for c in codes
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
      <colorramp type="randomcolors" name="[source]"/>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" colorizeStrength="100"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


SPLIT_COLORS = {
    "train": "31,120,180",
    "val": "255,127,0",
    "test": "227,26,28",
    "excluded": "160,160,160",
}


def split_style_qml(field: str = "split") -> str:
    """A QGIS style (.qml) colouring cells by their train/val/test split."""
    categories = "\n".join(
        f'      <category value="{name}" label="{name}" symbol="{i}" render="true"/>'
        for i, name in enumerate(SPLIT_COLORS)
    )
    symbols = "\n".join(
        f"""      <symbol type="fill" name="{i}" alpha="0.55" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" pass="0" locked="0">
          <prop k="color" v="{rgb},255"/>
          <prop k="outline_color" v="40,40,40,255"/>
          <prop k="outline_width" v="0.1"/>
          <prop k="style" v="solid"/>
        </layer>
      </symbol>"""
        for i, rgb in enumerate(SPLIT_COLORS.values())
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="Symbology">
  <renderer-v2 type="categorizedSymbol" attr="{field}" symbollevels="0" enableorderby="0" forceraster="0">
    <categories>
{categories}
    </categories>
    <symbols>
{symbols}
    </symbols>
  </renderer-v2>
</qgis>
"""


def category_names_aux_xml() -> str:
    """GDAL PAM metadata naming the categories 0-17 (0 = nodata)."""
    names = ["nodata"] + [c.label for c in LCZ_CLASSES]
    items = "\n".join(f"      <Category>{n}</Category>" for n in names)
    return (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
        f"{items}\n    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )


class LczRasterWriter:
    """Write an LCZ map window by window; on close add palette, names, counts and the .qml sidecar.

    Use as a context manager: nothing appears at `path` unless the block completes.
    """

    def __init__(self, path: str | os.PathLike, *, crs, transform, width: int, height: int) -> None:
        self.path = Path(path)
        self.profile = {
            **LCZ_PROFILE,
            "crs": crs,
            "transform": transform,
            "width": width,
            "height": height,
        }
        if width < 256 or height < 256:
            self.profile.update(tiled=False, blockxsize=None, blockysize=None)
            self.profile = {k: v for k, v in self.profile.items() if v is not None}
        self.counts = np.zeros(NUM_CLASSES + 1, dtype=np.int64)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> LczRasterWriter:
        import rasterio

        self._tmp = self._stack.enter_context(atomic_path(self.path))
        self._dataset = self._stack.enter_context(rasterio.open(self._tmp, "w", **self.profile))
        return self

    def write(self, codes: np.ndarray, window=None) -> None:
        """Write a block of 1-17 codes (0 = nodata) at `window` (None = whole raster)."""
        codes = np.asarray(codes, dtype=np.uint8)
        self.counts += np.bincount(codes.ravel(), minlength=NUM_CLASSES + 1)[: NUM_CLASSES + 1]
        self._dataset.write(codes, 1, window=window)

    @property
    def codes_present(self) -> list[int]:
        """The LCZ codes written so far."""
        return [c.code for c in LCZ_CLASSES if self.counts[c.code] > 0]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._dataset.write_colormap(1, lcz_colormap())
                self._dataset.set_band_description(1, "LCZ")
                self._dataset.update_tags(
                    1,
                    **{
                        f"LCZ_{CLASS_BY_CODE[c].short}": int(self.counts[c])
                        for c in self.codes_present
                    },
                )
                self._dataset.update_tags(LCZ_CODING="1-17 (Stewart and Oke 2012), 0 = nodata")
                factors = overview_factors(self._dataset.width, self._dataset.height)
                if factors:  # a large map opens fast in QGIS; each overview cell its majority class
                    from rasterio.enums import Resampling

                    self._dataset.build_overviews(factors, Resampling.mode)
                self._dataset.close()
                write_text_atomic(self.path.with_suffix(".qml"), qml_style(self.codes_present))
                write_text_atomic(Path(f"{self.path}.aux.xml"), category_names_aux_xml())
        finally:
            self._stack.__exit__(exc_type, exc, tb)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small text file through a temporary name."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
