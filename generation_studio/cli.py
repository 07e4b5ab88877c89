"""The ``flask history`` and ``flask storage`` command groups."""

import json
import os
import signal
import sys
import threading

import click
from flask.cli import AppGroup, with_appcontext
from werkzeug.datastructures import MultiDict

from .catalog import OPERATION_TYPES
from .errors import human_size
from .history import (IndexBusy, IndexUnavailable, NotFound, current_history, export, filters,
                      retention)
from .history.filters import FilterError
from .history.rebuild import skipped_text
from .jobs import current_jobs, queue
from .storage import archive, layout
from .storage.atomic import atomic_file


class HistoryGroup(AppGroup):
    """Commands that wait for the start-up check of the index, and turn the
    history's domain errors into clear messages."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (NotFound, IndexUnavailable) as e:
            raise click.ClickException(str(e)) from None
        except FilterError as e:
            raise click.UsageError(e.message) from None


history = HistoryGroup("history", help="Read, export and tidy the recorded operations.")
storage = HistoryGroup("storage", help="Manage the operation storage folder.")


def _history():
    service = current_history()
    service.wait_ready()
    return service



def filter_options(command):
    """The history API's filters, as options."""
    for option in reversed([
        click.option("--type", "types", multiple=True,
                     help=f"Only this operation type (repeatable): {', '.join(OPERATION_TYPES)}, "
                          "or another the history holds."),
        click.option("--status", type=click.Choice(list(filters.STATUSES))),
        click.option("--provider", type=click.Choice(list(filters.PROVIDERS))),
        click.option("--q", help="Words the prompt contains."),
        click.option("--since", help="From this date (2026-11-01) or ISO time."),
        click.option("--until", help="Up to this date (included) or ISO time."),
        click.option("--trash", type=click.Choice(list(filters.TRASH)),
                     help="Trashed operations: left out (exclude, the default), only, include."),
        click.option("--starred", is_flag=True, help="Only the starred."),
    ]):
        command = option(command)
    return command


def _filters(types, **values) -> filters.Filters:
    args = MultiDict([("type", t) for t in types])
    args.update({k: "1" if v is True else v for k, v in values.items() if v})
    return _history().filters_from(args)


def _progress(label: str, iterable=None, length=None):
    """A progress bar on stderr, so that stdout stays clean for the summary."""
    return click.progressbar(iterable, length=length, label=label, file=sys.stderr)


def _age(text: str):
    try:
        return retention.parse_age(text)
    except FilterError as e:
        raise click.BadParameter(e.message) from None


