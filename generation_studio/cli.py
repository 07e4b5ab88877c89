"""The ``flask history`` and ``flask storage`` command groups."""

import json

import click
from flask import current_app
from flask.cli import AppGroup

from .catalog import OPERATION_TYPES

history = AppGroup("history", help="Read the recorded operations.")
storage = AppGroup("storage", help="Manage the operation storage folder.")


def _store():
    return current_app.extensions["operation_store"]


@history.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--type", "types", multiple=True, type=click.Choice(list(OPERATION_TYPES)),
              help="Only this operation type (repeatable).")
@click.option("--status", type=click.Choice(["succeeded", "failed"]))
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def list_command(limit, types, status, as_json):
    """List operations, newest first."""
    page, total = _store().query(limit=limit, types=types, status=status)
    if as_json:
        click.echo(json.dumps(page, indent=2, ensure_ascii=False))
        return
    rows = [("ID", "CREATED (UTC)", "TYPE", "STATUS", "MS", "PROVIDER", "PROMPT")]
    for r in page:
        rows.append((r["operationId"], r["createdAt"][:19].replace("T", " "),
                     r["operationType"] or "?", r["status"], f"{r['durationMs']:.0f}",
                     r["provider"]["name"], _short(r.get("prompt") or r.get("error") or "")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    click.echo(f"{len(page)} of {total} operation(s)")


def _short(text: str, width: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@history.command("show")
@click.argument("op_id")
def show_command(op_id):
    """Print one operation's record as JSON."""
    record = _store().get(op_id)
    if record is None:
        raise click.ClickException(f"No operation {op_id!r}")
    click.echo(json.dumps(record, indent=2, ensure_ascii=False))


@storage.command("init")
def init_command():
    """Create the storage folder and remove stale temporary files."""
    store = _store()
    try:
        removed = store.init()
    except OSError as e:
        raise click.ClickException(f"Cannot use {store.root}: {e}")
    click.echo(f"Storage folders initialised: {store.root}")
    click.echo(f"Removed {removed} stale temporary file(s)")


def init_app(app):
    app.cli.add_command(history)
    app.cli.add_command(storage)
