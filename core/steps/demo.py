"""The demo step: a synthetic city to try every other step on (command line only)."""

from __future__ import annotations

from typing import Any

from ..spec import Param, Step

DEMO_CITY = Step(
    "demo",
    "Write the demo city",
    "Demo",
    "Writes the synthetic demo city: LCZ labels (10 m), 64-band embeddings as GeoTIFF and zarr "
    "with missing pixels, So2Sat-style patch points, label polygons and a 100 m reference map. "
    "Nothing in it is real data.",
    (
        Param("output", "output_folder", "Folder to write the demo city into"),
        Param("seed", "int", "Random seed", default=0, minimum=0),
        Param(
            "size", "int", "Size (pixels a side)", "10 m pixels; a multiple of 10, at least 64",
            default=480, minimum=64, maximum=20_000,
        ),
    ),
    qgis=False,
)  # fmt: skip


@DEMO_CITY.implementation
def write_demo_city(*, output: str, progress: Any, **values: Any) -> dict[str, Any]:
    from ..demo import make_demo_city

    return {"output": output, **make_demo_city(output, progress=progress, **values).as_dict()}