@history.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@filter_options
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def list_command(limit, types, as_json, **values):
    """List operations, newest first."""
    found = _history().page(_filters(types, **values), limit)
    page, total = found.operations, found.total
    if as_json:
        click.echo(json.dumps(page, indent=2, ensure_ascii=False))
        return
    rows = [("ID", "CREATED (UTC)", "TYPE", "STATUS", "MS", "PROVIDER", "PROMPT")]
    for r in page:
        rows.append((r["operationId"], r["createdAt"][:19].replace("T", " "),
                     r.get("operationType") or "?", r["status"], _ms(r.get("durationMs")),
                     r["provider"].get("name") or "?",
                     _short(str(r.get("prompt") or r.get("error") or ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    click.echo(f"{len(page)} of {'?' if total is None else total} operation(s)")


def _ms(value) -> str:
    return f"{value:.0f}" if isinstance(value, (int, float)) else "-"


def _short(text: str, width: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@history.command("show")
@click.argument("op_id")
def show_command(op_id):
    """Print one operation's record as JSON."""
    click.echo(json.dumps(_history().require(op_id), indent=2, ensure_ascii=False))


@history.command("stats")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, filters.MAX_DAYS))
@filter_options
@click.option("--json", "as_json", is_flag=True)
def stats_command(days, types, as_json, **values):
    """Counts, success rate, durations and storage, by type."""
    values["trash"] = values.get("trash") or "include"  # trashed ones still take room
    body = _history().stats(_filters(types, **values), days)
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    rate = "-" if body["successRate"] is None else f"{body['successRate']:.1%}"
    click.echo(f"{body['total']} operation(s): {body['succeeded']} succeeded, "
               f"{body['failed']} failed ({rate} success); {human_size(body['storageBytes'])}")
    click.echo(f"{'TYPE':28}{'COUNT':>7}{'FAILED':>8}{'MEDIAN MS':>11}{'P95 MS':>9}{'STORAGE':>15}")
    for name, entry in sorted(body["byType"].items(), key=lambda kv: -kv[1].get("count", 0)):
        durations = entry.get("durationMs") or {}
        median, p95 = (_ms(durations.get(k)) for k in ("median", "p95"))
        click.echo(f"{name:28}{entry.get('count', 0):>7}{entry.get('failed', 0):>8}"
                   f"{median:>11}{p95:>9}{human_size(entry.get('bytes', 0)):>15}")
    click.echo(f"Per day, last {days} days: " +
               (", ".join(f"{d} {n}" for d, n in body["perDay"].items()) or "none"))


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"  # unknown: no duration recorded


@history.command("export")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The CSV file to write.")
@filter_options
def export_command(output, types, **values):
    """Write the operations as CSV (one row each, newest first)."""
    service, selected = _history(), _filters(types, **values)
    total = service.count(selected)
    with _progress("Exporting", length=total or 0) as bar, \
            atomic_file(output, "w", newline="", encoding="utf-8") as f:
        for chunk in export.chunks(service, selected, progress=bar.update):
            f.write(chunk)
    click.echo(f"Exported {bar.pos} operation(s) to {output}")


@history.command("reindex")
def reindex_command():
    """Rebuild the index from the JSON records (the truth), repairing a broken one."""
    service = current_history()  # its start-up check is followed, not waited for (see rebuild_now)
    with _progress("Reindexing", length=0) as bar:
        def advance(steps: int) -> None:
            bar.length = service.keeper.progress[1]  # known once the folder is listed
            bar.update(steps)
        try:
            result = service.reindex(progress=advance)
        except IndexBusy as e:
            raise click.ClickException(str(e)) from None
    for name, why in sorted(result["skipped"].items()):
        click.echo(f"Skipped {name}: {why}", err=True)
    skipped = result["skipped"]
    click.echo(f"Indexed {result['added']} operation(s); skipped: {len(skipped)}"
               + (f" — {skipped_text(skipped, 'named above')}" if skipped else ""))


@history.command("cleanup")
@click.option("--older-than", "age", required=True, help="Age such as 30d, 12h or 2w.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
def cleanup_command(age, dry_run):
    """Delete operations older than an age, whole (record, inputs, outputs, index row)."""
    service, older_than = _history(), _age(age)
    if dry_run:
        summary = service.cleanup(older_than, dry_run=True)
        for op_id in summary["ids"]:
            click.echo(op_id)
        click.echo(f"Would delete {summary['operations']} operation(s), about "
                   f"{human_size(summary['bytes'])} (dry run: nothing deleted)")
        return
    count = len(service.old_operations(older_than))
    with _progress("Deleting", length=count) as bar:
        summary = service.cleanup(older_than, progress=bar.update)
    resumed = f"; finished an interrupted run ({summary['resumed']} file(s))" \
        if summary["resumed"] else ""
    click.echo(f"Deleted {summary['operations']} operation(s) older than {age}, freed "
               f"{human_size(summary['bytes'])}{resumed}")


@history.command("compress")
@click.option("--older-than", "age", required=True, help="Age such as 7d.")
def compress_command(age):
    """Pack each old day into one zip archive; the history keeps serving it."""
    service, older_than = _history(), _age(age)
    days = {layout.day_of(i) for i in service.folder.scan().records}
    with _progress("Compressing", length=len(days)) as bar:
        done = service.compress(older_than, progress=bar.update)
    click.echo(f"Compressed {done['days']} day(s): {human_size(done['bytesBefore'])} into "
               f"{human_size(done['bytesAfter'])}, {human_size(done['bytesSaved'])} saved")


@history.command("decompress")
def decompress_command():
    """Put every archived operation back as loose files."""
    service = _history()
    with _progress("Decompressing", length=len(archive.days(service.root))) as bar:
        done = service.decompress(progress=bar.update)
    click.echo(f"Decompressed {done['days']} day(s), {done['files']} file(s)")


@history.command("delete")
@click.argument("op_id")
def delete_command(op_id):
    """Delete one operation with its files (and a workflow's steps)."""
    ids, freed = _history().delete(op_id)
    click.echo(f"Deleted {', '.join(ids)}; freed {human_size(freed)}")


@history.command("trash")
@click.argument("op_id")
def trash_command(op_id):
    """Move an operation (and a workflow's steps) to the trash."""
    click.echo(f"Moved to the trash: {', '.join(_history().trash(op_id)) or 'nothing (already there)'}")


@history.command("restore")
@click.argument("op_id")
def restore_command(op_id):
    """Take an operation (and a workflow's steps) out of the trash."""
    click.echo(f"Restored: {', '.join(_history().untrash(op_id)) or 'nothing (not in the trash)'}")


@storage.command("init")
def init_command():
    """Create the storage folder and remove what dead writers left."""
    service = _history()
    try:
        service.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.ClickException(f"Cannot use {service.root}: {e}") from None
    done = service.recover()
    click.echo(f"Storage folders initialised: {service.root}")
    click.echo(f"Removed {done.get('tempFiles', 0)} temporary file(s) of dead writers and "
               f"{done.get('orphanFiles', 0)} file(s) without a record")


@click.command("worker")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Jobs run at once by this process.")
@with_appcontext
def worker_command(threads):
    """Run queued operations until stopped (Ctrl-C or SIGTERM)."""
    jobs = current_jobs()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    jobs.start_workers(threads)
    click.echo(f"Worker {os.getpid()}: {threads} thread(s) on the "
               f"{queue.describe(jobs.app.config)} queue; Ctrl-C stops it")
    stop.wait()
    click.echo("Stopping: running jobs are taken up again by the next worker")
    jobs.stop_workers()


def init_app(app):
    app.cli.add_command(history)
    app.cli.add_command(storage)
    app.cli.add_command(worker_command)
