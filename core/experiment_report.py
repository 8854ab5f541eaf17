"""The report of an experiment: one HTML page, a CSV table and a JSON record, with figures.

The table holds every evaluation (tested on x embedding x model x trained on) with OA, kappa,
OA_u, OA_bu, OA_w and macro F1 and their 90% intervals; the transfer matrix of each embedding and
model has the training set in rows and the tested city in columns; for each city the per-class
F1 of every embedding and model as bars, and its maps side by side with the reference map under
one LCZ legend.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import html_table
from .experiments import ALL_CITIES, OTHER_CITIES, folder_name
from .lcz import CLASS_BY_CODE
from .metrics import MEASURE_LABELS, MEASURES
from .outputs import write_text_atomic
from .progress import Progress

PANEL_INCHES = 3.4
LEGEND_INCHES = 2.4  # beside the maps: the longest class name in the legend's font
MAP_PIXELS = 600  # longest side a map is read at for the figures


def main_result(results: list[dict], city: str, embedding: str, model: str) -> dict | None:
    """The evaluation on `city` that stands for an embedding and model: the city's own model,
    else the model of all cities, else the one that left the city out."""
    order = {city: 0, ALL_CITIES: 1, OTHER_CITIES: 2}
    found = [
        r
        for r in results
        if r["tested_on"] == city
        and r["embedding"] == embedding
        and r["model"] == model
        and r["trained_on"] in order
    ]
    return min(found, key=lambda r: order[r["trained_on"]]) if found else None


def rankings(record: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per city and model, the embeddings from the best OA to the worst."""
    ranked: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for city in record["cities"]:
        for model in record["models"]:
            rows = [
                {"embedding": e, "oa": r["oa"], "trained_on": r["trained_on"]}
                for e in record["embeddings"]
                if (r := main_result(record["results"], city, e, model)) and r["oa"] is not None
            ]
            ranked.setdefault(city, {})[model] = sorted(rows, key=lambda r: -r["oa"])
    return ranked


def transfer_matrices(record: dict[str, Any]) -> list[dict[str, Any]]:
    """For each embedding and model: OA with the training set in rows, the tested city in columns."""
    matrices = []
    cities = record["cities"]
    for embedding in record["embeddings"]:
        for model in record["models"]:
            results = [
                r for r in record["results"] if r["embedding"] == embedding and r["model"] == model
            ]
            rows = []
            for trained_on in [*cities, ALL_CITIES, OTHER_CITIES]:
                cells = {r["tested_on"]: r for r in results if r["trained_on"] == trained_on}
                if cells:
                    rows.append(
                        {
                            "trained_on": trained_on,
                            "oa": [cells[c]["oa"] if c in cells else None for c in cities],
                            "intervals": [
                                cells[c]["intervals"]["oa"] if c in cells else None for c in cities
                            ],
                        }
                    )
            matrices.append(
                {"embedding": embedding, "model": model, "columns": cities, "rows": rows}
            )
    return matrices


def _f1_figure(record: dict[str, Any], city: str, path: Path) -> Path | None:
    """Grouped bars of the per-class F1 of every embedding and model on the city's test split."""
    from .plot import new_figure, save_png

    series = [
        (f"{e} / {m}", r)
        for e in record["embeddings"]
        for m in record["models"]
        if (r := main_result(record["results"], city, e, m))
    ]
    codes = sorted({int(c) for _, r in series for c in r["per_class_f1"]})
    if not series or not codes:
        return None
    width = 0.8 / len(series)
    figure = new_figure(min(12.0, max(6.0, 0.3 * len(codes) * len(series) + 2)), 4.0)
    ax = figure.add_subplot()
    x = np.arange(len(codes))
    for i, (label, result) in enumerate(series):
        values = [result["per_class_f1"].get(str(c)) or 0.0 for c in codes]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, [CLASS_BY_CODE[c].short for c in codes])
    ax.set(xlabel="LCZ", ylabel="F1 on the test split", ylim=(0, 1), title=f"Per-class F1: {city}")
    ax.legend(
        fontsize=8, ncols=max(1, min(len(series), 3)), loc="upper left", bbox_to_anchor=(0, -0.15)
    )
    figure.tight_layout()
    return save_png(figure, path)


