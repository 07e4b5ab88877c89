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
    # The history's SQLite index. None means "<STORAGE_DIR>/.index/history.sqlite3",
    # so that each storage folder has its own.
    "INDEX_PATH": None,
    # Wait for the index check at start-up instead of running it in the
    # background (the server answers meanwhile; the tests and the CLI wait).
    "HISTORY_CHECK_WAITS": False,
    # How often the server removes what dead writers left (see history.recovery).
    "RECOVERY_INTERVAL_SECONDS": 300,
    # The job queue. None: SqliteHuey in "<STORAGE_DIR>/.queue/huey.sqlite3"
    # (QUEUE_PATH); "redis://host:port/db": RedisHuey, shared by several servers.
    "QUEUE_URL": None,
    "QUEUE_PATH": None,
    "QUEUE_NAME": "generation-studio",
    # Run jobs in threads of the web process too (false when `flask worker`
    # processes do it, as `make run` sets up), and how many.
    "QUEUE_IN_PROCESS": True,
    "QUEUE_THREADS": 2,
    # How long a generation request waits for its job before answering 202;
    # a client's "Prefer: wait=N" may ask for up to MAX_SYNC_WAIT_SECONDS.
    "SYNC_WAIT_SECONDS": 60,
    "MAX_SYNC_WAIT_SECONDS": 300,
    # A running job's lease: renewed every third of it; past it, with no
    # renewal, its worker is taken for dead and the job is taken up again.
    "LEASE_SECONDS": 30,
    # How long a cancel waits for a running job to stop before answering.
    "CANCEL_WAIT_SECONDS": 3,
    # The longest a /events stream stays open (the browser then reconnects).
    "EVENTS_MAX_SECONDS": 600,
    # Delete operations older than this many days, checked at most once an
    # hour by the server itself. None: keep everything.
    "RETENTION_DAYS": None,
    # Operations moved to the trash from the studio are deleted for good
    # after this many days in it (checked with the hourly clean-up).
    "TRASH_DAYS": 30,
    # Which generation provider runs the operations: "local" works offline.
    "GENERATION_PROVIDER": "local",
    # Largest request body accepted; a larger one is answered 413.
    "MAX_CONTENT_LENGTH": 50 * MB,
    # Largest input image, in pixels (width x height); over it, 400.
    "MAX_IMAGE_PIXELS": 40_000_000,
    # The image gate's other limits (``media.open_checked``), checked from an
    # image's header before it is decoded, for uploads, stored references and
    # providers' results alike: bytes of one image, width:height (a 1,000,000 x 1
    # PNG is refused), and frames of an animated image.
    "MAX_IMAGE_BYTES": 50 * MB,
    "MAX_IMAGE_ASPECT": 50,
    "MAX_IMAGE_FRAMES": 1000,
    # Switch recording off (the benchmark's baseline). Results are then
    # returned inline as data URLs, since nothing keeps them.
    "RECORDING_ENABLED": True,
    # Most frames a video may have, whatever duration x fps asks for.
    "MAX_VIDEO_FRAMES": 120,
    # Longest side of the local provider's video frames, in pixels.
    "LOCAL_VIDEO_SIZE": 512,
    # Level of the studio's log lines (DEBUG, INFO, WARNING, ERROR).
    "LOG_LEVEL": "INFO",

    # Hosted providers. Tokens are read from these settings or, more usually,
    # from the environment variables of the same name (.env).
    "REPLICATE_API_TOKEN": None,
    "REPLICATE_API_BASE": "https://api.replicate.com/v1",
    # Models per operation type, over the defaults (see the README), e.g.
    # {"text_to_image": "black-forest-labs/flux-1.1-pro"}.
    "REPLICATE_MODELS": {},
    # How long a prediction request may wait for the result (Prefer: wait=n).
    "REPLICATE_WAIT_SECONDS": 60,
    "FAL_KEY": None,
    "FAL_QUEUE_BASE": "https://queue.fal.run",
    "FAL_MODELS": {},
    # fal's REST API, for uploading large input images to its storage. None:
    # https://rest.fal.ai, or FAL_QUEUE_BASE's origin when that is not fal's own
    # (a proxy or a test double serving both).
    "FAL_REST_BASE": None,
    # Where a fal endpoint's OpenAPI schema is published ({model}: its id). None:
    # https://fal.ai/api/openapi/queue/openapi.json?endpoint_id={model}, or the
    # same path on FAL_QUEUE_BASE's origin when that is not fal's own.
    "FAL_SCHEMA_URL": None,
    # Input images up to this size go inline as data URLs; larger ones are
    # uploaded first (Replicate's Files API, fal's storage).
    "PROVIDER_INLINE_INPUT_BYTES": 256 * 1024,
    # Folder of the input schemas fetched for models chosen in REPLICATE_MODELS
    # or FAL_MODELS. None means "<instance folder>/provider_schemas".
    "PROVIDER_SCHEMA_DIR": None,
    # Deadlines: past them the job is canceled and the request fails with 504.
    "PROVIDER_IMAGE_DEADLINE": 300,
    "PROVIDER_VIDEO_DEADLINE": 1800,
    # Polling: first interval, growing by half each time up to the maximum.
    "PROVIDER_POLL_INTERVAL": 1.0,
    "PROVIDER_POLL_MAX_INTERVAL": 10.0,
    # Backoff before retrying a GET after a 5xx, a 429, a timeout or a
    # connection error: doubles from PROVIDER_RETRY_BACKOFF up to
    # PROVIDER_RETRY_MAX_BACKOFF (with jitter), until the job's deadline.
    "PROVIDER_RETRY_BACKOFF": 1.0,
    "PROVIDER_RETRY_MAX_BACKOFF": 10.0,
    # Seconds spent trying to cancel a job the studio gives up on.
    "PROVIDER_CANCEL_TIMEOUT": 30,
    # Longest wait honoured for a 429's Retry-After before retrying.
    "PROVIDER_MAX_RETRY_WAIT": 60,
    # Seconds to connect and to wait for an answer from a provider.
    "PROVIDER_HTTP_TIMEOUT": 30,
    # The studio's address as the providers reach it (https://studio.example.com).
    # Set, hosted jobs are created with a webhook to
    # PUBLIC_URL/api/webhooks/<provider>/<operation id>: the result is fetched
    # as soon as the provider calls, and polling, slowed down to
    # PROVIDER_WEBHOOK_POLL_INTERVAL, is only the fallback. None: polling only.
    "PUBLIC_URL": None,
    "PROVIDER_WEBHOOK_POLL_INTERVAL": 30.0,
    # Largest gap between a webhook's signed timestamp and our clock (replays).
    "WEBHOOK_TOLERANCE_SECONDS": 300,
    # Where fal publishes the public keys its webhooks are signed with. None:
    # https://rest.alpha.fal.ai/.well-known/jwks.json, or the same path on
    # FAL_QUEUE_BASE's origin when that is not fal's own.
    "FAL_JWKS_URL": None,
    # The only origins results are downloaded from ("*." for subdomains).
    "ALLOWED_RESULT_ORIGINS": [
        "https://replicate.delivery", "https://*.replicate.delivery",
        "https://fal.media", "https://*.fal.media",
    ],
    # Largest result downloaded; over it, the operation fails.
    "MAX_RESULT_BYTES": 512 * MB,
    # Token for DELETE and the admin pages (none: open).
    "ADMIN_TOKEN": None,
    # How long an admin login lasts, and the SQLite file of the live ones
    # (logout deletes one: a copied cookie stops working). None means
    # "<instance folder>/admin_sessions.sqlite3".
    "ADMIN_SESSION_HOURS": 12,
    "ADMIN_SESSIONS_PATH": None,
    # Failed logins allowed per client address within the window; more: 429.
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_WINDOW_SECONDS": 60,
    # The session cookie: never readable by scripts, not sent on other sites'
    # sub-requests or posts, and Secure whenever the request came over HTTPS
    # (true: always, for a proxy that ends TLS and forwards plain HTTP).
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,

    # Backup to S3-compatible storage (generation_studio/backup). None: off.
    # "s3://bucket/prefix"; credentials and region are read the boto3 way
    # (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_PROFILE).
    "BACKUP_URL": None,
    # The store's address when it is not AWS S3 (MinIO, R2, B2, Ceph...).
    "BACKUP_ENDPOINT_URL": None,
    # Send each operation when it ends (false: only `flask backup run`, from cron say).
    "BACKUP_AUTO": True,
    # Seconds to connect and to wait for an answer, and attempts per request
    # (the first included): a store that does not answer fails in seconds
    # (at most attempts x timeout), not minutes.
    "BACKUP_CONNECT_TIMEOUT": 3,
    "BACKUP_READ_TIMEOUT": 10,
    "BACKUP_MAX_ATTEMPTS": 2,
    # Files larger than this many MB go up as multipart uploads of this size.
    "BACKUP_MULTIPART_MB": 8,
    # Operations `flask backup run` sends, and `flask backup restore` fetches, at once.
    "BACKUP_THREADS": 4,
    # Backoff after a failed upload: doubles from the first to the second.
    "BACKUP_RETRY_SECONDS": 2,
    "BACKUP_RETRY_MAX_SECONDS": 300,
    # How often the uploader looks for work other processes queued, and how
    # often it compares the whole history with the bucket (archives, misses).
    "BACKUP_POLL_SECONDS": 5,
    "BACKUP_RESCAN_SECONDS": 3600,
}
