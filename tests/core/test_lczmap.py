"""Importing real LCZ maps: codings, nodata, clipping, reprojection, styling and refusals."""

import numpy as np
import pytest
import rasterio

from lcz_core.errors import LczError
from lcz_core.lczmap import import_lcz_map
from lcz_core.outputs import lcz_colormap
from lcz_core.progress import Cancelled, Progress

REAL_MAPS = {
    # file, expected coding, expected classes (short codes)
    "zaragoza/lcz_zaragoza.tif": (
        "lcz17",
        ["2", "3", "5", "6", "8", "9", "A", "B", "C", "D", "E", "F", "G"],
    ),
    "shanghai/Shanghai.tif": (
        "wudapt",
        ["1", "2", "3", "4", "5", "6", "8", "10", "A", "B", "D", "E", "G"],
    ),
    "redon/redonWudapt.tif": ("lcz17", ["3", "6", "8", "9", "A", "B", "D", "F", "G"]),
}


@pytest.mark.parametrize("name", sorted(REAL_MAPS))
def test_real_maps_import_with_their_classes_and_counts(real_data, tmp_path, name):
    source = real_data / name
    result = import_lcz_map(source, tmp_path / "lcz.tif")
    coding, classes = REAL_MAPS[name]
    assert result["coding"] == coding
    assert list(result["class_counts"]) == classes
    with rasterio.open(source) as src:
        raw = src.read(1)
        crs = src.crs
    with rasterio.open(tmp_path / "lcz.tif") as out:
        codes = out.read(1)
        assert out.crs == crs and out.dtypes[0] == "uint8" and out.nodata == 0
        assert out.colormap(1)[11] == lcz_colormap()[11]
    assert codes.shape == raw.shape
    # every pixel translated, class by class
    for short, count in result["class_counts"].items():
        code = {"A": 11, "B": 12, "C": 13, "D": 14, "E": 15, "F": 16, "G": 17}.get(short, None)
        code = code or int(short)
        raw_value = code + 90 if coding == "wudapt" and code > 10 else code
        assert count == int((raw == raw_value).sum()) == int((codes == code).sum())
    assert (tmp_path / "lcz.qml").is_file() and (tmp_path / "lcz.tif.aux.xml").is_file()


def test_shanghai_shows_a_to_g_not_101_107(real_data, tmp_path):
    import_lcz_map(real_data / "shanghai/Shanghai.tif", tmp_path / "sh.tif")
    with rasterio.open(tmp_path / "sh.tif") as out:
        values = set(np.unique(out.read(1)).tolist())
    assert values <= set(range(0, 18)) and {11, 14, 17} <= values
    qml = (tmp_path / "sh.qml").read_text()
    assert 'label="LCZ A: Dense trees"' in qml and 'color="#006a00"' in qml
    assert "LCZ 7:" not in qml  # legend lists only the classes present


def test_nan_and_declared_nodata_become_zero(tmp_path, write_raster):
    values = np.full((40, 50), 14, dtype=np.float32)
    values[:5] = np.nan
    values[5:10] = -9999
    values[10:12] = 17
    source = write_raster(tmp_path / "in.tif", values, nodata=-9999)
    result = import_lcz_map(source, tmp_path / "out.tif")
    assert result["nodata_pixels"] == 500
    assert result["class_counts"] == {"D": 1400, "G": 100}


def test_clip_to_extent_in_another_crs(real_data, tmp_path):
    source = real_data / "shanghai/Shanghai.tif"
    # a 20 km x 10 km box in UTM 51N, given in WGS84 degrees
    from rasterio.warp import transform_bounds

    box = transform_bounds("EPSG:32651", "EPSG:4326", 340000, 3450000, 360000, 3460000)
    result = import_lcz_map(source, tmp_path / "clip.tif", extent=box, extent_crs="EPSG:4326")
    with rasterio.open(tmp_path / "clip.tif") as out:
        left, bottom, right, top = out.bounds
    assert 338000 <= left <= 340500 and 359500 <= right <= 362000
    assert 199 <= result["width"] <= 230 and result["height"] >= 99


def test_reproject_to_target_crs_and_resolution(real_data, tmp_path):
    result = import_lcz_map(
        real_data / "redon/redonWudapt.tif",
        tmp_path / "utm.tif",
        target_crs="EPSG:32630",
        resolution=50,
    )
    with rasterio.open(tmp_path / "utm.tif") as out:
        assert out.crs.to_epsg() == 32630 and out.res == (50.0, 50.0)
        codes = out.read(1)
    # nearest resampling invents no class; pixels outside the rotated source are nodata
    assert set(np.unique(codes).tolist()) <= {0, 3, 6, 8, 9, 11, 12, 14, 16, 17}
    assert result["nodata_pixels"] > 0 and result["class_counts"]["D"] > 4 * 1362 * 0.8


def test_unknown_values_are_refused_naming_them(tmp_path, write_raster):
    source = write_raster(
        tmp_path / "in.tif", np.array([[1, 2], [42, 250]], dtype=np.uint8), nodata=None
    )
    with pytest.raises(LczError, match=r"coding: values 42, 250 .*explicit class mapping"):
        import_lcz_map(source, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()
    result = import_lcz_map(source, tmp_path / "out.tif", mapping={42: 17, 250: 0})
    assert result["class_counts"] == {"1": 1, "2": 1, "G": 1}


def test_extent_outside_the_raster(real_data, tmp_path):
    with pytest.raises(LczError, match="extent: .*does not overlap"):
        import_lcz_map(real_data / "redon/redonWudapt.tif", tmp_path / "o.tif", extent=(0, 0, 1, 1))


def test_not_a_raster_and_unwritable_output(tmp_path, write_raster):
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(LczError, match="input: .*not a raster"):
        import_lcz_map(text, tmp_path / "o.tif")
    source = write_raster(tmp_path / "in.tif", np.ones((4, 4), np.uint8), nodata=0)
    with pytest.raises(LczError, match="output: folder .*does not exist"):
        import_lcz_map(source, tmp_path / "missing" / "o.tif")


def test_probability_band_is_refused(tmp_path, write_raster):
    source = write_raster(tmp_path / "p.tif", np.full((4, 4), 0.5, np.float32), nodata=None)
    with pytest.raises(LczError, match="band: .*non-integer"):
        import_lcz_map(source, tmp_path / "o.tif")


class CancelAfter(Progress):
    def __init__(self, reports):
        super().__init__()
        self.left = reports

    def _emit(self, percent, message):
        self.left -= 1
        if self.left <= 0:
            self.cancel()


def test_cancel_leaves_no_file(real_data, tmp_path):
    with pytest.raises(Cancelled):
        import_lcz_map(
            real_data / "shanghai/Shanghai.tif", tmp_path / "o.tif", progress=CancelAfter(7)
        )
    assert list(tmp_path.iterdir()) == []
