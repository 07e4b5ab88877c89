"""Turning a request into prompt, parameters and images, with clear 400s.

Every generation route takes the same fields as ``application/json``,
``application/x-www-form-urlencoded`` or ``multipart/form-data``. Images come
as multipart files in ``images`` (several) or ``image`` (one), as data URLs
(``data:image/png;base64,...``) in those same fields of a JSON body or form,
or as references to a file the studio already keeps (``op:<operation id>/<file
name>``), so a client chains steps without downloading and uploading again.
A JSON list keeps its order; a form gives its files first, then its text values.

The request is read once per request (``current()``), so the recording
decorator and the view see the same data. Validation lives in the small
helpers below; each error names the field and the limit.
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from flask import current_app, g, request
from PIL import Image, ImageOps, UnidentifiedImageError

from . import media
from .errors import ApiError
from .history import current_history
from .storage import layout

IMAGE_FIELDS = ("image", "images")
PROMPT_MAX_CHARS = 10_000
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_DATA_URL = re.compile(r"^data:([\w.+/-]*)(;[\w=.+-]+)*;base64,(.*)$", re.S)
REFERENCE_PREFIX = "op:"


@dataclass
class Upload:
    """One input image as the client sent it (not yet known to be an image)."""

    label: str  # how error messages name it: "images[1]"
    data: bytes
    filename: str | None = None
    source: dict | None = None  # a stored file's {"operationId", "file"}, when referenced


@dataclass
class RequestData:
    fields: dict = field(default_factory=dict)
    uploads: list = field(default_factory=list)


def current() -> RequestData:
    """The request's fields and uploads, read once."""
    if "request_data" not in g:
        g.request_data = _read_request()
    return g.request_data


def _read_request() -> RequestData:
    if request.is_json:
        return _from_json()
    if request.mimetype in FORM_TYPES:
        return _from_form()
    if not request.get_data(cache=True):
        return RequestData()
    raise ApiError(
        f"Unsupported content type {request.mimetype or '(none)'}: send "
        "application/json, application/x-www-form-urlencoded or multipart/form-data",
        status=415)


def _from_json() -> RequestData:
    try:
        body = json.loads(request.get_data(cache=True) or b"{}")
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(f"Malformed JSON body: {e}") from None
    if not isinstance(body, dict):
        raise ApiError("The JSON body must be an object, such as {\"prompt\": \"a cat\"}")
    data = RequestData()
    for name in IMAGE_FIELDS:
        value = body.pop(name, None)
        values = value if isinstance(value, list) else [] if value is None else [value]
        for item in values:
            data.uploads.append(_from_text(name, len(data.uploads), item))
    data.fields = body
    return data


def _from_form() -> RequestData:
    data = RequestData()
    for name in IMAGE_FIELDS:
        for item in request.files.getlist(name):
            if item.filename or item.content_length:
                data.uploads.append(Upload(f"images[{len(data.uploads)}]",
                                           item.read(), item.filename or None))
        for item in request.form.getlist(name):
            if item:
                data.uploads.append(_from_text(name, len(data.uploads), item))
    data.fields = {k: v for k, v in request.form.items() if k not in IMAGE_FIELDS}
    return data


def _from_text(name: str, index: int, value) -> Upload:
    """An image sent as text: a data URL or a reference to a stored file."""
    label = f"images[{index}]"
    if isinstance(value, str) and value.startswith(REFERENCE_PREFIX):
        return _from_reference(label, value)
    match = _DATA_URL.match(value) if isinstance(value, str) else None
    if not match:
        raise ApiError(f"{label} must be a data URL (data:image/png;base64,...), a stored "
                       f"file (op:<operation id>/<file name>) or a file uploaded in the "
                       f"field '{name}'", field=label)
    try:
        return Upload(label, base64.b64decode(match.group(3), validate=True))
    except (binascii.Error, ValueError):
        raise ApiError(f"{label} is not valid base64", field=label) from None


