#!/usr/bin/env bash
# The demo, end to end through qgis_process with the plugin loaded from this checkout (in a
# throwaway QGIS profile): sample patches from the synthetic city, train a patch classifier,
# evaluate it, predict the LCZ map, compare it with the 100 m reference map and plot both.
set -euo pipefail
demo_dir=$(realpath "$1")
repo=$(realpath "$(dirname "$0")/..")
export HOME="$demo_dir/qgis_home" QGIS_PLUGINPATH="$repo" QT_QPA_PLATFORM=offscreen
mkdir -p "$HOME"
qgis() { /usr/bin/qgis_process.bin "$@" 2> >(grep -v -e XDG_RUNTIME_DIR -e 'setapi() is deprecated' >&2); }
run() {
    echo
    echo "== $1"
    qgis run "$@" | sed -n '/^Results/,$p'
}
qgis plugins enable lcz_qgis > /dev/null || true  # exits 1 when already enabled
d=$demo_dir
# the embeddings as the chosen product: a GeoTIFF, or a product read over the city's extent
py="$repo/.venv/bin/python"
kind() { "$py" -c "from lcz_core.choices import SOURCE_KINDS; print(SOURCE_KINDS.index('$1'))"; }
extent=$("$py" -c "import rasterio; b = rasterio.open('$d/synthetic_embeddings.tif').bounds
print(f'{b.left},{b.right},{b.bottom},{b.top} [EPSG:32633]')")
centre=$("$py" -c "import rasterio; b = rasterio.open('$d/synthetic_embeddings.tif').bounds
print(f'{(b.left + b.right) / 2},{(b.bottom + b.top) / 2} [EPSG:32633]')")
case "${2:-geotiff}" in
    geotiff) embeddings=(EMBEDDINGS="$d/synthetic_embeddings.tif") ;;
    tessera) embeddings=(EMBEDDINGS_FOLDER="$d/tessera.zarr" SOURCE_KIND="$(kind tessera-zarr)"
                         YEAR=2024 EXTENT="$extent") ;;
    aef) embeddings=(EMBEDDINGS="$d/aef/v1/annual/aef_index.parquet" SOURCE_KIND="$(kind aef-index)"
                     YEAR=2024 EXTENT="$extent") ;;
    *) echo "unknown demo source $2: use geotiff, tessera or aef" >&2; exit 2 ;;
esac
echo "Embeddings: ${embeddings[*]}"
run lcz:samplepatches -- "${embeddings[@]}" LABELS="$d/synthetic_lcz_labels_10m.tif" \
    OUTPUT="$d/dataset" GRID_OUTPUT="$d/sampled_cells.gpkg"
run lcz:trainpatchclassifier -- DATASET="$d/dataset" EPOCHS=15 OVERWRITE=true OUTPUT="$d/run"
run lcz:evaluatemodel -- MODEL="$d/run/model.safetensors" DATASET="$d/dataset" OUTPUT="$d/evaluation"
run lcz:predictlczmap -- MODEL="$d/run/model.safetensors" "${embeddings[@]}" \
    OUTPUT="$d/predicted_lcz.tif" CONFIDENCE="$d/predicted_confidence.tif"
run lcz:importlczmap -- INPUT="$d/synthetic_reference_100m.tif" OUTPUT="$d/reference_lcz.tif"
run lcz:comparelczmaps -- INPUT="$d/predicted_lcz.tif" REFERENCE="$d/reference_lcz.tif" \
    REFERENCE_OUTPUT="$d/reference_clipped.tif" OUTPUT="$d/agreement.json" CONFUSION_PNG="$d/agreement_confusion.png"
run lcz:plotlczmap -- INPUT="$d/predicted_lcz.tif" TITLE="Synthetica (synthetic): predicted LCZ, 100 m" \
    OUTPUT="$d/predicted_lcz.png"
run lcz:plotlczmap -- INPUT="$d/reference_lcz.tif" TITLE="Synthetica (synthetic): reference LCZ map, 100 m" \
    OUTPUT="$d/reference_lcz.png"
run lcz:embeddingrgb -- "${embeddings[@]}" OUTPUT="$d/embeddings_rgb.tif" PNG="$d/embeddings_rgb.png"
run lcz:pixoo64 -- "${embeddings[@]}" CENTER="$centre" SIZE_M=1280 OUTPUT="$d/pixoo64.png" \
    DRY_RUN="$d/pixoo64_payload.json"
# an experiment on a smaller copy of the city: clean against noisy embeddings, both models
"$py" -m lcz_core demo --output "$d/experiment_city" --size 320 --demo-experiment true > /dev/null
run lcz:runexperiment -- CONFIG="$d/experiment_city/experiment/experiment.toml" \
    OUTPUT="$d/experiment_report"
echo
echo "Demo outputs in $d:"
( cd "$d" && ls -1d dataset run/* evaluation/* experiment_report/report.* ./*.tif ./*.png ./*.json \
    ./*.gpkg | sed 's/^\.\///' )
