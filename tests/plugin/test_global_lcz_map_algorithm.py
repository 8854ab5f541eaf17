"""The Global LCZ map algorithm in a real QGIS, reading a copy of the map served over HTTP."""

import json

import numpy as np
import rasterio

# 4 km x 2 km in UTM 30N, inside the copy of the map (see the global_lcz_cog fixture)
BOX = (686_000.0, 4_606_000.0, 690_000.0, 4_608_000.0)


def test_loads_paletted_with_the_classes_present(
    lcz_provider, global_lcz_cog, http_folder, tmp_path
):
    import processing
    from qgis.core import QgsRasterLayer

    from lcz_core.lcz import CLASS_BY_CODE, code_from_text

    server = http_folder(global_lcz_cog.parent)
    url = f"{server.url}/{global_lcz_cog.name}"
    xmin, ymin, xmax, ymax = BOX
    result = processing.run(
        "lcz:globallczmap",
        {
            "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [EPSG:32630]",
            "SOURCE": url,
            "OUTPUT": str(tmp_path / "global.tif"),
        },
    )
    assert result["SOURCE_USED"] == url
    with rasterio.open(result["OUTPUT"]) as out:
        assert out.crs.to_epsg() == 4326
        present = set(np.unique(out.read(1)).tolist()) - {0}
    assert 0 < len(present) < 17
    assert {code_from_text(short) for short in json.loads(result["CLASS_COUNTS"])} == present
    layer = QgsRasterLayer(result["OUTPUT"], "global")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    entries = {int(c.value): (c.label, c.color.name()) for c in layer.renderer().classes()}
    assert set(entries) == present  # the legend lists only the classes present
    for code in present:
        assert entries[code] == (CLASS_BY_CODE[code].label, CLASS_BY_CODE[code].color)
    assert sum(n for _, _, n in server.requests()) < 0.1 * global_lcz_cog.stat().st_size
