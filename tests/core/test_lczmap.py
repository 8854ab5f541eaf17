"""Importing real LCZ maps: codings, nodata, clipping, reprojection, styling and refusals."""

import numpy as np
import pytest
import rasterio
from log_lines import LogLines

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


def test_extent_without_its_crs_is_in_the_input_crs_when_reprojecting(real_data, tmp_path):
    # a 2 km box in the input's CRS (EPSG:3035), the output in UTM 30N
    box = (3416000.0, 2800000.0, 3418000.0, 2802000.0)
    import_lcz_map(
        real_data / "redon/redonWudapt.tif",
        tmp_path / "utm.tif",
        extent=box,
        target_crs="EPSG:32630",
        resolution=50,
    )
    from rasterio.warp import transform_bounds

    wanted = transform_bounds("EPSG:3035", "EPSG:32630", *box)
    with rasterio.open(tmp_path / "utm.tif") as out:
        left, bottom, right, top = out.bounds
    assert abs(left - wanted[0]) <= 50 and abs(right - wanted[2]) <= 50
    assert abs(bottom - wanted[1]) <= 50 and abs(top - wanted[3]) <= 50


def test_unknown_values_are_refused_naming_them(tmp_path, write_raster):
    source = write_raster(
        tmp_path / "in.tif", np.array([[1, 2], [42, 250]], dtype=np.uint8), nodata=None
    )
    with pytest.raises(LczError, match=r"mapping: .*values 42, 250 .*give a mapping") as error:
        import_lcz_map(source, tmp_path / "out.tif")
    assert "0:17" not in str(error.value)
    assert not (tmp_path / "out.tif").exists()
    # a partial mapping is refused, naming the values it leaves out
    with pytest.raises(
        LczError, match=r"mapping: .*values 1, 2 are present but not in the mapping"
    ):
        import_lcz_map(source, tmp_path / "out.tif", mapping={42: 17, 250: 0})
    result = import_lcz_map(source, tmp_path / "out.tif", mapping="1:1,2:2,42:G,250:nodata")
    assert result["coding"] == "mapping"
    assert result["class_counts"] == {"1": 1, "2": 1, "G": 1} and result["nodata_pixels"] == 1


def generator_output(path, descriptions):
    """An LCZ Generator-like GeoTIFF: raw, filtered and probability bands, 0 = undeclared nodata."""
    rng = np.random.default_rng(3)
    raw = rng.choice([2, 5, 6, 8, 11, 14, 17], size=(60, 80)).astype(np.uint8)
    filtered = raw.copy()
    filtered[:, 40:] = 14  # the filter smooths the east into low plants
    probability = rng.integers(20, 101, size=(60, 80)).astype(np.uint8)
    for band in (raw, filtered, probability):
        band[:6] = 0  # outside the region of interest
    with rasterio.open(
        path, "w", driver="GTiff", width=80, height=60, count=3, dtype="uint8",
        crs="EPSG:32633", transform=rasterio.Affine(100, 0, 400_000, 0, -100, 5_800_000),
    ) as dst:  # fmt: skip
        dst.write(np.stack([raw, filtered, probability]))
        if descriptions:
            dst.descriptions = descriptions
    return path, raw, filtered


