"""Secrets never land in a record, a log line or a response.

- The configured secret values (provider tokens, the admin token, the session
  key, S3 credentials) are replaced by ``[redacted]`` wherever they appear in
  a text, whole or embedded.
- Recorded request parameters lose every field whose name looks like a
  secret (``api_key``, ``token``, ``password``...) at any depth of nested
  objects and lists, and JSON written inside a text field is read the same way.
- ``SecretFilter`` does the first for log lines (message, arguments, traceback).
"""

import json
import logging
import os
import re

from flask import current_app, has_app_context

SECRET_SETTINGS = ("REPLICATE_API_TOKEN", "FAL_KEY", "ADMIN_TOKEN", "SECRET_KEY",
                   "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
REDACTED = "[redacted]"
# Shorter secrets are redacted only as whole values: replacing every "ab" in
# every text would garble records and logs alike.
MIN_EMBEDDED = 4
# Deeper than this, a nested value is dropped rather than walked.
MAX_DEPTH = 32
# Keys whose values must never be recorded: tokens, keys, passwords...
SECRET_KEY_PATTERN = re.compile(
    r"(token|secret|passw|pwd|api[-_]?key|^key$|[-_]key$|auth|credential|signature|cookie)",
    re.I)
CAMEL_KEY = re.compile(r"[a-z0-9]Key$")  # privateKey, accessKey


def configured_secrets(config=None) -> list[str]:
    """The configured secret values (settings, or environment variables), longest first."""
    config = current_app.config if config is None else config
    values = set()
    for name in SECRET_SETTINGS:
        value = config.get(name)
        value = os.environ.get(name) if value in (None, "") else value
        if value not in (None, ""):
            values.add(str(value))
    return sorted(values, key=len, reverse=True)


def redact(text: str, secrets=None) -> str:
    """``text`` with every configured secret in it replaced by ``[redacted]``."""
    secrets = configured_secrets() if secrets is None else secrets
    for secret in secrets:
        if text == secret:
            return REDACTED
        if len(secret) >= MIN_EMBEDDED:
            text = text.replace(secret, REDACTED)
    return text


def is_secret_key(key) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY_PATTERN.search(key) or CAMEL_KEY.search(key))


def parameters(fields: dict) -> dict:
    """The request's fields as recorded: no prompt, no empty field (a form's
    way of not giving a value), nothing that looks like or holds a secret."""
    return _scrub_mapping({k: v for k, v in fields.items() if k != "prompt" and v != ""},
                          configured_secrets(), 0)


def scrub(value, secrets=None, depth: int = 0):
    """``value`` (JSON-like) without secrets: secret-looking keys dropped at
    every depth, configured secrets redacted from every text."""
    secrets = configured_secrets() if secrets is None else secrets
    if depth > MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return _scrub_mapping(value, secrets, depth)
    if isinstance(value, (list, tuple)):
        return [scrub(v, secrets, depth + 1) for v in value]
    if isinstance(value, str):
        return _scrub_text(value, secrets, depth)
    return value


def _scrub_mapping(mapping: dict, secrets, depth: int) -> dict:
    return {k: scrub(v, secrets, depth + 1) for k, v in mapping.items()
            if not is_secret_key(k) and not (isinstance(v, str) and v in secrets)}


def _scrub_text(text: str, secrets, depth: int) -> str:
    """A text, redacted; JSON objects or lists written in it are scrubbed as such."""
    text = redact(text, secrets)
    if not text.lstrip().startswith(("{", "[")):
        return text
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        return REDACTED
    clean = scrub(parsed, secrets, depth + 1)
    return text if clean == parsed else json.dumps(clean, ensure_ascii=False)


class SecretFilter(logging.Filter):
    """Replaces configured secrets in log records: those of every app it was
    installed for, and the current app's (whose settings may have changed)."""

    def __init__(self):
        super().__init__()
        self.known: set[str] = set()

    def secrets(self) -> list[str]:
        found = set(self.known)
        if has_app_context():
            found.update(configured_secrets())
        return sorted(found, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets()
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it
            return True
        clean = redact(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


LOG_FILTER = SecretFilter()


def install_log_filter(app) -> None:
    """Filter the app's log lines and its modules' (``generation_studio.*``),
    and Werkzeug's request lines (a query string may carry a token)."""
    LOG_FILTER.known.update(configured_secrets(app.config))
    names = [app.logger.name, "werkzeug"] + [
        name for name in list(logging.Logger.manager.loggerDict)
        if name.startswith(app.logger.name + ".")]
    for name in names:
        logger = logging.getLogger(name)
        if LOG_FILTER not in logger.filters:
            logger.addFilter(LOG_FILTER)
