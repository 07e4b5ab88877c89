"""A finished job's outputs, whatever their shape, kept before they expire.

Providers give outputs as a URL, a list of URLs, an object of URLs
(``{"image": url}``, fal's ``{"images": [{"url": ...}]}``), a list of such
objects, or ``data:`` URIs (small outputs, ``Prefer: wait`` results, fal's
``sync_mode``). ``collect`` finds them all, in order; ``keep`` stores each:
URLs are downloaded (``downloads``; tried three times when the host is
failing), data URIs decoded, every file checked from its bytes. When one
cannot be kept, the error says where the provider still holds it and for
how long, and carries the provider's URLs in its ``details``.
"""

import base64
import time
from pathlib import Path
from urllib.parse import unquote_to_bytes

from .. import media
from ..errors import ProviderError, human_size
from .downloads import check_image, check_kind, download
from .errors import annotate, cut, setting

SCHEMES = ("http://", "https://", "data:")
DOWNLOAD_ATTEMPTS = 3


def collect(output) -> list[str]:
    """Every URL or data URI in ``output`` (a string, a list, an object, nested)."""
    if isinstance(output, str):
        return [output] if output.startswith(SCHEMES) else []
    if isinstance(output, (list, tuple)):
        return [url for item in output for url in collect(item)]
    if isinstance(output, dict):  # a file object ({"url", "content_type"...}), or outputs by name
        if isinstance(output.get("url"), str):
            return collect(output["url"])
        return [url for value in output.values() for url in collect(value)]
    return []


def keep(urls: list[str], store, config, kind: str, kept_for: str, deadline=None) -> list:
    """The outputs at ``urls`` as files (temp paths or bytes), all or none, all
    downloaded within ``deadline`` (the operation's; by default the kind's)."""
    files, url = [], None
    try:
        for url in urls:
            files.append(decode(url, config, kind) if url.startswith("data:")
                         else _download(url, store, config, kind, deadline))
    except ProviderError as e:
        for item in files:
            if isinstance(item, Path):
                item.unlink(missing_ok=True)
        if not url.startswith("data:"):
            e.message = cut(f"{e.message}; the provider keeps it at {url} for {kept_for}")
        raise annotate(e, {"resultUrls": shown(urls), "resultKeptFor": kept_for}) from None
    return files


def _download(url: str, store, config, kind: str, deadline=None):
    """``download``, tried again (with backoff) after a passing failure."""
    for attempt in range(DOWNLOAD_ATTEMPTS):
        try:
            return download(url, store, config, kind, deadline=deadline)
        except ProviderError as e:
            if not getattr(e, "passing", False) or attempt + 1 == DOWNLOAD_ATTEMPTS:
                raise
            time.sleep(setting(config, "PROVIDER_RETRY_BACKOFF") * 2 ** attempt)


def data_bytes(uri: str) -> bytes:
    """The bytes a ``data:`` URI holds (base64 or percent-encoded)."""
    head, _, payload = uri.partition(",")
    try:
        return base64.b64decode(payload, validate=False) if head.endswith(";base64") \
            else unquote_to_bytes(payload)
    except ValueError:
        raise ProviderError("An inline data: URI is not valid base64") from None


def decode(uri: str, config, kind: str) -> bytes:
    """The bytes of a ``data:`` URI result, checked like a download."""
    data = data_bytes(uri)
    limit = config["MAX_RESULT_BYTES"]
    if len(data) > limit:
        raise ProviderError(f"The result is {human_size(len(data))}, over the limit of "
                            f"{human_size(limit)} (MAX_RESULT_BYTES)")
    check_kind(media.sniff(data[:16])[1], kind)
    if media.sniff(data[:16])[1].startswith("image/"):
        check_image(data)
    return data


def shown(urls: list[str]) -> list[str]:
    """The URLs a record keeps: links, not inline data (kept as files instead)."""
    return [u for u in urls if not u.startswith("data:")]
