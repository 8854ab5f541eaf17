"""The demo experiment: the demo city's embeddings against the same with strong noise added.

Two embedding sources of known quality on one grid: a correct experiment ranks the clean one
first. Nothing here is real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .demo import DEMO_CRS, DemoCity
from .experiments import toml_text
from .outputs import atomic_path, write_text_atomic

NOISE = 3.0  # standard deviation of the added noise, in units of the embeddings' own


def write_noisy_embeddings(
    source: str | os.PathLike, output: str | os.PathLike, scale: float = NOISE, seed: int = 7
) -> Path:
    """Write a (small) GeoTIFF of embeddings again with Gaussian noise of `scale` times their
    standard deviation; missing pixels stay missing."""
    import rasterio

    with rasterio.open(source) as src:
        values, profile, names = src.read(), src.profile, src.descriptions
    rng = np.random.default_rng(seed)
    noise = rng.normal(scale=scale * float(np.nanstd(values)), size=values.shape)
    with atomic_path(output) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write((values + noise).astype(values.dtype))
        dst.descriptions = names
    return Path(output)


def write_demo_experiment(
    city: DemoCity,
    folder: str | os.PathLike,
    *,
    epochs: int = 10,
    patch_size: int = 32,
) -> Path:
    """Write the noisy embeddings and an experiment file (clean and noisy embeddings, a patch
    classifier and a U-Net, one model per city) into `folder`; return the file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    noisy = write_noisy_embeddings(city.embeddings_tif, folder / "noisy_embeddings.tif")
    tables = {
        "experiment": {
            "title": "Demo: clean or noisy embeddings",
            "embeddings": ["clean", "noisy"],
        },
        "plan": {"per_city": True},
        "sampling": {"patch_size": patch_size},
        "models": {
            "resnet": {"task": "patch", "epochs": epochs},
            "unet": {"task": "segmentation", "epochs": epochs},
        },
        "references": {"synthetica": str(city.reference.resolve())},
        "cities": {
            "synthetica": {
                "extent": list(_bounds(city)),
                "extent_crs": DEMO_CRS,
                "embeddings": {
                    "clean": {"path": str(city.embeddings_tif.resolve())},
                    "noisy": {"path": str(noisy.resolve())},
                },
                "labels": {"demo": {"path": str(city.labels.resolve()), "kind": "raster"}},
            }
        },
    }
    header = (
        "# The demo city's embeddings against the same with strong noise (not real data).\n"
        "# python -m lcz_core experiment --config experiment.toml --output <a folder>"
    )
    path = folder / "experiment.toml"
    write_text_atomic(path, toml_text(tables, header))
    return path


def _bounds(city: DemoCity) -> tuple[float, ...]:
    import rasterio

    with rasterio.open(city.embeddings_tif) as src:
        return tuple(src.bounds)