def _maps_figure(record: dict[str, Any], city: str, path: Path) -> Path | None:
    """The city's reference map and its maps side by side, with one LCZ legend."""
    from matplotlib.ticker import MaxNLocator

    from .plot import lcz_legend_handles, new_figure, plot_lcz, read_lcz_raster, save_png

    entry = record["maps"][city]
    panels = [
        (f"{m['embedding']} / {m['model']}\n(trained on {m['trained_on']})", m["map"])
        for m in entry["maps"]
    ]
    if entry["reference"]:
        panels.insert(0, (entry["reference_title"], entry["reference"]))
    if not panels:
        return None
    read = [(title, *read_lcz_raster(p, MAP_PIXELS)) for title, p in panels]
    columns = min(3, len(read))
    rows = -(-len(read) // columns)
    width = PANEL_INCHES * columns + LEGEND_INCHES
    figure = new_figure(width, PANEL_INCHES * rows + 0.4)
    for i, (title, codes, transform, crs) in enumerate(read):
        ax = figure.add_subplot(rows, columns, i + 1)
        plot_lcz(
            codes,
            transform=transform if crs else None,
            metric=bool(crs and crs.is_projected),
            title=title,
            ax=ax,
            legend=False,
        )
        if i % columns:  # one extent for all: the axes named once per row and column
            ax.set_ylabel("")
            ax.tick_params(labelleft=False)
        if i + columns < len(read):
            ax.set_xlabel("")
            ax.tick_params(labelbottom=False)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
        ax.title.set_size(9)
    everything = np.concatenate([codes.ravel() for _, codes, _, _ in read])
    figure.legend(
        handles=lcz_legend_handles(everything),
        loc="center right",
        frameon=False,
        fontsize=8,
        title="Local Climate Zones",
        title_fontsize=9,
    )
    figure.tight_layout(rect=(0, 0, 1 - LEGEND_INCHES / width, 1))
    return save_png(figure, path)


CSV_COLUMNS = (
    "tested_on",
    "embedding",
    "model",
    "task",
    "trained_on",
    "transfer",
    "samples",
    *(f"{m}{suffix}" for m in MEASURES for suffix in ("", "_low", "_high")),
    "majority_baseline_oa",
    "map_oa_vs_reference",
    "map_kappa_vs_reference",
)


def _agreement(record: dict[str, Any], result: dict[str, Any]) -> dict | None:
    """The map comparison made with the same run as `result`, if any."""
    for found in record["maps"].get(result["tested_on"], {}).get("maps", []):
        if (found["embedding"], found["model"], found["trained_on"]) == (
            result["embedding"],
            result["model"],
            result["trained_on"],
        ):
            return found["agreement"]
    return None


def _csv(record: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in record["results"]:
        measures = []
        for m in MEASURES:
            bounds = r["intervals"].get(m) or [None, None]
            measures += [r[m], *bounds]
        agreement = _agreement(record, r) or {}
        writer.writerow(
            [
                r["tested_on"],
                r["embedding"],
                r["model"],
                r["task"],
                r["trained_on"],
                r["transfer"],
                r["n"],
                *measures,
                r["majority_baseline_oa"],
                agreement.get("oa"),
                agreement.get("kappa"),
            ]
        )
    return buffer.getvalue()


def _with_interval(value: Any, bounds: list[float] | None) -> str:
    if not bounds:
        return html_table.cell(value)
    return f"{html_table.cell(value)}<br><small>{bounds[0]:.3f}&ndash;{bounds[1]:.3f}</small>"


def _link(path: str, text: str, folder: Path) -> str:
    try:
        href = Path(path).relative_to(folder).as_posix()
    except ValueError:
        href = Path(path).as_uri()
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def report_html(record: dict[str, Any], folder: Path) -> str:
    """The experiment's HTML page (figures referenced beside it)."""
    cities, embeddings = record["cities"], record["embeddings"]
    labels = [MEASURE_LABELS[m] for m in MEASURES]
    main_rows = []
    for city in cities:
        for r in record["results"]:
            if r["tested_on"] == city and r["trained_on"] in (city, ALL_CITIES, OTHER_CITIES):
                agreement = _agreement(record, r) or {}
                main_rows.append(
                    [
                        html_table.cell(city),
                        html_table.cell(r["embedding"]),
                        html_table.cell(r["model"]),
                        html_table.cell(r["trained_on"]),
                        html_table.cell(r["n"]),
                        *(_with_interval(r[m], r["intervals"].get(m)) for m in MEASURES),
                        html_table.cell(agreement.get("oa")),
                        _link(r["evaluation"], "report", folder),
                    ]
                )
    main = html_table.table(
        [
            "tested on",
            "embedding",
            "model",
            "trained on",
            "samples",
            *labels,
            "map OA vs reference",
            "evaluation",
        ],
        main_rows,
    )
    ranking_items = "".join(
        f"<li>{html_table.cell(city)}, {html_table.cell(model)}: "
        + " &gt; ".join(f"{html_table.cell(r['embedding'])} ({r['oa']:.3f})" for r in rows)
        + "</li>"
        for city, by_model in record["ranking"].items()
        for model, rows in by_model.items()
        if rows
    )
    transfer = "".join(
        f"<h3>{html_table.cell(m['embedding'])} / {html_table.cell(m['model'])}</h3>"
        + html_table.table(
            ["trained on \\ tested on", *(html_table.cell(c) for c in m["columns"])],
            [
                [html_table.cell(row["trained_on"])]
                + [_with_interval(v, b) for v, b in zip(row["oa"], row["intervals"], strict=True)]
                for row in m["rows"]
            ],
        )
        for m in record["transfer"]
    )
    city_sections = []
    for city in cities:
        entry = record["maps"][city]
        figures = record["figures"].get(city, {})
        parts = [f"<h3>{html_table.cell(city)}</h3>"]
        if entry["note"]:
            parts.append(f'<p class="note">Reference: {html_table.cell(entry["note"])}.</p>')
        elif entry["reference"]:
            parts.append(
                f"<p>{html_table.cell(entry['reference_title'].capitalize())}: "
                f"{html_table.cell(entry['reference_source'])}.</p>"
            )
        for key, alt in (("maps", "maps"), ("f1", "per-class F1")):
            if figures.get(key):
                parts.append(
                    f'<img src="{html.escape(figures[key])}" alt="{alt} of {html_table.cell(city)}">'
                )
        city_sections.append("".join(parts))
    split_rows = [
        [
            html_table.cell(city),
            html_table.cell(kind),
            html_table.cell(", ".join(embeddings)),
            "yes"
            if found["same_grid"]
            else "no: " + html_table.cell("; ".join(", ".join(g) for g in found["grids"])),
            html_table.cell(found["cells_compared"]),
            "the same in every cell compared" if found["cells_compared"] else "&ndash;",
        ]
        for city, kinds in record["splits"].items()
        for kind, found in kinds.items()
    ]
    runs = html_table.table(
        ["embedding", "model", "trained on", "best epoch", "this time", "run"],
        [
            [
                html_table.cell(r["embedding"]),
                html_table.cell(r["model"]),
                html_table.cell(
                    r["trained_on"]
                    if r["trained_on"] != OTHER_CITIES
                    else f"all but {r['tested_on'][0]}"
                ),
                html_table.cell(r["best_epoch"]),
                "kept (done before)" if r["skipped"] else "trained",
                _link(str(Path(r["folder"]) / "experiment.toml"), "experiment.toml", folder),
            ]
            for r in record["runs"]
        ],
    )
    warnings = "".join(f"<li>{html_table.cell(w)}</li>" for w in record["warnings"])
    plan = ", ".join(k.replace("_", " ") for k, v in record["plan"].items() if v)
    models = "; ".join(
        f"{html_table.cell(name)} ({html_table.cell(m['task'])}: "
        + ", ".join(
            f"{k} {html_table.cell(v)}" for k, v in m.items() if k != "task" and v is not None
        )
        + ")"
        for name, m in record["models"].items()
    )
    sampling = ", ".join(
        f"{k} {html_table.cell(v)}" for k, v in record["sampling"].items() if v is not None
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html_table.cell(record["title"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #eee; }} td:first-child {{ text-align: left; }}
small {{ color: #555; white-space: nowrap; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0 1.5em; }}
.note, .warning {{ color: #a00000; }}
</style></head><body>
<h1>{html_table.cell(record["title"])}</h1>
<p>Cities: {html_table.cell(", ".join(cities))}. Embeddings: {html_table.cell(", ".join(embeddings))}. Models: {models}.
Plan: {html_table.cell(plan)}. Sampling (the same for every city, embedding and model): {sampling}.
The whole experiment: {_link(record["experiment"], "experiment.toml", folder)}; the table as
{_link(str(folder / "report.csv"), "CSV", folder)} and
{_link(str(folder / "report.json"), "JSON", folder)}.</p>
{f'<ul class="warning">{warnings}</ul>' if warnings else ""}
<h2>Results</h2>
<p>Each model on the test split of the city in the first column, trained on that city, on all
cities or on all other cities (transfer). Below each value its 90% interval from a spatial block
bootstrap ({record["bootstrap_draws"]} draws; see each evaluation report). Map OA: the city's map
from the same model against the reference map.</p>
{main}
<h2>Ranking of the embeddings (OA)</h2>
<ul>{ranking_items}</ul>
<h2>Transfer</h2>
<p>OA on the test split of the city in each column; rows: what the model was trained on. The
diagonal is each city's own model; the row "{OTHER_CITIES}" holds, in each column, the model
trained on every city but that one.</p>
{transfer if len(cities) > 1 else "<p>One city: no transfer to show.</p>"}
<h2>Cities</h2>
<p>Each city's reference map beside its maps, and the per-class F1 on its test split (no bar:
an F1 of 0, or the class is not in that test split; patches and tiles hold different samples).</p>
{"".join(city_sections)}
<h2>Splits</h2>
<p>Every embedding of a city is sampled with the same settings on the same grid, so each cell
falls in the same split whatever the embedding; checked cell by cell over the cells both hold.
Patches and tiles share the grid and the settings, but each kind's split is dealt by its own
samples (a tile needs any label, a patch a majority class).</p>
{html_table.table(["city", "kind", "embeddings", "same grid", "cells compared", "splits"], split_rows)}
<h2>Runs</h2>
{runs}
</body></html>
"""


def write_report(folder: Path, record: dict[str, Any], progress: Progress) -> dict[str, str]:
    """Write report.html, report.csv, report.json and the figures; return their paths."""
    figures_folder = folder / "figures"
    figures_folder.mkdir(exist_ok=True)
    record["ranking"] = rankings(record)
    record["transfer"] = transfer_matrices(record)
    record["figures"] = {}
    for i, city in enumerate(record["cities"]):
        progress.report(90.0 * i / len(record["cities"]), f"figures of {city}")
        made = {}
        for key, draw in (("maps", _maps_figure), ("f1", _f1_figure)):
            path = draw(record, city, figures_folder / f"{key}_{folder_name(city)}.png")
            if path is not None:
                made[key] = path.relative_to(folder).as_posix()
        record["figures"][city] = made
    paths = {
        "report": folder / "report.html",
        "report_csv": folder / "report.csv",
        "report_json": folder / "report.json",
    }
    write_text_atomic(paths["report_csv"], _csv(record))
    write_text_atomic(paths["report_json"], json.dumps(record, indent=2, default=str))
    write_text_atomic(paths["report"], report_html(record, folder))
    progress.report(100, "report written")
    return {k: str(v) for k, v in paths.items()}
