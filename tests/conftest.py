"""Fixtures: an app on a temporary storage folder, its client and CLI runner."""

import io
import json
import os
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from generation_studio import create_app


@pytest.fixture(autouse=True, scope="session")
def system_temp(tmp_path_factory):
    """The system's temp folder, for this run: what the studio puts there (an
    index it cannot keep in its place) stays with the run's files, not in /tmp."""
    folder = str(tmp_path_factory.mktemp("system-temp"))
    before, tempfile.tempdir = (tempfile.tempdir, os.environ.get("TMPDIR")), folder
    os.environ["TMPDIR"] = folder  # and in the servers the tests start
    yield folder
    tempfile.tempdir = before[0]
    if before[1] is None:
        os.environ.pop("TMPDIR")
    else:
        os.environ["TMPDIR"] = before[1]


@pytest.fixture(autouse=True, scope="session")
def quick_index_retries():
    """An index that cannot be rebuilt (an unusable folder) is retried after
    5, 30 and 120 s: its thread would outlive its test by minutes and log into
    the tests after it. Here the retries come at once."""
    from generation_studio.history import rebuild
    before, rebuild.RETRY_SECONDS = rebuild.RETRY_SECONDS, (0.05, 0.05, 0.05)
    yield
    rebuild.RETRY_SECONDS = before


@pytest.fixture
def storage_dir(tmp_path) -> Path:
    return tmp_path / "operations"


@pytest.fixture
def app(storage_dir):
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir), "HISTORY_CHECK_WAITS": True,
                      "MAX_VIDEO_FRAMES": 24, "LOCAL_VIDEO_SIZE": 96})
    yield app
    app.extensions["jobs"].stop_workers()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def records(storage_dir):
    """Read every record on disk, oldest first, as a list of dicts."""
    def read():
        paths = sorted(storage_dir.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        return [json.loads(p.read_text()) for p in paths]
    return read


def stored_names(folder) -> list[str]:
    """Names of the files in the storage folder (not its index or archives folders)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def empty_index(index) -> None:
    """Take every row out of the history index, as a rebuild does first."""
    with index.refill():
        pass


TEXT_TO_IMAGE = {"operationType": "text_to_image"}  # what a record names first


def png_bytes(size=(64, 48), colour=(200, 30, 30), fmt="PNG", pattern=False) -> bytes:
    """An image of one colour, or with ``pattern`` a colour over a gradient
    (video encoders merge identical frames, so moving over a flat colour
    makes a one-frame video)."""
    image = Image.new("RGB", size, colour)
    if pattern:
        image = Image.composite(image, Image.new("RGB", size, (255, 255, 255)),
                                Image.linear_gradient("L").rotate(45).resize(size))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture
def replicate():
    """A loopback fake of Replicate's API (see fakes.py)."""
    from .fakes import FakeReplicate
    from .test_replicate import TOKEN
    fake = FakeReplicate(TOKEN)
    yield fake
    fake.close()


@pytest.fixture
def fal():
    """A loopback fake of fal's queue API (see fakes.py)."""
    from .fakes import FakeFal
    from .test_fal import KEY
    fake = FakeFal(KEY)
    yield fake
    fake.close()


def fast_provider_settings(storage_dir) -> dict:
    """Hosted providers' settings for the tests: fast polling, retries and deadlines."""
    return {"PROVIDER_SCHEMA_DIR": str(storage_dir.parent / "schemas"),
            "PROVIDER_POLL_INTERVAL": 0.01, "PROVIDER_POLL_MAX_INTERVAL": 0.02,
            "PROVIDER_RETRY_BACKOFF": 0.01, "PROVIDER_RETRY_MAX_BACKOFF": 0.05,
            "PROVIDER_MAX_RETRY_WAIT": 0.05, "PROVIDER_CANCEL_TIMEOUT": 1,
            "PROVIDER_IMAGE_DEADLINE": 5, "PROVIDER_VIDEO_DEADLINE": 5}


def hosted_app(fake, storage_dir, **settings):
    """An app on ``fake``'s provider, with the fast settings of its test module."""
    from . import test_fal, test_replicate
    from .fakes import FakeReplicate
    module = test_replicate if isinstance(fake, FakeReplicate) else test_fal
    return create_app(module.settings(fake, storage_dir, **settings))
