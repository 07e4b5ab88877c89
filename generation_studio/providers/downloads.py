"""Fetching a provider's result safely, before its URL expires.

Only URLs on the provider's own file hosts are fetched (``ALLOWED_RESULT_ORIGINS``:
``scheme://host[:port]``, ``*.`` for subdomains), so that a provider's answer
cannot make the server fetch an internal address; redirects are followed by
hand, each hop checked the same way. The API token is never sent (a plain
session). The body is streamed to a temp file in the storage folder, capped at
``MAX_RESULT_BYTES``, and its type is checked from its bytes.
"""

from urllib.parse import urljoin, urlsplit

import requests

from .. import media
from ..errors import ProviderError, human_size

MAX_REDIRECTS = 5
CHUNK = 1 << 16


def origin_allowed(url: str, allowed) -> bool:
    """True when ``url``'s origin matches one of ``allowed``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for pattern in allowed:
        want = urlsplit(pattern)
        want_port = want.port or (443 if want.scheme == "https" else 80)
        host = (want.hostname or "").lower()
        if want.scheme != parts.scheme or want_port != port:
            continue
        if host.startswith("*.") and parts.hostname.lower().endswith(host[1:]):
            return True
        if parts.hostname.lower() == host:
            return True
    return False


def download(url: str, store, config, kind: str, session=None):
    """Stream ``url`` into a temp file of ``store``; return its path.

    ``kind`` is what the operation makes ("image" or "video"); anything else
    (an HTML error page, say) is refused.
    """
    allowed = config["ALLOWED_RESULT_ORIGINS"]
    limit = config["MAX_RESULT_BYTES"]
    session = session or requests.Session()
    for _ in range(MAX_REDIRECTS + 1):
        if not origin_allowed(url, allowed):
            raise ProviderError(f"The provider's result is at {_origin(url)}, which is not in "
                                "ALLOWED_RESULT_ORIGINS; it was not fetched")
        try:
            response = session.get(url, stream=True, allow_redirects=False,
                                   timeout=config["PROVIDER_HTTP_TIMEOUT"])
        except requests.RequestException as e:
            raise _passing(ProviderError(f"The result could not be downloaded "
                                         f"({type(e).__name__})")) from None
        if response.is_redirect:
            url = urljoin(url, response.headers.get("Location", ""))
            response.close()
            continue
        with response:
            if response.status_code != 200:
                error = ProviderError(f"The result could not be downloaded: its host answered "
                                      f"{response.status_code}")
                raise _passing(error) if response.status_code in (429, 500, 502, 503, 504) \
                    else error
            return _stream_to_file(response, store, limit, kind)
    raise ProviderError(f"The result's URL redirected more than {MAX_REDIRECTS} times")


def _passing(error: ProviderError) -> ProviderError:
    """Mark ``error`` as one worth another try (the host's outage, not the file's fault)."""
    error.passing = True
    return error


def _stream_to_file(response, store, limit: int, kind: str):
    declared = int(response.headers.get("Content-Length") or 0)
    if declared > limit:
        raise ProviderError(f"The result is {human_size(declared)}, over the limit of "
                            f"{human_size(limit)} (MAX_RESULT_BYTES)")
    path = store.temp_file()
    try:
        size = 0
        with path.open("wb") as f:
            for chunk in response.iter_content(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ProviderError(f"The result is over the limit of {human_size(limit)} "
                                        "(MAX_RESULT_BYTES); the download was stopped")
                f.write(chunk)
        check_kind(media.sniff(media.head(path))[1], kind)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def check_kind(mime: str, kind: str) -> None:
    """Refuse a result whose bytes are not what the operation makes."""
    ok = mime.startswith("image/") or (kind == "video" and mime.startswith("video/"))
    if not ok:
        raise ProviderError(f"The result is not {'a video' if kind == 'video' else 'an image'} "
                            f"(its bytes look like {mime})")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else repr(url)
