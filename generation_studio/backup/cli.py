"""``flask backup run | verify | status | restore | prune``.

Each command answers a failure (no ``BACKUP_URL``, a malformed one, an
unknown bucket, refused credentials, a store that does not answer) with one
line and exit status 1; progress bars go to stderr, summaries to stdout.
"""

import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime

import click
from flask import current_app
from flask.cli import AppGroup

from ..cli import _progress
from ..errors import human_size
from .prune import prune
from .restore import operations_in, restore, select
from .sync import Remote, Skipped, plan, send
from .target import BackupError
from .verify import gather, verify


class BackupGroup(AppGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BackupError as e:
            raise click.ClickException(str(e)) from None


backup_cli = BackupGroup("backup", help="Back up the history to S3-compatible storage.")


def _backup(need_target: bool = True):
    """The app's backup, its automatic uploads paused while the command runs."""
    backup = current_app.extensions.get("backup")
    if backup is None:
        raise click.ClickException("Backup is off: set BACKUP_URL=s3://bucket/prefix "
                                   "(and BACKUP_ENDPOINT_URL for a store other than AWS S3)")
    backup.uploader.stop()
    backup.history.wait_ready()
    if need_target:
        backup.require_target().check()
    return backup


@backup_cli.command("run")
def run_command():
    """Upload everything the bucket lacks (incremental), then the day archives."""
    backup, started = _backup(), time.monotonic()
    target, ledger = backup.target, backup.ledger
    remote = Remote(target, ledger, target.listing())
    lacking, archives = plan(backup.history, ledger, remote)
    sent, skipped = 0, []
    with _progress("Backing up", length=len(lacking)) as bar, \
            ThreadPoolExecutor(current_app.config["BACKUP_THREADS"]) as pool:
        jobs = [pool.submit(backup.send_claimed, op_id, remote, False) for op_id in lacking]
        try:
            for job in as_completed(jobs):
                try:
                    sent += job.result()
                except Skipped as e:
                    skipped.append(str(e))
                bar.update(1)
        except BackupError as e:
            pool.shutdown(cancel_futures=True)
            ledger.failed(str(e))
            raise
    sent += send(target, ledger, remote, archives)
    ledger.succeeded()
    for why in skipped:
        click.echo(f"Skipped {why}", err=True)
    click.echo(f"Backed up {len(lacking) - len(skipped)} operation(s) and {len(archives)} "
               f"archive(s), {human_size(sent)} in {time.monotonic() - started:.1f} s to "
               f"{target.url}; everything else was already there")


@backup_cli.command("verify")
@click.option("--deep", is_flag=True, help="Read and hash every object, not only the changed.")
def verify_command(deep):
    """Compare the bucket with the history: missing, different, extra (exit 1 on the first two)."""
    backup = _backup()
    wanted, listing = gather(backup.history, backup.target, backup.ledger)
    with _progress("Verifying", length=len(set(wanted) | set(listing))) as bar:
        report = verify(backup.target, backup.ledger, wanted, listing, deep, bar.update)
    for _, found in sorted(report.problems.items()):
        for kind, name, why in found:
            click.echo(f"{kind.upper():9} {name}: {why}")
    click.echo(f"Checked {report.checked} object(s): {report.count('missing')} missing, "
               f"{report.count('different')} different, {report.count('extra')} extra")
    if not report.ok:
        raise SystemExit(1)


@backup_cli.command("status")
@click.option("--json", "as_json", is_flag=True)
def status_command(as_json):
    """Backed up, pending, failing (with the last error), last success."""
    state = _backup(need_target=False).status()
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(f"Backup to {state['target'] or '(unusable BACKUP_URL)'}: {state['state']}")
    click.echo(f"Backed up: {state['backedUp']} operation(s); pending: {state['pending']}")
    click.echo(f"Last success: {state['lastSuccess'] or 'never'}")
    if state["lastError"]:
        click.echo(f"Failing since {state['failingSince'] or '?'}: {state['lastError']}")


def _day(ctx, param, value):
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").strftime("%Y%m%d")
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


@backup_cli.command("restore")
@click.option("--id", "ids", multiple=True, help="An operation to restore (repeatable).")
@click.option("--since", callback=_day, help="Operations from this day on (YYYY-MM-DD).")
@click.option("--all", "everything", is_flag=True, help="Every operation in the bucket.")
@click.option("--overwrite", is_flag=True, help="Replace operations already here.")
def restore_command(ids, since, everything, overwrite):
    """Download operations into the storage folder, checked, and index them."""
    if not (ids or since or everything):
        raise click.UsageError("Say what to restore: --id ID, --since YYYY-MM-DD or --all")
    backup = _backup()
    listing = backup.target.listing()
    chosen = select(operations_in(listing), ids, since)
    with _progress("Restoring", length=len(chosen)) as bar:
        outcome = restore(backup.history, backup.target, backup.ledger, listing, chosen,
                          overwrite, current_app.config["BACKUP_THREADS"], bar.update)
    for op_id, why in sorted(outcome.skipped.items()):
        click.echo(f"Skipped {op_id}: {why}", err=True)
    for op_id, why in sorted(outcome.failed.items()):
        click.echo(f"Failed {op_id}: {why}", err=True)
    click.echo(f"Restored {len(outcome.restored)} operation(s); skipped "
               f"{len(outcome.skipped)}; failed {len(outcome.failed)}")
    if outcome.failed:
        raise SystemExit(1)


@backup_cli.command("prune")
@click.option("--older-than", "days", required=True, type=click.IntRange(1), metavar="DAYS",
              help="Delete backups of operations older than this many days, no longer on disk.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted.")
def prune_command(days, dry_run):
    """Delete old backups of operations that are no longer on disk."""
    backup = _backup()
    names, size = prune(backup.history, backup.target, backup.ledger, days, dry_run)
    for name in names:
        click.echo(name)
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} {len(names)} object(s), {human_size(size)}"
               + (" (dry run: nothing deleted)" if dry_run else ""))


def init_app(app):
    app.cli.add_command(backup_cli)
