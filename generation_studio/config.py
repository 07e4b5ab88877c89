"""Default settings of the studio, each with what it means.

Layers, later ones winning (see ``create_app``): these defaults, then
``instance/config.py``, then ``.env``, then any ``FLASK_<KEY>`` environment
variable (``FLASK_STORAGE_DIR=/tmp/ops``; values are parsed as JSON when they
can be, so ``FLASK_MAX_CONTENT_LENGTH=1000`` is a number).
"""

MB = 1024 * 1024

DEFAULTS = {
    # Folder of the operation records and their files. None means
    # "<instance folder>/data/operations", resolved by create_app.
    "STORAGE_DIR": None,
    # Which generation provider runs the operations: "local" works offline.
    "GENERATION_PROVIDER": "local",
    # Largest request body accepted; a larger one is answered 413.
    "MAX_CONTENT_LENGTH": 50 * MB,
    # Largest input image, in pixels (width x height); over it, 400.
    "MAX_IMAGE_PIXELS": 40_000_000,
    # Switch recording off (the benchmark's baseline). Results are then
    # returned inline as data URLs, since nothing keeps them.
    "RECORDING_ENABLED": True,
    # Most frames a video may have, whatever duration x fps asks for.
    "MAX_VIDEO_FRAMES": 120,
    # Longest side of the local provider's video frames, in pixels.
    "LOCAL_VIDEO_SIZE": 512,
    # Level of the studio's log lines (DEBUG, INFO, WARNING, ERROR).
    "LOG_LEVEL": "INFO",
}
