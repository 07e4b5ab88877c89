"""The flask history and flask storage commands, through Flask's CLI runner."""

import json
import time


def _generate(client, prompt, **extra):
    body = client.post("/api/generate/text-to-image", json={"prompt": prompt, **extra}).get_json()
    time.sleep(0.002)
    return body.get("operationId")


def test_history_list_is_a_readable_table(client, runner):
    first = _generate(client, "a quiet lake")
    failed = _generate(client, "", aspectRatio="1:1")
    result = runner.invoke(args=["history", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["ID", "CREATED", "(UTC)", "TYPE"]
    assert lines[1].startswith(failed) and "failed" in lines[1] and "prompt is required" in lines[1]
    assert lines[2].startswith(first) and "succeeded" in lines[2] and "a quiet lake" in lines[2]
    assert lines[-1] == "2 of 2 operation(s)"


def test_history_list_filters_and_json(client, runner):
    _generate(client, "one")
    failed = _generate(client, "")
    result = runner.invoke(args=["history", "list", "--status", "failed", "--json"])
    assert result.exit_code == 0
    assert [r["operationId"] for r in json.loads(result.output)] == [failed]
    result = runner.invoke(args=["history", "list", "--type", "text_to_video"])
    assert result.output.splitlines()[-1] == "0 of 0 operation(s)"
    assert runner.invoke(args=["history", "list", "--limit", "1"]).output.splitlines()[-1] \
        == "1 of 2 operation(s)"


def test_history_list_rejects_unknown_type(runner):
    result = runner.invoke(args=["history", "list", "--type", "cats"])
    assert result.exit_code == 2 and "text_to_image" in result.output


def test_history_show(client, runner, storage_dir):
    op_id = _generate(client, "a red barn")
    result = runner.invoke(args=["history", "show", op_id])
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads((storage_dir / f"{op_id}.json").read_text())


def test_history_show_unknown(runner):
    result = runner.invoke(args=["history", "show", "20990101_aaaaaaaaaaaa"])
    assert result.exit_code == 1 and "No operation '20990101_aaaaaaaaaaaa'" in result.output


def test_storage_init(runner, storage_dir):
    stale = storage_dir / ".x.json.abc.tmp"
    stale.write_text("{")
    import os
    os.utime(stale, (0, 0))
    result = runner.invoke(args=["storage", "init"])
    assert result.exit_code == 0
    assert f"Storage folders initialised: {storage_dir}" in result.output
    assert "Removed 1 temporary file(s) of dead writers and 0 file(s) without a record" \
        in result.output
    assert not stale.exists()
