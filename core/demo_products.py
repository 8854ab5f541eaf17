"""The demo city's embeddings in the real products' layouts, so the pipeline can be run on each:
a TESSERA-layout zarr store and an AlphaEarth COG-mirror layout with its index.

SYNTHETIC like the rest of the demo: the store says it holds TESSERA "0.0 synthetic" (a feature
space no real product has), the AlphaEarth copy is the demo's vectors scaled to unit length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .demo import DemoCity
from .progress import Progress

DEMO_YEAR = 2024
DEMO_VARIANT = "0.0-synthetic"


@dataclass
class DemoProducts:
    """Where the demo city's product layouts lie, and what to read from them."""

    tessera_store: Path
    aef_index: Path
    year: int
    extent: tuple[float, float, float, float]
    extent_crs: str
    variant: str

    def as_dict(self) -> dict:
        """Paths as strings, the rest as is."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def write_demo_products(
    city: DemoCity, year: int = DEMO_YEAR, progress: Progress | None = None
) -> DemoProducts:
    """Write the demo city's embeddings as `tessera.zarr` and `aef/` (COGs + index) beside it."""
    import rasterio

    from .layouts import write_aef_mirror, write_tessera_zone

    progress = progress or Progress()
    with rasterio.open(city.embeddings_tif) as dataset:
        embeddings = dataset.read()
        transform, crs, bounds = dataset.transform, dataset.crs, dataset.bounds
    store = city.folder / "tessera.zarr"
    if store.exists():
        import shutil

        shutil.rmtree(store)
    progress.report(0, "TESSERA-layout zarr store")
    write_tessera_zone(
        store, embeddings[None], transform, crs, [year], variant=DEMO_VARIANT, shard=256
    )
    progress.report(50, "AlphaEarth COG-mirror layout")
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = embeddings / np.linalg.norm(embeddings, axis=0)
    root = city.folder / "aef" / "v1" / "annual"
    write_aef_mirror(root, unit, transform, crs, year, file_px=256)
    progress.report(100, "done")
    return DemoProducts(
        tessera_store=store,
        aef_index=next(root.glob("aef_index.*")),
        year=year,
        extent=tuple(float(v) for v in bounds),  # type: ignore[arg-type]
        extent_crs=crs.to_string(),
        variant=DEMO_VARIANT,
    )
