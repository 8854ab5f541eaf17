"""The 64 x 64 screen: cells from LCZ maps and embeddings, the PNG, and the Pixoo-64 HTTP protocol."""

from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import rasterio
from matplotlib.image import imread
from rasterio.warp import transform as transform_points

from lcz_core.errors import LczError
from lcz_core.pictures import embedding_rgb
from lcz_core.pixoo import PNG_SCALE, lcz_palette, pixoo64

CENTER = (382_400.0, 5_822_600.0)  # a pixel corner of the demo city (EPSG:32633)


def screen(path) -> np.ndarray:
    """The 64 x 64 x 3 uint8 cells of a screen PNG (one pixel of each scaled-up cell)."""
    image = np.rint(imread(path)[..., :3] * 255).astype(np.uint8)
    assert image.shape == (64 * PNG_SCALE, 64 * PNG_SCALE, 3)
    cells = image[::PNG_SCALE, ::PNG_SCALE]
    assert np.array_equal(np.repeat(np.repeat(cells, PNG_SCALE, 0), PNG_SCALE, 1), image)
    return cells


def grid_origin(demo_city, size_m: float) -> tuple[int, int]:
    """(row, col) of the demo pixel at the top-left of the screen of `size_m` around CENTER."""
    with rasterio.open(demo_city.labels) as dataset:
        col, row = ~dataset.transform * (CENTER[0] - size_m / 2, CENTER[1] + size_m / 2)
    return round(row), round(col)


@pytest.fixture(scope="module")
def labels(demo_city) -> np.ndarray:
    """The demo city's 10 m LCZ codes."""
    with rasterio.open(demo_city.labels) as dataset:
        return dataset.read(1)


def test_lcz_map_at_10_m_shows_each_pixel(demo_city, labels, tmp_path):
    result = pixoo64(tmp_path / "lcz.png", lcz_map=demo_city.labels, center=CENTER)
    row, col = grid_origin(demo_city, 640)
    expected = lcz_palette()[labels[row : row + 64, col : col + 64]]
    assert np.array_equal(screen(result["output"]), expected)
    assert result["cell_size_m"] == 10 and result["samples_per_cell"] == 1
    assert result["crs"] == "EPSG:32633" and result["cells_with_data"] == 64 * 64


def test_larger_area_takes_each_cells_most_frequent_class(demo_city, labels, tmp_path):
    lon, lat = (v[0] for v in transform_points("EPSG:32633", "EPSG:4326", *zip(CENTER)))
    result = pixoo64(
        tmp_path / "lcz.png",
        lcz_map=demo_city.labels,
        center=(lon, lat),
        center_crs="EPSG:4326",
        size_m=3200,
    )
    assert result["cell_size_m"] == 50 and result["samples_per_cell"] == 25
    row, col = grid_origin(demo_city, 3200)
    blocks = labels[row : row + 320, col : col + 320].reshape(64, 5, 64, 5).transpose(0, 2, 1, 3)
    counts = np.apply_along_axis(np.bincount, 2, blocks.reshape(64, 64, 25), minlength=18)
    mode = counts.argmax(axis=2)  # ties: the lower code
    assert np.array_equal(screen(result["output"]), lcz_palette()[mode])
    present = {c for c in np.unique(mode)}
    assert len(result["classes"]) == len(present)


