"""LCZ map plots: layout whatever the map's shape, degrees drawn to scale, the user's backend left alone."""

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
from affine import Affine

from lcz_core.plot import new_figure, plot_lcz, save_lcz_plot

UTM = Affine(100, 0, 316_570, 0, -100, 3_503_450)


def _all_classes(height, width):
    """A map holding each of the 17 classes in bands across it."""
    rows, cols = np.indices((height, width))
    return ((rows * 7 // height * 3 + cols * 6 // width) % 17 + 1).astype(np.uint8)


def _inside(inner, outer, tolerance=1.0):
    return (
        inner.x0 >= outer.x0 - tolerance
        and inner.y0 >= outer.y0 - tolerance
        and inner.x1 <= outer.x1 + tolerance
        and inner.y1 <= outer.y1 + tolerance
    )


@pytest.mark.parametrize(
    ("shape", "transform", "metric", "below"),
    [
        ((300, 300), UTM, True, False),  # square
        ((600, 40), UTM, True, False),  # tall and narrow
        ((40, 600), UTM, True, True),  # wide: the legend goes below, in columns
        ((300, 300), Affine(0.001, 0, 10, 0, -0.001, 60.3), False, False),  # degrees at 60 N
        ((50, 80), None, True, False),  # no georeference: pixels
    ],
)
def test_a_long_legend_never_overflows_the_figure(shape, transform, metric, below, tmp_path):
    options = {"transform": transform, "metric": metric, "title": "a title"}
    figure = plot_lcz(_all_classes(*shape), **options)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (legend,) = figure.legends
    assert len(legend.get_texts()) == 17
    box, page = legend.get_window_extent(renderer), figure.bbox
    ax = figure.axes[0]
    decorated = ax.get_tightbbox(renderer)  # the map with its ticks, labels and title
    assert _inside(box, page) and _inside(decorated, page)
    assert not box.overlaps(decorated)
    assert (box.y1 <= decorated.y0) if below else (box.x0 >= decorated.x1)
    # the map takes a fair share of the page rather than a corner of it
    assert ax.get_window_extent(renderer).width * ax.get_window_extent(renderer).height > (
        0.08 * page.width * page.height
    )
    path = save_lcz_plot(_all_classes(*shape), tmp_path / "map.png", **options)
    saved = matplotlib.image.imread(path).shape[:2]
    assert np.allclose(saved, (page.height, page.width), atol=1)  # the PNG is that page


def test_degrees_are_drawn_with_the_latitude_s_aspect_and_a_true_scale_bar():
    import pyproj
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    # 0.2 x 0.2 degrees at 60 N: half as wide as tall on the ground
    figure = plot_lcz(
        _all_classes(100, 100), transform=Affine(0.002, 0, 10, 0, -0.002, 60.2), metric=False
    )
    figure.canvas.draw()
    ax = figure.axes[0]
    box = ax.get_window_extent(figure.canvas.get_renderer())
    assert box.width / box.height == pytest.approx(np.cos(np.radians(60.1)), rel=0.02)
    assert ax.get_xlabel() == "longitude (°)"
    (bar,) = [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]
    label = bar.txt_label.get_children()[0].get_text()
    degrees = bar.size_bar.get_children()[0].get_width()
    _, _, metres = pyproj.Geod(ellps="WGS84").inv(10, 60.1, 10 + degrees, 60.1)
    assert label == "2 km" and metres == pytest.approx(2000, rel=1e-3)


def test_a_metric_map_has_a_scale_bar_in_metres():
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    figure = plot_lcz(_all_classes(30, 40), transform=Affine(10, 0, 5e5, 0, -10, 4e6))
    (bar,) = [a for a in figure.axes[0].artists if isinstance(a, AnchoredSizeBar)]
    assert bar.txt_label.get_children()[0].get_text() == "50 m"
    assert bar.size_bar.get_children()[0].get_width() == 50


def test_drawing_into_the_caller_s_axes_keeps_the_caller_s_figure():
    figure = new_figure(10, 4)
    left, right = figure.subplots(1, 2)
    assert plot_lcz(_all_classes(30, 30), ax=right) is figure
    assert tuple(figure.get_size_inches()) == (10, 4) and right.get_legend() is not None
    assert left.get_legend() is None and not figure.legends


def test_library_plots_leave_pyplot_and_the_user_s_backend_alone(tmp_path):
    script = f"""
import sys
import matplotlib
matplotlib.use("svg")  # the user's choice
import numpy as np
from lcz_core.plot import save_lcz_plot
from lcz_core.train import plot_curves
save_lcz_plot(np.ones((20, 30), np.uint8), {str(tmp_path / "map.png")!r})
rows = [dict(epoch=e, train_loss=1 / e, val_loss=1.2 / e, val_oa=0.5, val_macro_f1=0.4) for e in (1, 2)]
plot_curves(rows, {str(tmp_path / "curves.png")!r})
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert (tmp_path / "curves.png").stat().st_size > 1000
