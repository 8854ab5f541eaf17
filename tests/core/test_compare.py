"""Agreement of an LCZ map with a reference map on the reference grid."""

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from lcz_core import compare
from lcz_core.compare import AGREEMENT_CLASSES, compare_lcz_maps
from lcz_core.errors import LczError
from lcz_core.lcz import BUILT_CODES
from lcz_core.lczmap import import_lcz_map


def _reproject(source, target, crs, resolution=None):
    """Warp an LCZ GeoTIFF to `crs` by nearest neighbour, as a user would with rasterio."""
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds, resolution=resolution
        )
        profile = {
            "driver": "GTiff",
            "dtype": "uint8",
            "count": 1,
            "nodata": 0,
            "crs": crs,
            "transform": transform,
            "width": width,
            "height": height,
        }
        with rasterio.open(target, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest)
    return target


def _geodesic_area_km2(crs, left, bottom, right, top):
    """Area on the WGS84 ellipsoid of a box given in `crs`, its edges densified."""
    import pyproj

    edge = np.linspace(0, 1, 2001)
    xs = np.concatenate([left + (right - left) * edge, np.full_like(edge, right)])
    ys = np.concatenate([np.full_like(edge, bottom), bottom + (top - bottom) * edge])
    xs = np.concatenate([xs, right - (right - left) * edge, np.full_like(edge, left)])
    ys = np.concatenate([ys, np.full_like(edge, top), top - (top - bottom) * edge])
    lon, lat = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    area, _ = pyproj.Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)
    return abs(area) / 1e6


