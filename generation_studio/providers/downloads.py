"""Fetching a provider's result safely, before its URL expires.

Only URLs on the provider's own file hosts are fetched (``ALLOWED_RESULT_ORIGINS``:
``scheme://host[:port]``, ``*.`` for subdomains), so that a provider's answer
cannot make the server fetch an internal address; redirects are followed by
hand, each hop checked the same way. The API token is never sent (a plain
session). The body is streamed to a temp file in the storage folder, capped at
``MAX_RESULT_BYTES``, and its type is checked from its bytes; an image must
pass the image gate (``media.open_checked``).

The operation's deadline bounds the whole download, every hop and every read
together: a host that drips bytes slowly ends as a 504 when it passes.
"""

from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from .. import media
from ..errors import ProviderError, human_size
from .errors import setting
from .http import Deadline

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


def download(url: str, store, config, kind: str, session=None,
             deadline: Deadline | None = None):
    """Stream ``url`` into a temp file of ``store``; return its path.

    ``kind`` is what the operation makes ("image" or "video"); anything else
    (an HTML error page, say) is refused. ``deadline`` is the operation's
    (by default, a new one of the kind's PROVIDER_IMAGE/VIDEO_DEADLINE).
    """
    allowed = config["ALLOWED_RESULT_ORIGINS"]
    limit = config["MAX_RESULT_BYTES"]
    session = session or requests.Session()
    deadline = deadline or Deadline(setting(
        config, "PROVIDER_VIDEO_DEADLINE" if kind == "video" else "PROVIDER_IMAGE_DEADLINE"))
    for _ in range(MAX_REDIRECTS + 1):
        if not origin_allowed(url, allowed):
            raise ProviderError(f"The provider's result is at {_origin(url)}, which is not in "
                                "ALLOWED_RESULT_ORIGINS; it was not fetched")
        wait = min(setting(config, "PROVIDER_HTTP_TIMEOUT"), _left(deadline))
        try:
            response = session.get(url, stream=True, allow_redirects=False, timeout=wait)
        except requests.RequestException as e:
            _left(deadline, slack=0.1)
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
            return _stream_to_file(response, store, limit, kind, deadline)
    raise ProviderError(f"The result's URL redirected more than {MAX_REDIRECTS} times")


def _left(deadline: Deadline, slack: float = 0.0) -> float:
    """The seconds ``deadline`` leaves; a 504 once it has passed (or is within ``slack``)."""
    left = deadline.remaining()
    if left <= slack:
        raise ProviderError(f"The result's download did not finish within the operation's "
                            f"deadline ({deadline.seconds:g} s); it was stopped", status=504)
    return left


def _passing(error: ProviderError) -> ProviderError:
    """Mark ``error`` as one worth another try (the host's outage, not the file's fault)."""
    error.passing = True
    return error


def _stream_to_file(response, store, limit: int, kind: str, deadline: Deadline):
    try:
        declared = int(response.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise ProviderError(f"The result is {human_size(declared)}, over the limit of "
                            f"{human_size(limit)} (MAX_RESULT_BYTES)")
    path = store.temp_file()
    try:
        size = 0
        with path.open("wb") as f:
            for chunk in _chunks(response, deadline):
                size += len(chunk)
                if size > limit:
                    raise ProviderError(f"The result is over the limit of {human_size(limit)} "
                                        "(MAX_RESULT_BYTES); the download was stopped")
                f.write(chunk)
        mime = media.sniff(media.head(path))[1]
        check_kind(mime, kind)
        if mime.startswith("image/"):
            check_image(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _chunks(response, deadline: Deadline):
    """The body as it comes (``read1``: whatever has arrived, not a full chunk),
    each read bounded by what the deadline leaves."""
    raw = response.raw
    while True:
        _set_read_timeout(raw, _left(deadline))
        try:
            chunk = raw.read1(CHUNK, decode_content=True)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                ValueError) as e:
            _left(deadline, slack=0.1)  # a read cut short by the deadline's own timeout
            raise ProviderError(f"The result's download broke off ({type(e).__name__})") \
                from None
        if not chunk:
            return
        yield chunk


def _set_read_timeout(raw, seconds: float) -> None:
    """Shorten the socket's read timeout to what the deadline leaves (urllib3
    sets it once per request)."""
    sock = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
    sock = getattr(sock, "_sock", None)
    if sock is not None:
        sock.settimeout(max(0.05, seconds))


def check_image(path) -> None:
    """Refuse an image result the image gate refuses (a bomb, say)."""
    try:
        media.open_checked(path).close()
    except media.ImageRefused as e:
        raise ProviderError(f"The result {e.reason}") from None


def check_kind(mime: str, kind: str) -> None:
    """Refuse a result whose bytes are not what the operation makes."""
    ok = mime.startswith("image/") or (kind == "video" and mime.startswith("video/"))
    if not ok:
        raise ProviderError(f"The result is not {'a video' if kind == 'video' else 'an image'} "
                            f"(its bytes look like {mime})")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else repr(url)
