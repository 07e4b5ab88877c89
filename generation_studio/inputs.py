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
helpers below; each error names the field and the limit. A body is refused
whole (400, field ``body``) when it is not strict JSON (``NaN``, ``Infinity``),
is nested deeper than ``MAX_JSON_DEPTH``, holds text that is not Unicode (a
lone surrogate), or has a multipart part without a name.
"""

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field

from flask import g, request
from PIL import Image

from . import media
from .errors import ApiError
from .history import current_history
from .storage import layout

IMAGE_FIELDS = ("image", "images")
PROMPT_MAX_CHARS = 10_000
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_DATA_URL = re.compile(r"^data:([\w.+/-]*)(;[\w=.+-]+)*;base64,(.*)$", re.S)
REFERENCE_PREFIX = "op:"
MAX_JSON_DEPTH = 32
BODY = "body"  # the field named by errors about the body as a whole
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass
class Upload:
    """One input image as the client sent it (not yet known to be an image)."""

    label: str  # how error messages name it: "images[1]"
    data: bytes
    filename: str | None = None
    source: dict | None = None  # a stored file's {"operationId", "file"}, when referenced
    claimed_type: str | None = None  # the Content-Type its sender gave it
    refusal: str | None = field(default=None, repr=False)  # why the gate refused it
    checked: bool = field(default=False, repr=False)


@dataclass
class RequestData:
    fields: dict = field(default_factory=dict)
    uploads: list = field(default_factory=list)
    # Set by a rerun (``rerun.request_data``): where the request comes from, and its route.
    derived_from: list = field(default_factory=list)
    route: str | None = None

    def sources(self) -> list[dict]:
        """The record's ``derivedFrom``: the rerun's source, or the stored files used as input."""
        return self.derived_from or [{**u.source, "relation": "input"}
                                     for u in self.uploads if u.source]


def current() -> RequestData:
    """The request's fields and uploads, read once."""
    if "request_data" not in g:
        # A rerun reads its request from a record (``rerun``), not from the body.
        g.request_data = g.pop("read_request", _read_request)()
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
        status=415, field="Content-Type")


def _from_json() -> RequestData:
    body = strict_json(request.get_data(cache=True) or b"{}")
    if not isinstance(body, dict):
        raise ApiError("The JSON body must be an object, such as {\"prompt\": \"a cat\"}",
                       field=BODY)
    data = RequestData()
    for name in IMAGE_FIELDS:
        value = body.pop(name, None)
        values = value if isinstance(value, list) else [] if value is None else [value]
        for item in values:
            data.uploads.append(from_text(name, len(data.uploads), item))
    data.fields = body
    return data


def strict_json(raw: bytes):
    """``raw`` parsed as strict JSON: no NaN or Infinity, nested at most
    ``MAX_JSON_DEPTH`` deep, every text valid Unicode; else 400 naming the field."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(BODY) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(f"Malformed JSON body: {e}", field=BODY) from None
    _check_json(body, BODY, 0)
    return body


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")


def _too_deep(name: str) -> ApiError:
    return ApiError(f"{name}: the JSON body is nested deeper than {MAX_JSON_DEPTH} levels",
                   field=name)


def _check_json(value, name: str, depth: int) -> None:
    """Refuse nesting past the limit and text with lone surrogates (which no
    file, log or answer can encode), naming the top-level field."""
    if depth > MAX_JSON_DEPTH:
        raise _too_deep(name)
    if isinstance(value, str):
        if _SURROGATE.search(value):
            name = name if not _SURROGATE.search(name) else ascii(name)[1:-1]
            raise ApiError(f"{name} holds a lone surrogate ({ascii(value[:40])}): send "
                           "valid Unicode text", field=name)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, name, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            child = key if depth == 0 else name
            _check_json(key, child, depth + 1)
            _check_json(item, child, depth + 1)


def _from_form() -> RequestData:
    if None in request.form or None in request.files:
        raise ApiError("A part of the multipart body has no name: each part needs "
                       "Content-Disposition: form-data; name=\"...\"", field=BODY)
    data = RequestData()
    for name in IMAGE_FIELDS:
        for item in request.files.getlist(name):
            if item.filename or item.content_length:
                data.uploads.append(Upload(f"images[{len(data.uploads)}]",
                                           item.read(), item.filename or None,
                                           claimed_type=item.mimetype or None))
        for item in request.form.getlist(name):
            if item:
                data.uploads.append(from_text(name, len(data.uploads), item))
    data.fields = {k: v for k, v in request.form.items() if k not in IMAGE_FIELDS}
    return data


def from_text(name: str, index: int, value) -> Upload:
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
        return Upload(label, base64.b64decode(match.group(3), validate=True),
                      claimed_type=match.group(1) or None)
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
    if not isinstance(raw, str):
        raise ApiError(f"{name} must be one of {', '.join(allowed)}, as text (got "
                       f"{type(raw).__name__ if isinstance(raw, (list, dict)) else repr(raw)})",
                       field=name)
    value = (aliases or {}).get(raw, raw)
    if value not in allowed:
        raise ApiError(f"{name} must be one of {', '.join(allowed)} (got {raw!r})", field=name)
    return value


def images(low: int, high: int) -> list[bytes]:
    """The uploaded images' bytes, each decoded once to check it (then let go:
    the job decodes them again where it runs, so a request waiting for its
    job holds no pixels); 400 unless low..high of them, each readable."""
    uploads = current().uploads
    if not low <= len(uploads) <= high:
        wanted = f"exactly {low}" if low == high else f"{low} to {high}"
        raise ApiError(f"images: this route takes {wanted} image(s); got {len(uploads)}",
                       field="images")
    for upload in uploads:
        open_image(upload).close()
    return [upload.data for upload in uploads]


def open_image(upload: Upload) -> Image.Image:
    """Decode one upload through the image gate (``media.open_checked``), as RGB;
    400 naming it and the limit it breaks."""
    name = f" ({upload.filename})" if upload.filename else ""
    upload.checked = True
    try:
        return media.decode_checked(upload.data)
    except media.ImageRefused as e:
        upload.refusal = e.reason
        raise ApiError(f"{upload.label}{name} {e.reason}", field=upload.label) from None


def refusal(upload: Upload) -> str | None:
    """Why the gate refuses ``upload`` (None when it is a readable image within
    the limits). One the request did not decode is verified, not decoded."""
    if not upload.checked:
        upload.checked = True
        try:
            media.verify(upload.data)
        except media.ImageRefused as e:
            upload.refusal = e.reason
    return upload.refusal


def refused_entry(upload: Upload) -> dict:
    """What a failed record notes of an upload it did not keep."""
    return {"name": upload.filename, "field": upload.label, "size": len(upload.data),
            "claimedType": upload.claimed_type,
            "sha256": hashlib.sha256(upload.data).hexdigest(), "reason": upload.refusal}
