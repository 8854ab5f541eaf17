"""Extents and their CRSs: the UTM zone of a place, an extent carried into another CRS."""

from __future__ import annotations

from rasterio.crs import CRS

from .errors import LczError

Bounds = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS84 UTM zone CRS ('EPSG:326NN' north, 'EPSG:327NN' south) holding lon/lat."""
    if not (-180 <= lon <= 180 and -80 <= lat <= 84):
        raise LczError("extent", f"lon {lon}, lat {lat} is outside the UTM zones (lat -80 to 84)")
    zone = min(int((lon + 180) // 6) + 1, 60)
    if 56 <= lat < 64 and 3 <= lon < 12:  # southern Norway
        zone = 32
    if 72 <= lat < 84 and 0 <= lon < 42:  # Svalbard
        zone = 31 if lon < 9 else 33 if lon < 21 else 35 if lon < 33 else 37
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def reproject_extent(extent: Bounds, src_crs: str | CRS, dst_crs: str | CRS) -> Bounds:
    """The box in `dst_crs` covering `extent` given in `src_crs` (edges densified)."""
    from rasterio.errors import CRSError
    from rasterio.warp import transform_bounds

    try:
        src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    except CRSError as error:
        raise LczError(
            "extent_crs", f"{src_crs!r} is not a CRS ({error}); e.g. EPSG:4326"
        ) from None
    west, south, east, north = extent
    if src.is_geographic and not (-180 <= west and east <= 180 and -90 <= south and north <= 90):
        raise LczError(
            "extent",
            f"({', '.join(f'{v:.6g}' for v in extent)}) is not lon/lat (-180 to 180, -90 to 90) "
            f"but its CRS {src.to_string()} is geographic; give the extent's CRS",
        )
    if src == dst:
        return tuple(float(v) for v in extent)  # type: ignore[return-value]
    return tuple(transform_bounds(src, dst, *extent, densify_pts=21))  # type: ignore[return-value]


def extent_to_utm(extent: Bounds, extent_crs: str | CRS) -> tuple[Bounds, str]:
    """Reproject an extent to the UTM zone of its centre: (box in UTM, 'EPSG:...')."""
    lonlat = reproject_extent(extent, extent_crs, "EPSG:4326")
    crs = utm_crs_for((lonlat[0] + lonlat[2]) / 2, (lonlat[1] + lonlat[3]) / 2)
    return reproject_extent(extent, extent_crs, crs), crs
