"""The history: one service (``HistoryService``) over the records on disk
and their index, used alike by the API, the pages, the CLI and the admin."""

from .index import IndexBusy
from .service import ArchiveDamaged, HistoryService, IndexUnavailable, NotFound, Page

__all__ = ["ArchiveDamaged", "HistoryService", "IndexBusy", "IndexUnavailable", "NotFound",
           "Page", "current_history"]


def current_history() -> HistoryService:
    """The app's history service."""
    from flask import current_app
    return current_app.extensions["history"]
