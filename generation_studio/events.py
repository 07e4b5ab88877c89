"""Signals other parts of the studio may listen to (blinker, as Flask's own).

``operation_saved`` is sent after an operation's record is written (created
or changed), with ``record=`` its record: a backup or a notifier connects to
it instead of being called by the store.
"""

from blinker import Namespace

_signals = Namespace()
operation_saved = _signals.signal("operation-saved")
