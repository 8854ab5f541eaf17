"""Agreement of an LCZ map with a reference map on the reference grid."""

import json

import numpy as np
import pytest
import rasterio

from lcz_core.compare import compare_lcz_maps
from lcz_core.errors import LczError


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
    # the 10 m labels aggregated by mode are the reference before its ~18 % simulated confusions
    assert result["n"] == 48 * 48 == confusion.sum()
    assert 0.75 < result["oa"] < 0.9
    assert result["oa_w"] > result["oa"] and result["oa_bu"] > result["oa"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(result["oa"])
    with rasterio.open(tmp_path / "reference.tif") as src:
        assert src.res == (100.0, 100.0) and src.colormap(1)[2][:3] == (209, 0, 0)
    assert (tmp_path / "confusion.png").stat().st_size > 5000


def test_real_map_against_itself_reprojected(real_data, tmp_path):
    from lcz_core.lczmap import import_lcz_map

    import_lcz_map(
        real_data / "redon/redonWudapt.tif",
        tmp_path / "utm.tif",
        target_crs="EPSG:32630",
        resolution=20,
    )
    result = compare_lcz_maps(
        tmp_path / "utm.tif", tmp_path / "a.json", reference=real_data / "redon/redonWudapt.tif"
    )
    # 20 m in UTM aggregated back to the 100 m LAEA grid by mode: near-perfect, not perfect
    assert 0.85 < result["oa"] <= 1.0 and result["n"] > 3000


def test_no_overlap_is_refused(demo_city, real_data, tmp_path):
    with pytest.raises(LczError, match="extent: .*does not overlap"):
        compare_lcz_maps(
            demo_city.labels, tmp_path / "a.json", reference=real_data / "redon/redonWudapt.tif"
        )
    assert not (tmp_path / "a.json").exists()
