"""Fixtures of the backup tests (loaded with ``pytest_plugins``): the S3
endpoint, started and stopped here with credentials of its own, a fresh
bucket per test, and apps backing up into it."""

import uuid

import pytest

from generation_studio import create_app

from .backup_support import ACCESS_KEY, S3, SECRET_KEY, backup_config


@pytest.fixture(scope="session")
def s3():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        server = S3()
        server.start()
        yield server
        server.stop()


@pytest.fixture
def bucket(s3):
    name = f"bk-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def make_app(s3, bucket, tmp_path):
    """``make_app(**settings)``: an app backing up into this test's bucket."""
    made = []

    def make(storage_dir=None, **extra):
        app = create_app(backup_config(storage_dir or tmp_path / "operations", bucket, s3.url,
                                       **extra))
        made.append(app)
        return app
    yield make
    for app in made:
        if app.extensions.get("backup"):
            app.extensions["backup"].uploader.stop()
        app.extensions["jobs"].stop_workers()


