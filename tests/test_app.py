"""create_app: settings layers and start-up."""

import logging

import pytest

from generation_studio import create_app


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """A working folder with no .env and no FLASK_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("FLASK_"):
            monkeypatch.delenv(name)
    return tmp_path


def test_defaults(app):
    assert app.config["GENERATION_PROVIDER"] == "local"
    assert app.config["MAX_CONTENT_LENGTH"] == 50 * 1024 * 1024


def test_storage_dir_defaults_into_the_instance_folder(clean_env):
    app = create_app({})
    assert app.config["STORAGE_DIR"].endswith("instance/data/operations")


def test_prefixed_environment_variables_win(clean_env, monkeypatch):
    monkeypatch.setenv("FLASK_STORAGE_DIR", str(clean_env / "ops"))
    monkeypatch.setenv("FLASK_MAX_CONTENT_LENGTH", "1000")
    app = create_app()
    assert app.config["STORAGE_DIR"] == str(clean_env / "ops")
    assert app.config["MAX_CONTENT_LENGTH"] == 1000
    assert (clean_env / "ops").is_dir()


def test_dotenv_is_read(clean_env, monkeypatch):
    (clean_env / ".env").write_text(f"FLASK_STORAGE_DIR={clean_env / 'from-dotenv'}\n")
    monkeypatch.delenv("FLASK_STORAGE_DIR", raising=False)
    app = create_app()
    monkeypatch.delenv("FLASK_STORAGE_DIR", raising=False)  # load_dotenv set it
    assert app.config["STORAGE_DIR"] == str(clean_env / "from-dotenv")


def test_start_up_logs_the_storage_folder(storage_dir, caplog):
    with caplog.at_level(logging.INFO):
        create_app({"STORAGE_DIR": str(storage_dir)})
    assert f"Storage folders initialised: {storage_dir}" in caplog.text


def test_an_unusable_storage_folder_does_not_stop_start_up(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with caplog.at_level(logging.ERROR):
        app = create_app({"STORAGE_DIR": str(blocker / "ops")})
    assert "cannot be used" in caplog.text
    assert app.test_client().get("/api/health").get_json()["storageWritable"] is False


def test_unknown_provider_fails_start_up_clearly(storage_dir):
    with pytest.raises(ValueError, match="GENERATION_PROVIDER='nope' is unknown; "
                                         "choose one of fal, local, replicate"):
        create_app({"STORAGE_DIR": str(storage_dir), "GENERATION_PROVIDER": "nope"})
