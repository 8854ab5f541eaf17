"""Remote sources: https:// and s3:// URLs, read anonymously, lazily and with timeouts.

One client serves every remote read that is not a GeoTIFF: fsspec's HTTP filesystem (aiohttp),
which zarr wraps as its `FsspecStore` and which reads byte ranges of `.npy` tiles and small
files (an index, a metadata sidecar). GeoTIFFs and COGs go through GDAL's `/vsicurl/`, which
fetches only the blocks a window needs. An `s3://bucket/key` URL is read as the anonymous HTTPS
address of the object (path style: `$AWS_ENDPOINT_URL` or https://s3.<$AWS_REGION>.amazonaws.com,
default region us-east-1), so public buckets need no S3 client and no credentials.

Every request has a timeout (`LCZ_HTTP_TIMEOUT` seconds, default 30): a server that does not
answer fails the step with an `LczError` naming the URL, never a hang.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import LczError

URL_PATTERN = re.compile(r"^(https?|s3)://", re.IGNORECASE)


def timeout() -> float:
    """Seconds a remote read may wait for an answer (`LCZ_HTTP_TIMEOUT`, default 30)."""
    return float(os.environ.get("LCZ_HTTP_TIMEOUT", "30"))


def is_url(path: Any) -> bool:
    """True for an https://, http:// or s3:// address."""
    return isinstance(path, str) and bool(URL_PATTERN.match(path))


def http_url(url: str) -> str:
    """The HTTP(S) address of `url`: s3://bucket/key becomes the bucket's path-style address."""
    if not url.lower().startswith("s3://"):
        return url
    bucket, _, key = url[5:].partition("/")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        endpoint = f"https://s3.{region or 'us-east-1'}.amazonaws.com"
    return f"{endpoint.rstrip('/')}/{bucket}/{key}"


def join(base: str | os.PathLike, *parts: str) -> str | Path:
    """`base` (a URL or a path) joined with relative `parts`."""
    if is_url(base):
        return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(base).joinpath(*parts)


def parent(location: str | os.PathLike) -> str | Path:
    """The folder holding `location` (a URL or a path)."""
    if is_url(location):
        return str(location).rstrip("/").rsplit("/", 1)[0]
    return Path(location).parent


def gdal_options() -> dict[str, str]:
    """GDAL's configuration for /vsicurl/ reads: the timeout, two retries a second apart (GDAL's
    default waits 30 s before a retry), no directory listing, anonymous S3."""
    seconds = str(max(1, round(timeout())))  # 0 would mean no timeout at all
    return {
        "GDAL_HTTP_TIMEOUT": seconds,
        "GDAL_HTTP_CONNECTTIMEOUT": seconds,
        "GDAL_HTTP_MAX_RETRY": "2",
        "GDAL_HTTP_RETRY_DELAY": "1",
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "AWS_NO_SIGN_REQUEST": "YES",
    }


def gdal_path(path: str | os.PathLike) -> str:
    """The name GDAL opens `path` by: URLs through /vsicurl/ (`gdal_options` set once for the
    process), other paths as they are."""
    if not is_url(path):
        return str(path)
    for key, value in gdal_options().items():
        os.environ.setdefault(key, value)  # GDAL reads its configuration from the environment
    return f"/vsicurl/{http_url(str(path))}"


@lru_cache(maxsize=1)
def _filesystem(seconds: float):
    import aiohttp
    import fsspec

    limits = aiohttp.ClientTimeout(
        total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
    )
    return fsspec.filesystem("http", client_kwargs={"timeout": limits}, skip_instance_cache=True)


def filesystem():
    """The fsspec HTTP filesystem every remote read shares (timeouts set)."""
    try:
        return _filesystem(timeout())
    except ImportError as error:
        raise LczError(
            "embeddings",
            f"reading URLs needs fsspec and aiohttp ({error}); pip install fsspec aiohttp",
        ) from None


def remote_error(url: str, error: BaseException, parameter: str) -> LczError:
    """An LczError naming `url` for a failed remote read."""
    import asyncio

    if isinstance(error, FileNotFoundError):
        return LczError(parameter, f"{url} was not found (404)")
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)):
        return LczError(parameter, f"{url} did not answer within {timeout():g} s; try again later")
    return LczError(parameter, f"reading {url} failed: {type(error).__name__}: {error}")


def read_bytes(url: str, parameter: str, start: int | None = None, end: int | None = None) -> bytes:
    """The bytes of `url` (or of the range start:end)."""
    try:
        return filesystem().cat_file(http_url(url), start=start, end=end)
    except LczError:
        raise
    except Exception as error:  # aiohttp and fsspec raise many types
        raise remote_error(url, error, parameter) from None


def exists(url: str, parameter: str) -> bool:
    """True if `url` answers with a file, False if it answers 404."""
    try:
        filesystem().info(http_url(url))
        return True
    except FileNotFoundError:
        return False
    except LczError:
        raise
    except Exception as error:
        raise remote_error(url, error, parameter) from None


def zarr_store(url: str):
    """A read-only zarr store over `url` that fetches only the chunks (and shard ranges) read."""
    import aiohttp
    from zarr.storage import FsspecStore

    seconds = timeout()
    limits = aiohttp.ClientTimeout(
        total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
    )
    # zarr runs its own event loop: the filesystem is made for it, not shared with `filesystem`
    options = {"client_kwargs": {"timeout": limits}, "skip_instance_cache": True}
    return FsspecStore.from_url(http_url(url).rstrip("/"), storage_options=options, read_only=True)


class RemoteNpy:
    """A C-ordered .npy array at a URL: reading rows fetches only their bytes."""

    def __init__(self, url: str, parameter: str = "embeddings") -> None:
        import io

        import numpy as np

        self.url, self.parameter = url, parameter
        head = read_bytes(url, parameter, 0, 4096)
        stream = io.BytesIO(head)
        try:
            version = np.lib.format.read_magic(stream)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = header(stream)
        except ValueError as error:
            raise LczError(parameter, f"{url} is not a .npy file: {error}") from None
        if fortran:
            raise LczError(parameter, f"{url}: Fortran-ordered .npy files are not supported")
        self.shape, self.dtype, self.offset = tuple(shape), np.dtype(dtype), stream.tell()
        self.ndim = len(self.shape)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __getitem__(self, key: tuple[slice, slice]):
        """array[rows, cols] for slices with step 1: one range request for the rows."""
        import numpy as np

        rows, cols = key
        r0, r1, _ = rows.indices(self.shape[0])
        if r1 <= r0:
            return np.empty((0, *self.shape[1:]), self.dtype)[:, cols]
        start = self.offset + r0 * self._row_bytes
        data = read_bytes(self.url, self.parameter, start, start + (r1 - r0) * self._row_bytes)
        return np.frombuffer(data, self.dtype).reshape(r1 - r0, *self.shape[1:])[:, cols]
