"""The ``flask history`` and ``flask storage`` command groups."""

import json
import os
import sys

import click
from flask.cli import AppGroup
from werkzeug.datastructures import MultiDict

from . import archive, export, queries, retention
from .atomic import temp_path
from .catalog import OPERATION_TYPES
from .errors import ApiError, human_size
from .store import current_store

history = AppGroup("history", help="Read, export and tidy the recorded operations.")
storage = AppGroup("storage", help="Manage the operation storage folder.")



def filter_options(command):
    """The history API's filters, as options."""
    for option in reversed([
        click.option("--type", "types", multiple=True, type=click.Choice(list(OPERATION_TYPES)),
                     help="Only this operation type (repeatable)."),
        click.option("--status", type=click.Choice(list(queries.STATUSES))),
        click.option("--provider", type=click.Choice(list(queries.PROVIDERS))),
        click.option("--q", help="Words the prompt contains."),
        click.option("--since", help="From this date (2026-11-01) or ISO time."),
        click.option("--until", help="Up to this date (included) or ISO time."),
    ]):
        command = option(command)
    return command


def _filters(types, **values) -> queries.Filters:
    args = MultiDict([("type", t) for t in types])
    args.update({k: v for k, v in values.items() if v})
    try:
        return queries.filters_from(args)
    except ApiError as e:
        raise click.UsageError(e.message)


def _progress(label: str, iterable=None, length=None):
    """A progress bar on stderr, so that stdout stays clean for the summary."""
    return click.progressbar(iterable, length=length, label=label, file=sys.stderr)


def _age(text: str):
    try:
        return retention.parse_age(text)
    except ApiError as e:
        raise click.BadParameter(e.message)


@history.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def list_command(limit, types, as_json, **values):
    """List operations, newest first."""
    store = current_store()
    ids, total, _ = queries.page(store.index, _filters(types, **values), limit)
    records = store.get_many(ids)
    page = [records[i] for i in ids if i in records]
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
    record = current_store().get(op_id)
    if record is None:
        raise click.ClickException(f"No operation {op_id!r}")
    click.echo(json.dumps(record, indent=2, ensure_ascii=False))


@history.command("stats")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3660))
@filter_options
@click.option("--json", "as_json", is_flag=True)
def stats_command(days, types, as_json, **values):
    """Counts, success rate, durations and storage, by type."""
    body = queries.stats(current_store().index, _filters(types, **values), days)
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    rate = "-" if body["successRate"] is None else f"{body['successRate']:.1%}"
    click.echo(f"{body['total']} operation(s): {body['succeeded']} succeeded, "
               f"{body['failed']} failed ({rate} success); {human_size(body['storageBytes'])}")
    click.echo(f"{'TYPE':28}{'COUNT':>7}{'FAILED':>8}{'MEDIAN MS':>11}{'P95 MS':>9}{'STORAGE':>12}")
    for name, entry in sorted(body["byType"].items(), key=lambda kv: -kv[1].get("count", 0)):
        durations = entry.get("durationMs") or {}
        click.echo(f"{name:28}{entry.get('count', 0):>7}{entry.get('failed', 0):>8}"
                   f"{durations.get('median') or 0:>11.0f}{durations.get('p95') or 0:>9.0f}"
                   f"{human_size(entry.get('bytes', 0)):>12}")
    click.echo(f"Per day, last {days} days: " +
               (", ".join(f"{d} {n}" for d, n in body["perDay"].items()) or "none"))


@history.command("export")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The CSV file to write.")
@filter_options
def export_command(output, types, **values):
    """Write the operations as CSV (one row each, newest first)."""
    store, filters = current_store(), _filters(types, **values)
    _, total, _ = queries.page(store.index, filters, 1)
    target = os.path.abspath(output)
    tmp = temp_path(os.path.dirname(target), os.path.basename(target))
    try:
        with _progress("Exporting", length=total) as bar, \
                open(tmp, "w", newline="", encoding="utf-8") as f:
            for chunk in export.chunks(store.index, filters, progress=bar.update):
                f.write(chunk)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    click.echo(f"Exported {total} operation(s) to {output}")


@history.command("reindex")
def reindex_command():
    """Rebuild the index from the JSON records (the truth)."""
    store = current_store()
    total = len(store.record_names())
    with _progress("Reindexing", length=total) as bar:
        result = store.index.catch_up(store, rebuild=True, progress=bar.update)
    for op_id in result["skipped"]:
        click.echo(f"Skipped {op_id}: its record cannot be read", err=True)
    click.echo(f"Indexed {result['added']} operation(s); skipped {len(result['skipped'])} "
               f"unreadable record(s)")


@history.command("cleanup")
@click.option("--older-than", "age", required=True, help="Age such as 30d, 12h or 2w.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
def cleanup_command(age, dry_run):
    """Delete operations older than an age, whole (record, inputs, outputs, index row)."""
    store, older_than = current_store(), _age(age)
    if dry_run:
        summary = retention.cleanup(store, older_than, dry_run=True)
        for op_id in summary["ids"]:
            click.echo(op_id)
        click.echo(f"Would delete {summary['operations']} operation(s), about "
                   f"{human_size(summary['bytes'])} (dry run: nothing deleted)")
        return
    count = len(retention.old_operations(store.index, older_than))
    with _progress("Deleting", length=count) as bar:
        summary = retention.cleanup(store, older_than, progress=bar.update)
    resumed = f"; finished an interrupted run ({summary['resumed']} file(s))" \
        if summary["resumed"] else ""
    click.echo(f"Deleted {summary['operations']} operation(s) older than {age}, freed "
               f"{human_size(summary['bytes'])}{resumed}")


@history.command("compress")
@click.option("--older-than", "age", required=True, help="Age such as 7d.")
def compress_command(age):
    """Pack each old day into one zip archive; the history keeps serving it."""
    store, older_than = current_store(), _age(age)
    days = len({op_id[:8] for op_id in store.loose_files()})
    with _progress("Compressing", length=days) as bar:
        done = retention.compress(store, older_than, progress=bar.update)
    click.echo(f"Compressed {done['days']} day(s): {human_size(done['bytesBefore'])} into "
               f"{human_size(done['bytesAfter'])}, {human_size(done['bytesSaved'])} saved")


@history.command("decompress")
def decompress_command():
    """Put every archived operation back as loose files."""
    store = current_store()
    days = archive.days(store.root)
    files = 0
    with _progress("Decompressing", days) as bar:
        for day in bar:
            files += archive.unpack(store.root, day)
    click.echo(f"Decompressed {len(days)} day(s), {files} file(s)")


@history.command("delete")
@click.argument("op_id")
def delete_command(op_id):
    """Delete one operation with its files (and a workflow's steps)."""
    store = current_store()
    if store.get(op_id) is None:
        raise click.ClickException(f"No operation {op_id!r}")
    ids = store.with_steps(op_id)
    freed = store.delete_many(ids)
    click.echo(f"Deleted {', '.join(ids)}; freed {human_size(freed)}")


@storage.command("init")
def init_command():
    """Create the storage folder and remove stale temporary files."""
    store = current_store()
    try:
        removed = store.init()
    except OSError as e:
        raise click.ClickException(f"Cannot use {store.root}: {e}")
    click.echo(f"Storage folders initialised: {store.root}")
    click.echo(f"Removed {removed} stale temporary file(s)")


def init_app(app):
    app.cli.add_command(history)
    app.cli.add_command(storage)
