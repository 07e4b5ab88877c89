"""Record naming and layout: the one place that knows what the files of an
operation are called.

An operation id is ``YYYYMMDD_<name>``: the day it was created (UTC) and a
name of letters, digits, ``-`` or ``_``. The studio makes 12-character names
(``20261124_k3j5x2m7qa9b``); the integration guide's shape (``20251103_abc123``)
and others a user may have are read alike. In the storage folder:

- ``<id>.json``                 the record (written last, deleted first)
- ``<id>_in_<n>.<ext>``         each input image, n from 0
- ``<id>_out.<ext>``            the result (``_out_<n>`` when there are several)
- ``archives/YYYYMMDD.zip``     a compressed day (see ``archive``)
- ``.index/``, ``.locks/``, ``.thumbs/``  the index, lock files, thumbnails
"""

import base64
import re
import secrets
from datetime import datetime, timezone

ID_PATTERN = re.compile(r"^\d{8}_[A-Za-z0-9_-]{1,80}$")
RECORD_SUFFIX = ".json"
# A data file of an operation: its id, then _in_<n>, _input_<n>, _out or _out_<n>.
_DATA_FILE = re.compile(r"^(\d{8}_[A-Za-z0-9_-]+)_(?:in_\d+|input_\d+|out(?:_\d+)?)\.[A-Za-z0-9]{1,10}$")
ID_LENGTH = 21  # the studio's own ids

INDEX_FOLDER = ".index"
LOCK_FOLDER = ".locks"
THUMBS = ".thumbs"
ARCHIVES = "archives"


def is_id(text) -> bool:
    return isinstance(text, str) and ID_PATTERN.match(text) is not None


def new_id(when: datetime | None = None) -> str:
    """A fresh id dated ``when`` (UTC); 60 random bits, so never a collision
    in practice (the store still refuses to overwrite)."""
    day = (when or datetime.now(timezone.utc)).strftime("%Y%m%d")
    return f"{day}_{base64.b32encode(secrets.token_bytes(8)).decode().lower()[:12]}"


def day_of(op_id: str) -> str:
    return op_id[:8]


def record_name(op_id: str) -> str:
    return op_id + RECORD_SUFFIX


def input_name(op_id: str, n: int, ext: str) -> str:
    return f"{op_id}_in_{n}.{ext}"


def output_name(op_id: str, n: int, several: bool, ext: str) -> str:
    return f"{op_id}_out_{n}.{ext}" if several else f"{op_id}_out.{ext}"


def record_id(name: str) -> str | None:
    """The id whose record ``name`` is, or None."""
    if name.endswith(RECORD_SUFFIX) and ID_PATTERN.match(name[:-len(RECORD_SUFFIX)]):
        return name[:-len(RECORD_SUFFIX)]
    return None


def owner(name: str) -> str | None:
    """The id of the operation that file ``name`` (record or data) belongs to."""
    op_id = record_id(name)
    if op_id:
        return op_id
    match = _DATA_FILE.match(name)
    return match[1] if match and ID_PATTERN.match(match[1]) else None


def belongs_to(name: str, op_id: str) -> bool:
    """Whether ``name`` is a file of ``op_id`` (and not of an id it prefixes)."""
    return owner(name) == op_id