@pytest.mark.parametrize(
    ("descriptions", "evidence"),
    [
        (("lcz", "lczFilter", "classProbability"), "band descriptions"),
        (None, "the third holding 0-100"),
    ],
)
def test_lcz_generator_layout_uses_the_filtered_band(tmp_path, descriptions, evidence):
    source, raw, filtered = generator_output(tmp_path / "gen.tif", descriptions)
    progress = LogLines()
    result = import_lcz_map(source, tmp_path / "lcz.tif", progress=progress)
    assert result["band_used"] == 2 and result["coding"] == "lcz17"
    with rasterio.open(tmp_path / "lcz.tif") as out:
        np.testing.assert_array_equal(out.read(1), filtered)  # 1-17 as they are, 0 = nodata
    assert result["nodata_pixels"] == 6 * 80
    assert result["class_counts"]["D"] == int((filtered == 14).sum())
    described = (
        "'lcz', 2 'lczFilter', 3 'classProbability'" if descriptions else "descriptions: none"
    )
    assert described in progress.lines[0] and "no declared nodata" in progress.lines[0]
    assert "band 2 used: the filtered LCZ band of an LCZ Generator layout" in progress.lines[1]
    assert evidence in progress.lines[1] and "0 read as nodata" in progress.lines[1]
    # the raw band on request, still with 0 as nodata; the probability band is refused
    result = import_lcz_map(source, tmp_path / "raw.tif", band=1)
    assert result["band_used"] == 1 and result["nodata_pixels"] == 6 * 80
    assert result["class_counts"]["G"] == int((raw == 17).sum())
    with pytest.raises(LczError, match="band: .*look like probabilities"):
        import_lcz_map(source, tmp_path / "p.tif", band=3)


def test_three_bands_without_a_probability_band_read_band_1(tmp_path, write_raster):
    values = np.stack([np.full((8, 8), 11, np.uint8), np.full((8, 8), 3, np.uint8)] * 2)[:3]
    progress = LogLines()
    result = import_lcz_map(
        write_raster(tmp_path / "in.tif", values), tmp_path / "o.tif", progress=progress
    )
    assert result["band_used"] == 1 and result["class_counts"] == {"A": 64}
    assert "band 1 used: the first of 3 bands, no LCZ Generator layout" in progress.lines[1]
    with pytest.raises(LczError, match="band: .*choose a band from 1 to 3"):
        import_lcz_map(tmp_path / "in.tif", tmp_path / "o.tif", band=4)


def test_undeclared_zero_needs_nodata(tmp_path, write_raster):
    values = np.array([[0, 0, 3], [11, 17, 17]], dtype=np.uint8)
    source = write_raster(tmp_path / "in.tif", values)
    with pytest.raises(LczError, match="nodata: .*value 0 .*give nodata 0") as error:
        import_lcz_map(source, tmp_path / "o.tif")
    assert ":17" not in str(error.value) and ":G" not in str(error.value)
    progress = LogLines()
    result = import_lcz_map(source, tmp_path / "o.tif", nodata=0, progress=progress)
    assert result["nodata_pixels"] == 2 and result["class_counts"] == {"3": 1, "A": 1, "G": 2}
    assert "0 read as nodata (nodata)" in progress.lines[1]


def test_built_classes_alone_are_not_taken_for_lcz(tmp_path, write_raster):
    values = np.array([[1, 2, 3], [4, 5, 10]], dtype=np.int16)
    source = write_raster(tmp_path / "in.tif", values, nodata=-1)
    with pytest.raises(LczError, match="coding: .*all 1-10 and no natural class"):
        import_lcz_map(source, tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()
    result = import_lcz_map(source, tmp_path / "o.tif", coding="lcz17")
    assert result["coding"] == "lcz17" and len(result["class_counts"]) == 6
    # the file written declares its coding: importing it again (say a city-centre crop) needs none
    again = import_lcz_map(tmp_path / "o.tif", tmp_path / "again.tif")
    assert again["coding"] == "lcz17" and again["class_counts"] == result["class_counts"]


def test_lcz_colour_table_declares_the_coding(tmp_path, write_raster):
    source = write_raster(tmp_path / "in.tif", np.array([[1, 2], [8, 0]], np.uint8), nodata=0)
    with rasterio.open(source, "r+") as dst:
        dst.write_colormap(1, lcz_colormap())
    assert import_lcz_map(source, tmp_path / "o.tif")["coding"] == "lcz17"


def test_integer_probability_band_is_refused(tmp_path, write_raster):
    values = np.arange(0, 100, dtype=np.uint8).reshape(10, 10)
    source = write_raster(tmp_path / "p.tif", values)
    with pytest.raises(LczError, match="band: .*look like probabilities.*coding or a mapping"):
        import_lcz_map(source, tmp_path / "o.tif")


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
