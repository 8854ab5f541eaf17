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
run lcz:samplepatches -- EMBEDDINGS="$d/synthetic_embeddings.tif" LABELS="$d/synthetic_lcz_labels_10m.tif" \
    OUTPUT="$d/dataset" GRID_OUTPUT="$d/sampled_cells.gpkg"
run lcz:trainpatchclassifier -- DATASET="$d/dataset" EPOCHS=15 OVERWRITE=true OUTPUT="$d/run"
run lcz:evaluatemodel -- MODEL="$d/run/model.safetensors" DATASET="$d/dataset" OUTPUT="$d/evaluation"
run lcz:predictlczmap -- MODEL="$d/run/model.safetensors" EMBEDDINGS="$d/synthetic_embeddings.tif" \
    OUTPUT="$d/predicted_lcz.tif" CONFIDENCE="$d/predicted_confidence.tif"
run lcz:importlczmap -- INPUT="$d/synthetic_reference_100m.tif" OUTPUT="$d/reference_lcz.tif"
run lcz:comparelczmaps -- INPUT="$d/predicted_lcz.tif" REFERENCE="$d/reference_lcz.tif" \
    REFERENCE_OUTPUT="$d/reference_clipped.tif" OUTPUT="$d/agreement.json" CONFUSION_PNG="$d/agreement_confusion.png"
run lcz:plotlczmap -- INPUT="$d/predicted_lcz.tif" TITLE="Synthetica (synthetic): predicted LCZ, 100 m" \
    OUTPUT="$d/predicted_lcz.png"
run lcz:plotlczmap -- INPUT="$d/reference_lcz.tif" TITLE="Synthetica (synthetic): reference LCZ map, 100 m" \
    OUTPUT="$d/reference_lcz.png"
echo
echo "Demo outputs in $d:"
( cd "$d" && ls -1d dataset run/* evaluation/* ./*.tif ./*.png ./*.json ./*.gpkg | sed 's/^\.\///' )
