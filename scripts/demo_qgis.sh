#!/usr/bin/env bash
# The demo's QGIS half: import and plot the synthetic city's reference map through qgis_process,
# with the plugin loaded from this checkout in a throwaway QGIS profile.
set -euo pipefail
demo_dir=$(realpath "$1")
repo=$(realpath "$(dirname "$0")/..")
export HOME="$demo_dir/qgis_home" QGIS_PLUGINPATH="$repo" QT_QPA_PLATFORM=offscreen
mkdir -p "$HOME"
qgis() { /usr/bin/qgis_process.bin "$@" 2> >(grep -v -e XDG_RUNTIME_DIR -e 'setapi() is deprecated' >&2); }
qgis plugins enable lcz_qgis > /dev/null
echo "== lcz:importlczmap (reference map -> styled LCZ GeoTIFF)"
qgis run lcz:importlczmap -- \
    INPUT="$demo_dir/synthetic_reference_100m.tif" OUTPUT="$demo_dir/reference_lcz.tif"
echo "== lcz:plotlczmap"
qgis run lcz:plotlczmap -- \
    INPUT="$demo_dir/reference_lcz.tif" TITLE="Synthetica (synthetic) reference LCZ map, 100 m" \
    OUTPUT="$demo_dir/reference_lcz.png"
qgis run lcz:plotlczmap -- \
    INPUT="$demo_dir/synthetic_lcz_labels_10m.tif" TITLE="Synthetica (synthetic) LCZ labels, 10 m" \
    OUTPUT="$demo_dir/labels_lcz.png"
echo
echo "Demo outputs in $demo_dir:"
ls -1 "$demo_dir"/*.tif "$demo_dir"/*.png "$demo_dir"/*.qml
