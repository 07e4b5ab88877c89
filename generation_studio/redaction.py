"""Secrets never land in a record, a log line or a response: the configured
secret values are replaced in any text, and request fields whose names look
like secrets are dropped from recorded parameters."""

import os
import re

from flask import current_app

SECRET_SETTINGS = ("REPLICATE_API_TOKEN", "FAL_KEY", "ADMIN_TOKEN", "SECRET_KEY")
# Keys whose values must never be recorded: tokens, keys, passwords...
SECRET_KEY_PATTERN = re.compile(
    r"(token|secret|passw|api[-_]?key|^key$|[-_]key$|auth|credential|signature)", re.I)


def configured_secrets() -> list[str]:
    """The configured secret values (settings, or environment variables)."""
    values = [current_app.config.get(name) or os.environ.get(name) for name in SECRET_SETTINGS]
    return [str(v) for v in values if v]


def redact(text: str) -> str:
    for secret in configured_secrets():
        text = text.replace(secret, "[redacted]")
    return text


def parameters(fields: dict) -> dict:
    """The request's fields as recorded: no prompt, no empty field (a form's
    way of not giving a value), nothing that looks like or equals a secret."""
    secrets = set(configured_secrets())
    return {k: v for k, v in fields.items()
            if k != "prompt" and v != "" and not SECRET_KEY_PATTERN.search(k)
            and not (isinstance(v, str) and v in secrets)}
