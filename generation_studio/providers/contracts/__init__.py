"""The input contracts of the models the studio runs, and where they come from.

The default models' contracts are written down here as data
(``replicate.json``, ``fal.json``: each model's source noted), taken from
the schemas the providers publish. A model chosen in ``REPLICATE_MODELS`` or
``FAL_MODELS`` that is not among them has its published schema fetched once
(the provider says how) and cached as JSON in ``PROVIDER_SCHEMA_DIR``
(``<instance>/provider_schemas/<provider>/<model>.json``), so that its inputs
are checked the same way. No schema reachable: ``None``, and the caller sends
the request unchecked and says so.
"""

import functools
import json
import logging
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import requests

from ...errors import ProviderError

HERE = Path(__file__).parent
log = logging.getLogger(__name__)


@functools.cache
def bundled(provider: str) -> dict:
    """The written-down contracts of ``provider``'s default models, by model id."""
    return json.loads((HERE / f"{provider}.json").read_text())["models"]


class Contracts:
    """Contracts of one provider's models: bundled, cached on disk, or fetched."""

    def __init__(self, provider: str, folder, fetch):
        self.provider, self.fetch = provider, fetch  # fetch(model) -> contract dict
        self.folder = Path(folder) / provider if folder else None
        self.memo = {}

    def get(self, model: str) -> dict | None:
        if model in bundled(self.provider):
            return bundled(self.provider)[model]
        if model not in self.memo:
            contract = self._cached(model) or self._fetched(model)
            if contract is None:
                return None  # not remembered: the next run tries again
            self.memo[model] = contract
        return self.memo[model]

    def _path(self, model: str) -> Path | None:
        name = re.sub(r"[^A-Za-z0-9._@-]", "_", model.replace("/", "__").replace(":", "@"))
        return self.folder / f"{name}.json" if self.folder else None

    def _cached(self, model: str) -> dict | None:
        path = self._path(model)
        try:
            return json.loads(path.read_text()) if path and path.is_file() else None
        except (OSError, ValueError):
            log.warning("Ignoring an unreadable cached schema: %s", path)
            return None

    def _fetched(self, model: str) -> dict | None:
        try:
            contract = self.fetch(model)
        except (ProviderError, requests.RequestException, ValueError, KeyError, TypeError,
                AttributeError) as e:
            log.warning("No input schema for %s %s: %s", self.provider, model, e)
            return None
        if not contract or not contract.get("properties"):
            return None
        contract["fetchedAt"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._save(model, contract)
        return contract

    def _save(self, model: str, contract: dict) -> None:
        path = self._path(model)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(contract, f, indent=1)
            os.replace(tmp, path)
        except OSError:
            log.exception("Could not cache the schema of %s in %s", model, path.parent)