def test_demo_labels_against_the_demo_reference(demo_city, tmp_path):
    result = compare_lcz_maps(
        demo_city.labels,
        tmp_path / "agreement.json",
        reference=demo_city.reference,
        reference_output=tmp_path / "reference.tif",
        confusion_png=tmp_path / "confusion.png",
    )
    report = json.loads((tmp_path / "agreement.json").read_text())
    confusion = np.array(report["confusion"])
    # the 10 m labels by area majority are the reference before its ~18 % simulated confusions
    assert result["n"] == 48 * 48 == confusion.sum()
    assert 0.75 < result["oa"] < 0.9
    assert result["oa_w"] > result["oa"] and result["oa_bu"] > result["oa"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(result["oa"])
    # 10 m pixels in 100 m cells: one sub-cell per pixel, counted exactly
    assert report["aggregation"] == {
        "method": "area-weighted majority",
        "size_ratio": 10.0,
        "subcells_per_cell": 100,
    }
    with rasterio.open(tmp_path / "reference.tif") as src:
        assert src.res == (100.0, 100.0) and src.colormap(1)[2][:3] == (209, 0, 0)
    with rasterio.open(demo_city.labels) as src:
        labels = src.read(1)
    # the map's own class areas (all its pixels lie in compared cells) and the reference's
    for short, areas in result["class_areas"].items():
        code = {"A": 11, "B": 12, "C": 13, "D": 14, "E": 15, "F": 16, "G": 17}.get(short)
        pixels = (labels == (code or int(short))).sum()
        assert areas["input_km2"] == pytest.approx(pixels * 1e-4, rel=2e-3)
        assert areas == report["class_areas"][short]
    reference_km2 = [a["reference_km2"] for a in result["class_areas"].values()]
    assert sum(reference_km2) == pytest.approx(report["compared_km2"]) == pytest.approx(23.04, 2e-3)
    assert (tmp_path / "confusion.png").stat().st_size > 5000


def test_a_real_map_against_itself_reprojected_by_nearest(real_data, tmp_path):
    utm = tmp_path / "shanghai_utm.tif"
    assert import_lcz_map(real_data / "shanghai/Shanghai.tif", utm)["coding"] == "wudapt"
    degrees = _reproject(utm, tmp_path / "shanghai_4326.tif", "EPSG:4326")
    for input, reference in ((utm, degrees), (degrees, utm)):
        result = compare_lcz_maps(input, tmp_path / "a.json", reference=reference)
        report = json.loads((tmp_path / "a.json").read_text())
        # 100 m cells against about 95 x 108 m pixels: nearest neighbour, where a mode gave 0.95
        assert report["aggregation"]["method"] == "nearest" == result["aggregation"]
        assert result["oa"] >= 0.98 and result["n"] > 850_000
        assert 8800 < report["compared_km2"] < 8900


def test_a_finer_real_map_by_area_weighted_majority(real_data, tmp_path):
    degrees = tmp_path / "zaragoza.tif"
    import_lcz_map(real_data / "zaragoza/lcz_too_small.tif", degrees)
    utm30 = _reproject(degrees, tmp_path / "zaragoza_30m.tif", "EPSG:32630", resolution=30)
    result = compare_lcz_maps(utm30, tmp_path / "a.json", reference=degrees)
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["aggregation"]["method"] == "area-weighted majority"
    assert report["aggregation"]["subcells_per_cell"] == 64  # about 4.4 pixels per cell side
    assert result["oa"] >= 0.98
    # the 30 m map holds the same areas per class as the map it was warped from
    areas = result["class_areas"]
    differences = sum(abs(a["input_km2"] - a["reference_km2"]) for a in areas.values())
    assert differences < 0.01 * report["compared_km2"]
    # and the other way round, 100 m UTM cells against ~110 x 150 m pixels: nearest neighbour
    utm100 = _reproject(degrees, tmp_path / "zaragoza_100m.tif", "EPSG:32630", resolution=100)
    result = compare_lcz_maps(degrees, tmp_path / "b.json", reference=utm100)
    assert result["aggregation"] == "nearest" and result["oa"] >= 0.98


def test_cells_take_the_class_covering_most_area_not_most_pixels(write_raster, tmp_path):
    # the 100 m cell (1, 1) over 40 m pixels shifted by 20 m: overlaps of 20, 40 and 40 m a side
    pixels = np.full((4, 4), 12, np.uint8)
    pixels[0, :] = pixels[:, 0] = 11  # five pixels of LCZ A cover 36 % of the cell, four of B 64 %
    write_raster(tmp_path / "map.tif", pixels, nodata=0, pixel=40, origin=(400_080, 5_799_920))
    write_raster(tmp_path / "ref.tif", np.full((3, 3), 12, np.uint8), nodata=0)
    result = compare_lcz_maps(
        tmp_path / "map.tif", tmp_path / "a.json", reference=tmp_path / "ref.tif"
    )
    # cells (0, 0), (0, 1) and (1, 0) are a fifth covered, hence not compared; (1, 1) is B
    assert result["aggregation"] == "area-weighted majority"
    assert result["n"] == 1 and result["oa"] == 1.0
    areas = result["class_areas"]
    assert areas["A"]["input_km2"] + areas["B"]["input_km2"] == pytest.approx(0.01, rel=1e-3)
    assert 0.003 <= areas["A"]["input_km2"] <= 0.0045  # 0.0036 within a sub-cell of 25 m


def test_class_areas_are_true_areas_on_the_ellipsoid(write_raster, tmp_path):
    # degrees at 60 N: a cell of 0.002 x 0.002 deg is about 111 x 223 m, not a square
    degrees = tmp_path / "degrees.tif"
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "nodata": 0, "width": 100}
    profile.update(height=80, crs="EPSG:4326", transform=Affine(0.002, 0, 10, 0, -0.002, 60.2))
    with rasterio.open(degrees, "w", **profile) as dst:
        dst.write(np.full((1, 80, 100), 14, np.uint8))
    report = compare_lcz_maps(degrees, tmp_path / "d.json", reference=degrees)
    expected = _geodesic_area_km2("EPSG:4326", 10, 60.04, 10.2, 60.2)
    assert report["class_areas"]["D"]["reference_km2"] == pytest.approx(expected, rel=1e-5)
    # UTM 100 km west of the central meridian: the projection enlarges areas by 0.05 %
    utm = write_raster(tmp_path / "utm.tif", np.full((70, 90), 17, np.uint8), nodata=0)
    report = compare_lcz_maps(utm, tmp_path / "u.json", reference=utm)
    expected = _geodesic_area_km2("EPSG:32633", 400_000, 5_793_000, 409_000, 5_800_000)
    assert report["class_areas"]["G"]["reference_km2"] == pytest.approx(expected, rel=2e-5)
    assert abs(expected - 63.0) > 0.02  # the nominal 70 x 90 cells of 1 ha would be wrong


