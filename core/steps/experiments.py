"""The experiment step: embeddings, models and training sets compared on the same splits."""

from __future__ import annotations

from typing import Any

from ..spec import Output, Param, Step

GROUP = "Experiments"

EXPERIMENT = Step(
    "experiment",
    "Run experiment",
    GROUP,
    "Compares embeddings, models and training sets as one experiment described by a TOML file: "
    "the cities (a city catalogue, inline or a path), the embedding sources to compare (names "
    "every city has, e.g. aef, tessera_v1, tessera_v1_1), the models (patch classifier, U-Net, "
    "with their training options) and the plan: a model per city, one model of all cities, and "
    "leave-one-city-out transfer. Every embedding of a city is sampled on the same grid with "
    "the same split (checked cell by cell); the U-Net's tiles share the grid and the split "
    "settings of the patches. Runs Sample labelled patches, the training steps, "
    "Evaluate model, Predict LCZ map and Compare with reference LCZ map, and writes one report "
    "(HTML, CSV, JSON): OA, kappa, OA_u, OA_bu, OA_w and macro F1 with their 90% intervals for "
    "every city, embedding and model, the transfer matrix, per-class F1 bars and each city's "
    "maps beside its reference map. Rerun into the same folder to resume: finished datasets, "
    "runs, evaluations and maps are kept.",
    (
        Param(
            "config", "file", "Experiment file (TOML)",
            "cities, embedding sources, models, plan; see docs/experiment_example.toml",
            file_filter="TOML files (*.toml)",
        ),
        Param(
            "output", "output_folder", "Experiment folder",
            "datasets, runs, maps and the report; a folder of an earlier run resumes it",
        ),
    ),
    (
        Output("report", "html", "Report"),
        Output("report_csv", "file", "Results table (CSV)"),
        Output("report_json", "file", "Results (JSON)"),
        Output("runs", "number", "Training runs"),
        Output("runs_skipped", "number", "Training runs kept from before"),
        Output("warnings", "json", "Warnings (JSON)"),
    ),
    qgis_id="runexperiment",
)  # fmt: skip


@EXPERIMENT.implementation
def run_experiment(*, config: str, output: str, progress: Any) -> dict[str, Any]:
    from ..experiments import run_experiment as run

    return run(config, output, progress)