def test_lcz_map_in_degrees_is_shown_on_the_utm_grid(demo_city, labels, tmp_path):
    from rasterio.vrt import WarpedVRT

    with rasterio.open(demo_city.labels) as src, WarpedVRT(src, crs="EPSG:4326") as vrt:
        profile = {**src.profile, "crs": vrt.crs, "transform": vrt.transform}
        profile.update(width=vrt.width, height=vrt.height, tiled=False)
        profile = {k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize")}
        with rasterio.open(tmp_path / "lonlat.tif", "w", **profile) as dst:
            dst.write(vrt.read())
    result = pixoo64(
        tmp_path / "lcz.png",
        lcz_map=tmp_path / "lonlat.tif",
        center=CENTER,
        center_crs="EPSG:32633",
        size_m=1280,
    )
    assert result["crs"] == "EPSG:32633" and result["center"] == pytest.approx(CENTER, abs=0.01)
    row, col = grid_origin(demo_city, 1280)
    truth = labels[row : row + 128 : 2, col : col + 128 : 2]
    agree = (screen(result["output"]) == lcz_palette()[truth]).all(axis=2)
    assert agree.mean() > 0.8  # warped twice (nearest), class edges move


def test_embeddings_screen_is_the_rgb_picture_of_the_same_square(demo_city, tmp_path):
    # the screen and embedding_rgb over the same square fit the same PCA on the same pixels
    for size_m, k in ((640, 1), (1280, 2)):
        result = pixoo64(
            tmp_path / "emb.png", embeddings=demo_city.embeddings_tif, center=CENTER, size_m=size_m
        )
        half = size_m / 2
        extent = (CENTER[0] - half, CENTER[1] - half, CENTER[0] + half, CENTER[1] + half)
        rgb = embedding_rgb(demo_city.embeddings_tif, tmp_path / "rgb.tif", extent=extent)
        assert result["explained_variance"] == rgb["explained_variance"]
        with rasterio.open(rgb["output"]) as dataset:
            rgba = dataset.read().astype(np.float64)
        valid = (rgba[3] > 0).reshape(64, k, 64, k)
        sums = (rgba[:3] * (rgba[3] > 0)).reshape(3, 64, k, 64, k).sum(axis=(2, 4))
        counts = valid.sum(axis=(1, 3))
        cells = screen(result["output"]).astype(np.int16)
        assert result["cells_with_data"] == int((counts > 0).sum())
        assert np.all(cells[counts == 0] == 0)  # no data: black
        mean = np.moveaxis(sums / np.maximum(counts, 1), 0, 2)
        # the screen averages unrounded colours; the GeoTIFF holds rounded ones
        assert np.abs(cells - mean)[counts > 0].max() <= (0 if k == 1 else 1)
        if k == 1:
            assert counts.min() == 0  # the square holds missing pixels


class PixooServer:
    """A Pixoo-64 stand-in on 127.0.0.1: records the JSON posted to /post, answers error_code."""

    def __init__(self, error_code: int = 0) -> None:
        self.requests: list[tuple[str, bytes]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.requests.append((self.path, body))
                reply = json.dumps({"error_code": error_code}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PixooServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_draw_command(command: dict, cells: np.ndarray) -> None:
    """The Draw/SendHttpGif command carries the 64 x 64 x 3 cells, row-major from the top-left."""
    assert {k: v for k, v in command.items() if k != "PicData"} == {
        "Command": "Draw/SendHttpGif",
        "PicNum": 1,
        "PicWidth": 64,
        "PicOffset": 0,
        "PicID": 1,
        "PicSpeed": 1000,
    }
    assert len(command["PicData"]) == 16384
    data = base64.b64decode(command["PicData"], validate=True)
    assert len(data) == 12288 and data == cells.tobytes()
    assert data[:3] == bytes(cells[0, 0]) and data[3:6] == bytes(cells[0, 1])
    assert data[64 * 3 : 64 * 3 + 3] == bytes(cells[1, 0])


def test_picture_sent_to_the_device(demo_city, tmp_path):
    with PixooServer() as pixoo:
        result = pixoo64(
            tmp_path / "lcz.png", lcz_map=demo_city.labels, center=CENTER, device=pixoo.address
        )
    assert result["device"] == f"http://{pixoo.address}/post"
    assert [path for path, _ in pixoo.requests] == ["/post", "/post"]
    assert json.loads(pixoo.requests[0][1]) == {"Command": "Draw/ResetHttpGifId"}
    check_draw_command(json.loads(pixoo.requests[1][1]), screen(result["output"]))


def test_dry_run_writes_the_payload_and_sends_nothing(demo_city, tmp_path):
    with PixooServer() as pixoo:
        result = pixoo64(
            tmp_path / "emb.png",
            embeddings=demo_city.embeddings_zarr,
            center=CENTER,
            device=pixoo.address,
            dry_run=tmp_path / "payload.json",
        )
    assert pixoo.requests == [] and result["device"] is None
    with open(result["payload"]) as payload:
        check_draw_command(json.load(payload), screen(result["output"]))


def test_device_that_refuses_or_does_not_answer(demo_city, tmp_path):
    def send(device, timeout=5.0):
        with pytest.raises(LczError) as error:
            pixoo64(
                tmp_path / "lcz.png",
                lcz_map=demo_city.labels,
                center=CENTER,
                device=device,
                timeout=timeout,
            )
        assert error.value.parameter == "device"
        return error.value.message

    with PixooServer(error_code=1) as pixoo:
        assert "error_code 1" in send(pixoo.address)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert "did not answer" in send(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert "cannot reach" in send(f"127.0.0.1:{port}")
    assert "HOST:PORT" in send("192.168.1.20:port")


def test_user_errors_name_the_parameter(demo_city, tmp_path, write_raster):
    values = np.full((3, 40, 40), np.nan, np.float32)
    values[:, :, 0] = 1.0
    sparse = write_raster(tmp_path / "sparse.tif", values)  # 100 m pixels, data in column 0
    with rasterio.open(sparse) as dataset:
        middle = ((dataset.bounds.left + dataset.bounds.right) / 2, dataset.bounds.top - 2000)
    codes = np.full((10, 10), 42, np.uint8)
    not_lcz = write_raster(tmp_path / "not_lcz.tif", codes, pixel=10.0, origin=CENTER)
    cases = [
        ({"lcz_map": demo_city.labels, "center": (0.0, 0.0)}, "center", "outside"),
        ({"embeddings": sparse, "center": middle}, "center", "no data"),
        ({"lcz_map": demo_city.labels, "center": CENTER, "size_m": 0}, "size_m", "positive"),
        ({"lcz_map": demo_city.labels, "center": CENTER, "size_m": 2e5}, "size_m", "at most"),
        ({"lcz_map": not_lcz, "center": (CENTER[0] + 50, CENTER[1] - 50)}, "lcz_map", "42"),
        (
            {"lcz_map": demo_city.labels, "embeddings": sparse, "center": CENTER},
            "embeddings",
            "either",
        ),
    ]
    for kwargs, parameter, words in cases:
        with pytest.raises(LczError) as error:
            pixoo64(tmp_path / "out.png", **kwargs)
        assert error.value.parameter == parameter and words in error.value.message
    assert not (tmp_path / "out.png").exists()


def test_real_lcz_map_in_degrees_sampled_at_the_cell_centres(real_data, tmp_path):
    path = real_data / "zaragoza" / "lcz_zaragoza.tif"
    with rasterio.open(path) as dataset:
        b = dataset.bounds
        center = ((b.left + b.right) / 2, (b.bottom + b.top) / 2)
        result = pixoo64(tmp_path / "zaragoza.png", lcz_map=path, center=center)
        assert result["crs"] == "EPSG:32630"  # the UTM zone of Zaragoza
        grid_x, grid_y = result["center"]
        offsets = (np.arange(64) - 31.5) * result["cell_size_m"]
        xs, ys = np.meshgrid(grid_x + offsets, grid_y - offsets)
        lons, lats = transform_points("EPSG:32630", dataset.crs, xs.ravel(), ys.ravel())
        values = np.array([v[0] for v in dataset.sample(zip(lons, lats, strict=True))])
    expected = lcz_palette()[np.where(values > 0, values, 0).reshape(64, 64)]
    agree = (screen(result["output"]) == expected).all(axis=2)
    assert agree.mean() > 0.99  # a cell centre on a pixel edge may round either way


def test_picture_steps_from_the_command_line(demo_city, tmp_path, capsys):
    import json as json_module

    from lcz_core.cli import main

    embeddings = str(demo_city.embeddings_tif)
    assert main(["embedding-rgb", "--embeddings", embeddings, "--output", str(tmp_path / "rgb.tif"),
                 "--png", str(tmp_path / "rgb.png")]) == 0  # fmt: skip
    result = json_module.loads(capsys.readouterr().out)
    assert len(result["explained_variance"]) == 3 and (tmp_path / "rgb.png").is_file()
    with rasterio.open(demo_city.embeddings_tif) as src:
        x, y = src.xy(src.height // 2, src.width // 2)
    assert main(["pixoo64", "--embeddings", embeddings, f"--center={x},{y}",
                 "--output", str(tmp_path / "s.png"), "--dry-run", str(tmp_path / "p.json")]) == 0  # fmt: skip
    payload = json_module.loads((tmp_path / "p.json").read_text())
    assert len(payload["PicData"]) == 16_384