def test_agreement_raster_is_styled_and_matches_the_confusion(real_data, tmp_path):
    from lcz_core.labels import open_labels, rasterize_to_file

    # two independent real maps of Redon: GeoClimate's OSM polygons at 10 m, the European LCZ map
    labels = open_labels(
        real_data / "redon/osm_2022_Redon_rsu_lcz.geojson", class_field="LCZ_PRIMARY"
    )
    grid = Affine(10, 0, 566_510, 0, -10, 5_281_110)
    rasterize_to_file(labels, tmp_path / "osm.tif", labels.crs, grid, 533, 539)
    result = compare_lcz_maps(
        tmp_path / "osm.tif",
        tmp_path / "a.json",
        reference=real_data / "redon/redonWudapt.tif",
        agreement_output=tmp_path / "agreement.tif",
    )
    report = json.loads((tmp_path / "a.json").read_text())
    assert result["agreement_output"] == str(tmp_path / "agreement.tif")
    with rasterio.open(tmp_path / "agreement.tif") as src:
        values = src.read(1)
        assert src.crs.to_epsg() == 3035 and src.res == (100.0, 100.0)
        assert src.colormap(1)[1][:3] == (26, 150, 65) and src.colormap(1)[0][3] == 0
    counts = np.bincount(values.ravel(), minlength=6)
    confusion = np.array(report["confusion"])
    built = np.isin(np.arange(1, 18), BUILT_CODES)
    off = confusion - np.diag(np.diag(confusion))
    assert counts[0] > 0 and counts[1] == np.trace(confusion) and 0.2 < result["oa"] < 0.6
    assert counts[2] == off[np.ix_(built, built)].sum() > 0
    assert counts[3] == off[np.ix_(~built, ~built)].sum() > 0
    assert counts[4] == confusion[np.ix_(~built, built)].sum() > 0  # reference natural, map built
    assert counts[5] == confusion[np.ix_(built, ~built)].sum() > 0
    assert report["agreement_km2"]["agree"] == pytest.approx(counts[1] * 0.01)  # equal-area CRS
    qml = (tmp_path / "agreement.qml").read_text()
    assert all(f'color="{color}"' in qml for _, color, _ in AGREEMENT_CLASSES)
    names = (tmp_path / "agreement.tif.aux.xml").read_text()
    assert "<Category>built in the map, natural in the reference</Category>" in names


def test_results_do_not_depend_on_the_window_size(demo_city, tmp_path, monkeypatch):
    whole = compare_lcz_maps(demo_city.labels, tmp_path / "a.json", reference=demo_city.reference)
    monkeypatch.setattr(compare, "BLOCK_SUBCELLS", 5000)  # one row of 48 cells x 100 sub-cells
    monkeypatch.setattr(compare, "AREA_STEP", 3)
    rows = compare_lcz_maps(demo_city.labels, tmp_path / "b.json", reference=demo_city.reference)
    assert (
        json.loads((tmp_path / "a.json").read_text())["confusion"]
        == json.loads((tmp_path / "b.json").read_text())["confusion"]
    )
    for short, areas in whole["class_areas"].items():
        for key in ("input_km2", "reference_km2"):
            assert rows["class_areas"][short][key] == pytest.approx(areas[key], rel=1e-5)


def test_no_overlap_is_refused(demo_city, real_data, tmp_path):
    with pytest.raises(LczError, match="reference: the map .* lies outside the reference"):
        compare_lcz_maps(
            demo_city.labels,
            tmp_path / "a.json",
            reference=real_data / "redon/redonWudapt.tif",
            agreement_output=tmp_path / "agreement.tif",
        )
    assert not list(tmp_path.iterdir())


def test_agreement_output_in_a_missing_folder_is_refused_first(demo_city, tmp_path):
    with pytest.raises(LczError, match="agreement_output: folder .* does not exist"):
        compare_lcz_maps(
            demo_city.labels,
            tmp_path / "a.json",
            reference=demo_city.reference,
            agreement_output=tmp_path / "nope" / "agreement.tif",
        )
