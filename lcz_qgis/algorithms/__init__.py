"""One module per algorithm; ALGORITHMS lists what the provider offers."""

from .compare_lcz_maps import CompareLczMaps
from .create_grid import CreateGrid
from .import_lcz_map import ImportLczMap
from .plot_lcz_map import PlotLczMap
from .rasterize_labels import RasterizeLabels
from .sample_patches import SamplePatches

ALGORITHMS = [ImportLczMap, PlotLczMap, CompareLczMaps, CreateGrid, SamplePatches, RasterizeLabels]
