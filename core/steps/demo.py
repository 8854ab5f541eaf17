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
        Param(
            "products", "bool", "Also as TESSERA and AlphaEarth products",
            "write the embeddings again as a TESSERA-layout zarr store (tessera.zarr) and an "
            "AlphaEarth COG-mirror layout with its index (aef/v1/annual/aef_index.parquet)",
            default=False,
        ),
        Param(
            "demo_experiment", "bool", "Also an experiment",
            "write noisy embeddings and an experiment file (experiment/experiment.toml: clean "
            "against noisy embeddings, patch classifier and U-Net, 5 epochs) beside the city",
            default=False,
        ),
    ),
    qgis=False,
)  # fmt: skip


@DEMO_CITY.implementation
def write_demo_city(
    *, output: str, products: bool, demo_experiment: bool, progress: Any, **values: Any
) -> dict[str, Any]:
    from pathlib import Path

    from ..demo import make_demo_city
    from ..demo_experiment import write_demo_experiment
    from ..demo_products import write_demo_products

    city = make_demo_city(output, progress=progress, **values)
    written = write_demo_products(city, progress=progress).as_dict() if products else {}
    if demo_experiment:
        config = write_demo_experiment(city, Path(output) / "experiment", epochs=5)
        written["experiment"] = str(config)
    return {"output": output, **city.as_dict(), **written}