def _from_reference(label: str, value: str) -> Upload:
    """The bytes of ``op:<id>/<file>``, one of that operation's own files."""
    op_id, _, name = value[len(REFERENCE_PREFIX):].partition("/")
    if not layout.is_id(op_id) or not name:
        raise ApiError(f"{label}: {value[:200]!r} is not a reference such as "
                       "op:20261126_k3j5x2m7qa9b/_out_0.png", field=label)
    found = current_history().open_file(op_id, name)
    if found is None:
        raise ApiError(f"{label}: operation {op_id} has no file {name[:200]!r} (see "
                       f"/api/history/{op_id} for its inputImages and outputs)", field=label)
    data, _ = found
    return Upload(label, data if isinstance(data, bytes) else data.read_bytes(), name,
                  {"operationId": op_id, "file": name})


def prompt(required: bool = True) -> str:
    """The prompt, stripped; 400 when required and missing or empty."""
    value = current().fields.get("prompt")
    if value is not None and not isinstance(value, str):
        raise ApiError("prompt must be text", field="prompt")
    value = (value or "").strip()
    if required and not value:
        raise ApiError("prompt is required: a non-empty text describing what to make",
                       field="prompt")
    if len(value) > PROMPT_MAX_CHARS:
        raise ApiError(f"prompt is {len(value)} characters long; the limit is "
                       f"{PROMPT_MAX_CHARS}", field="prompt")
    return value


def number(name: str, low, high, default=None, integer: bool = False, source=None):
    """A number in [low, high] from the field ``name``, or ``default``.

    ``source`` is where to look (``request.args`` for a query string); by
    default the request's fields.
    """
    raw = (current().fields if source is None else source).get(name)
    if raw is None or raw == "":
        return default
    kind = "a whole number" if integer else "a number"
    limits = f"{kind} from {low} to {high}"
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
        if integer:
            if value != int(value):
                raise ValueError
            value = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ApiError(f"{name} must be {limits} (got {raw!r})", field=name) from None
    if not low <= value <= high:
        raise ApiError(f"{name} must be {limits} (got {raw!r})", field=name)
    return value


def choice(name: str, allowed, default=None, aliases=None, source=None):
    """One of ``allowed`` from the field ``name`` (``aliases`` maps spellings)."""
    raw = (current().fields if source is None else source).get(name)
    if raw is None or raw == "":
        return default
    value = (aliases or {}).get(raw, raw)
    if value not in allowed:
        raise ApiError(f"{name} must be one of {', '.join(allowed)} (got {raw!r})", field=name)
    return value


def images(low: int, high: int) -> list[Image.Image]:
    """The uploaded images, opened and checked; 400 unless low..high of them."""
    uploads = current().uploads
    if not low <= len(uploads) <= high:
        wanted = f"exactly {low}" if low == high else f"{low} to {high}"
        raise ApiError(f"images: this route takes {wanted} image(s); got {len(uploads)}",
                       field="images")
    return [open_image(u) for u in uploads]


def open_image(upload: Upload) -> Image.Image:
    """Decode one upload with Pillow, within MAX_IMAGE_PIXELS, as RGB."""
    limit = current_app.config["MAX_IMAGE_PIXELS"]
    name = f" ({upload.filename})" if upload.filename else ""
    try:
        image = media.open_image(upload.data)
        width, height = image.size
        if width * height > limit:
            raise ApiError(f"{upload.label}{name} is {width}x{height} = {width * height:,} "
                           f"pixels; the limit is {limit:,} pixels (MAX_IMAGE_PIXELS)",
                           field=upload.label)
        image.load()
    except Image.DecompressionBombError:
        raise ApiError(f"{upload.label}{name} has more pixels than the limit of {limit:,} "
                       "(MAX_IMAGE_PIXELS)", field=upload.label) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(f"{upload.label}{name} is not an image that can be read "
                       "(PNG, JPEG, WebP, GIF, BMP or TIFF)", field=upload.label) from None
    return ImageOps.exif_transpose(image).convert("RGB")
