"""Outputs written safely (temporary name, renamed when complete) and LCZ rasters written styled.

An LCZ GeoTIFF is tiled and compressed, with overviews once it is larger than a tile, and it
carries its palette three ways so it opens styled everywhere: the GeoTIFF colour table, the
category names (GDAL's .aux.xml, read by GDAL and QGIS) and a QGIS `.qml` sidecar with a paletted
renderer whose legend lists only the classes present.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import re
import secrets
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from .errors import LczError
from .lcz import CLASS_BY_CODE, LCZ_CLASSES, NODATA, NUM_CLASSES
from .spec import TEMPORARY_FOLDER_ENV

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


def temporary_folder_holding(path: str | os.PathLike) -> Path | None:
    """The application's temporary folder (TEMPORARY_FOLDER_ENV) when it holds `path`, else None."""
    folder = os.environ.get(TEMPORARY_FOLDER_ENV)
    if not folder:
        return None
    folder = Path(folder).resolve()
    return folder if Path(path).resolve().is_relative_to(folder) else None


# A partial output is named `.<name>.partial-<pid>-<token><suffix>`: the pid tells a later run
# whether its maker is still writing it or died (a hard kill leaves it behind).
PARTIAL = re.compile(r"\.(?P<stem>.+)\.partial-(?P<pid>\d+)-[0-9a-f]+(?P<rest>.*)")


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` is running (on Windows, without sending it anything)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: no such process
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove the partial files and folders of output `path` whose maker process is gone."""
    path = Path(path)
    removed = []
    for entry in path.parent.glob(f".{glob.escape(path.stem)}.partial-*"):
        match = PARTIAL.fullmatch(entry.name)
        if (
            match is None
            or match["stem"] != path.stem
            or not match["rest"].startswith(path.suffix)
            or _pid_alive(int(match["pid"]))
        ):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:  # not ours to remove after all (permissions): leave it
            continue
        removed.append(entry)
    return removed


def _partial(path: Path, folder: bool, parameter: str) -> Path:
    """Create an empty partial file or folder beside `path`, with the user's umask."""
    while True:
        tmp = path.with_name(
            f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"
        )
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        except OSError as error:
            raise LczError(parameter, f"cannot write beside {path}: {error}") from None
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, parameter: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = check_writable(path, parameter)
    remove_stale_partials(path)
    # the suffix stays last so that drivers which look at it (GPKG, zarr) are content
    tmp = _partial(path, False, parameter)
    created = tmp.stat().st_mode & 0o777  # what the user's umask gives a new file
    try:
        yield tmp
        if tmp.stat().st_mode & 0o777 != created:  # a writer that made its own file (0600)
            os.chmod(tmp, created)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}.aux.xml")):
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def scratch_folder(path: str | os.PathLike, parameter: str = "output") -> Iterator[Path]:
    """Yield a partial folder beside output `path` for the pieces a run assembles it from; it is
    removed when the block ends (or, after a hard kill, by a later run's stale-partial sweep)."""
    path = Path(path)
    remove_stale_partials(path)
    tmp = _partial(path, True, parameter)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(
    folder: str | os.PathLike, names: Sequence[str], parameter: str = "output"
) -> Iterator[Path]:
    """Yield a temporary folder beside `folder` to write the entries `names` into.

    Only if the block succeeds do they move into `folder` (created if absent), replacing the
    entries of those names there and nothing else: other files in `folder` stay. Old entries
    are moved out before the new ones move in, in the order of `names`, so a reader never sees
    a new last entry (e.g. a manifest) beside old others.
    """
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise LczError(parameter, f"folder {folder.parent} does not exist; create it first")
    if folder.exists() and not folder.is_dir():
        raise LczError(parameter, f"{folder} is a file; give a folder name")
    remove_stale_partials(folder)
    tmp = _partial(folder, True, parameter)
    try:
        yield tmp
        if not folder.exists():
            os.replace(tmp, folder)
            return
        written = [name for name in names if os.path.lexists(tmp / name)]
        for name in written:  # the old entries go into the partial folder, removed below
            if os.path.lexists(folder / name):
                os.replace(folder / name, tmp / f"old-{name}")
        for name in written:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def lcz_colormap() -> dict[int, tuple[int, int, int, int]]:
    """GeoTIFF colour table: 0 transparent, 1-17 the official colours."""
    table = {NODATA: (0, 0, 0, 0)}
    table.update({c.code: (*c.rgb, 255) for c in LCZ_CLASSES})
    return table


def qml_style(codes: list[int]) -> str:
    """A QGIS style (.qml) with a paletted renderer over the given LCZ codes."""
    return paletted_qml([(c, CLASS_BY_CODE[c].color, CLASS_BY_CODE[c].label) for c in codes])


def raster_style_qml(renderer: str, inner: str) -> str:
    """A QGIS raster style (.qml): the `<rasterrenderer ...>` opening tag `renderer` holding
    `inner`, in the pipe QGIS writes around every raster renderer."""
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="AllStyleCategories">
  <pipe>
    {renderer}
      <rasterTransparency/>
{inner}
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0" colorizeStrength="100"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def paletted_qml(entries: list[tuple[int, str, str]]) -> str:
    """A QGIS style (.qml) with a paletted renderer over (value, '#rrggbb', label) entries."""
    palette = "\n".join(
        f'        <paletteEntry value="{value}" color="{color}" alpha="255" '
        f"label={quoteattr(label)}/>"
        for value, color, label in entries
    )
    return raster_style_qml(
        '<rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">',
        f"""      <colorPalette>
{palette}
      </colorPalette>
      <colorramp type="randomcolors" name="[source]"/>""",
    )


SPLIT_COLORS = {
    "train": "31,120,180",
    "val": "255,127,0",
    "test": "227,26,28",
    "excluded": "160,160,160",
}


def split_style_qml(field: str = "split") -> str:
    """A QGIS style (.qml) outlining cells in the colour of their train/val/test split: outlines,
    so that the cells never hide the map below them."""
    categories = "\n".join(
        f'      <category value="{name}" label="{name}" symbol="{i}" render="true"/>'
        for i, name in enumerate(SPLIT_COLORS)
    )
    symbols = "\n".join(
        f"""      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" pass="0" locked="0">
          <prop k="color" v="{rgb},255"/>
          <prop k="outline_color" v="{rgb},255"/>
          <prop k="outline_width" v="0.5"/>
          <prop k="style" v="no"/>
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


def confidence_style_qml() -> str:
    """A QGIS style (.qml) for a confidence raster: a grey ramp from 0 (black) to 1 (white)."""
    return raster_style_qml(
        '<rasterrenderer type="singlebandgray" grayBand="1" gradient="BlackToWhite" opacity="1" '
        'alphaBand="-1" nodataColor="">',
        """      <contrastEnhancement>
        <minValue>0</minValue>
        <maxValue>1</maxValue>
        <algorithm>StretchToMinimumMaximum</algorithm>
      </contrastEnhancement>""",
    )


def category_names_aux_xml(names: list[str] | None = None) -> str:
    """GDAL PAM metadata naming the categories 0, 1, ... (default: nodata and the 17 LCZ)."""
    names = names or ["nodata"] + [c.label for c in LCZ_CLASSES]
    items = "\n".join(f"      <Category>{n}</Category>" for n in names)
    return (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
        f"{items}\n    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )


def class_raster_profile(*, crs, transform, width: int, height: int) -> dict:
    """GeoTIFF profile of a one-band uint8 class raster (0 = nodata), tiled when large enough."""
    profile = {**LCZ_PROFILE, "crs": crs, "transform": transform, "width": width, "height": height}
    if width < 256 or height < 256:
        for key in ("blockxsize", "blockysize"):
            del profile[key]
        profile["tiled"] = False
    return profile


class LczRasterWriter:
    """Write an LCZ map window by window; on close add palette, names, counts and the .qml sidecar.

    Use as a context manager: nothing appears at `path` unless the block completes.
    """

    def __init__(self, path: str | os.PathLike, *, crs, transform, width: int, height: int) -> None:
        self.path = Path(path)
        self.profile = class_raster_profile(
            crs=crs, transform=transform, width=width, height=height
        )
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
