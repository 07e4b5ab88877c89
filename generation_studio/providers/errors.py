"""The exceptions hosted providers raise, carrying what the record needs.

Every failure of a hosted job is a ``ProviderError`` (mapped to HTTP by
``generation_studio.errors``) that also carries ``details``, shaped like a
``Result``'s (job id, status and cancel URLs, the provider's result URLs, how
long the provider keeps them, whether the studio canceled the job), and
``warnings``. The recording layer merges ``details`` into the record's
``provider`` object. Messages are cut to a few hundred characters and never
hold a ``data:`` URI or a token. (``setting`` reads a provider setting with
its default, for configs built without the defaults.)
"""

import re

from .. import errors
from ..config import DEFAULTS

MESSAGE_LIMIT = 400
DATA_URI = re.compile(r"data:[\w/+.-]*(;[\w=.-]+)*,[^\s\"'<>)\]}]*", re.IGNORECASE)


class ProviderError(errors.ProviderError):
    """The app's ProviderError (the same name in a record's ``errorType``), with
    the job's ``details`` and ``warnings``."""

    def __init__(self, message: str, status: int | None = None, field: str | None = None,
                 headers: dict | None = None, details: dict | None = None,
                 warnings: list | None = None):
        super().__init__(cut(message), status=status, field=field, headers=headers)
        self.details = dict(details or {})
        self.warnings = list(warnings or [])


class InputRefused(ProviderError):
    """A value the model does not accept, caught before anything is sent (400)."""

    status = 400


def cut(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` without data URIs (their size instead) and at most ``limit`` characters."""
    text = DATA_URI.sub(lambda m: f"data:… ({len(m.group(0)):,} characters)", str(text))
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def annotate(error: Exception, details: dict, warnings=()) -> Exception:
    """Give ``error`` the job's ``details`` and ``warnings`` (its own win), and
    cut its message; return it for ``raise``."""
    error.details = {**details, **(getattr(error, "details", None) or {})}
    error.warnings = [*warnings, *(w for w in getattr(error, "warnings", None) or []
                                   if w not in warnings)]
    if isinstance(error, errors.ApiError):
        error.message = cut(error.message)
        error.args = (error.message,)
    return error


# What reading an answer of an unexpected shape raises (a string where an
# object should be, a missing key...): the provider's fault, so a 502.
MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError)


def malformed(label: str, error: Exception) -> ProviderError:
    """The 502 for an answer of ``label`` that could not be read (``error``)."""
    return ProviderError(f"{label} answered something the studio cannot use "
                         f"({type(error).__name__}: {cut(str(error), 120)})", status=502)


def setting(config, name: str):
    """A provider setting, falling back to its default when a config lacks it."""
    return config.get(name, DEFAULTS.get(name))
