"""One module per algorithm; ALGORITHMS lists what the provider offers."""

from .compare_lcz_maps import CompareLczMaps
from .import_lcz_map import ImportLczMap
from .plot_lcz_map import PlotLczMap

ALGORITHMS = [ImportLczMap, PlotLczMap, CompareLczMaps]
