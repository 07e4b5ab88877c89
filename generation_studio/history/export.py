"""CSV export of the history, streamed.

One row per operation, with these columns (the README lists them too)::

    operationId, operationType, status, createdAt, completedAt, durationMs,
    provider, model, prompt, parentId, error, inputCount, inputBytes,
    outputBytes, resultFile, trashedAt, starred

A text value that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading ``'`` so that a spreadsheet shows it instead of running it.
"""

import csv
import io
import itertools

from .index import COLUMNS

HEADERS = ("operationId", "operationType", "status", "createdAt", "completedAt", "durationMs",
           "provider", "model", "prompt", "parentId", "error", "inputCount", "inputBytes",
           "outputBytes", "resultFile", "trashedAt", "starred")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 500
assert len(HEADERS) == len(COLUMNS)


def guard(value):
    """``value`` made safe for a spreadsheet cell."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def chunks(history, filters, progress=None):
    """The CSV text, header first, in chunks of rows (newest first)."""
    rows = iter(history.export_rows(filters))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADERS)
    while batch := list(itertools.islice(rows, ROWS_PER_CHUNK)):
        writer.writerows([guard(v) for v in row] for row in batch)
        if progress:
            progress(len(batch))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
