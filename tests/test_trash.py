"""The trash (move, hide, restore, empty after TRASH_DAYS), stars, the
selection bar's bulk actions, and the filters the gallery needs."""

import json
from datetime import timedelta

import pytest

from generation_studio import create_app


def make(client, prompt="a lake", **fields):
    answer = client.post("/api/generate/text-to-image", json={"prompt": prompt, **fields})
    assert answer.status_code == 200
    return answer.get_json()["operationId"]


def listed(client, query=""):
    return [o["operationId"] for o in client.get(f"/api/history?{query}").get_json()["operations"]]


def test_trash_hides_and_restore_brings_back(client, storage_dir):
    kept, gone = make(client, "kept"), make(client, "gone")
    answer = client.post(f"/api/history/{gone}/trash")
    assert answer.status_code == 200
    assert answer.get_json()["trashed"] == [gone]
    on_disk = json.loads((storage_dir / f"{gone}.json").read_text())
    assert on_disk["trashedAt"].endswith("Z")
    assert listed(client) == [kept]
    assert listed(client, "trash=only") == [gone]
    assert listed(client, "trash=include") == [gone, kept]
    # Still there, still counted in what the storage holds.
    assert client.get(f"/api/history/{gone}").status_code == 200
    assert client.get("/api/history/stats").get_json()["total"] == 2
    assert client.post(f"/api/history/{gone}/restore").get_json()["restored"] == [gone]
    assert listed(client) == [gone, kept]
    assert json.loads((storage_dir / f"{gone}.json").read_text())["trashedAt"] is None


def test_a_workflow_goes_to_the_trash_with_its_steps(client):
    answer = client.post("/api/workflow/execute", json={"prompt": "a castle, then make it sepia"})
    flow = answer.get_json()["operationId"]
    steps = answer.get_json()["steps"]
    assert sorted(client.post(f"/api/history/{flow}/trash").get_json()["trashed"]) == \
        sorted([flow, *steps])
    assert listed(client) == []
    assert sorted(client.post(f"/api/history/{flow}/restore").get_json()["restored"]) == \
        sorted([flow, *steps])
    assert listed(client, "toplevel=1") == [flow]


def test_the_trash_is_emptied_after_trash_days(app, client, storage_dir):
    old, fresh = make(client, "old"), make(client, "fresh")
    client.post(f"/api/history/{old}/trash")
    client.post(f"/api/history/{fresh}/trash")
    history = app.extensions["history"]
    history.update(old, lambda r: {"trashedAt": "2020-01-01T00:00:00.000Z"})
    emptied = history.empty_trash(timedelta(days=30))
    assert emptied["ids"] == [old]
    assert not list(storage_dir.glob(f"{old}*"))
    assert listed(client, "trash=only") == [fresh]


def test_trash_restore_and_star_need_the_admin_token_when_set(storage_dir):
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                      "HISTORY_CHECK_WAITS": True, "ADMIN_TOKEN": "s3cret"})
    try:
        client = app.test_client()
        op = make(client)
        for action in ("trash", "restore", "star"):
            assert client.post(f"/api/history/{op}/{action}").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert client.post(f"/api/history/{op}/trash", headers=auth).status_code == 200
        assert client.post(f"/api/history/{op}/restore", headers=auth).status_code == 200
    finally:
        app.extensions["jobs"].stop_workers()


def test_star_and_the_starred_filter(client):
    plain, starred = make(client, "plain"), make(client, "starred")
    answer = client.post(f"/api/history/{starred}/star", json={"starred": True})
    assert answer.get_json()["operation"]["starred"] is True
    assert listed(client, "starred=1") == [starred]
    client.post(f"/api/history/{starred}/star", json={"starred": False})
    assert listed(client, "starred=1") == []
    assert listed(client) == [starred, plain]
    bad = client.post(f"/api/history/{plain}/star", json={"starred": "yes"})
    assert (bad.status_code, bad.get_json()["field"]) == (400, "starred")


@pytest.mark.parametrize("query, field", [("trash=maybe", "trash"), ("starred=2", "starred"),
                                          ("ids=../x", "ids"), ("toplevel=yes", "toplevel")])
def test_bad_filters_are_400_naming_the_field(client, query, field):
    answer = client.get(f"/api/history?{query}")
    assert (answer.status_code, answer.get_json()["field"]) == (400, field)


def test_the_ids_filter_selects_those(client):
    a, b, c = make(client, "a"), make(client, "b"), make(client, "c")
    assert listed(client, f"ids={a}&ids={c}") == [c, a]
    assert b not in listed(client, f"ids={a}")


def test_the_history_answers_filters_from_the_folder_while_the_index_rebuilds(app, client):
    kept, gone = make(client, "kept"), make(client, "gone")
    client.post(f"/api/history/{gone}/trash")
    client.post(f"/api/history/{kept}/star")
    history = app.extensions["history"]
    only = history._scan_page  # the degraded path applies the same rules
    from generation_studio.history.filters import Filters
    assert [r["operationId"] for r in only(Filters(trash="exclude"), 10, 0, None).operations] \
        == [kept]
    assert [r["operationId"] for r in only(Filters(trash="only"), 10, 0, None).operations] \
        == [gone]
    assert [r["operationId"] for r in only(Filters(starred=True), 10, 0, None).operations] \
        == [kept]


def csrf(client):
    with client.session_transaction() as session:
        session["csrf"] = "token"
    return "token"


def test_the_gallery_trash_button_offers_an_undo(client):
    op = make(client)
    answer = client.post(f"/history/{op}/trash", data={"csrf_token": csrf(client),
                                                       "next": "/history?q=lake"})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/history?q=lake"
    with client.session_transaction() as session:
        assert ("undo", op) in session["_flashes"]
    assert listed(client) == []
    client.post("/history/bulk", data={"csrf_token": "token", "action": "restore", "ids": op})
    assert listed(client) == [op]


def test_bulk_actions_and_a_foreign_next(client):
    a, b = make(client, "a"), make(client, "b")
    token = csrf(client)
    answer = client.post("/history/bulk", data={"csrf_token": token, "action": "star",
                                                "ids": [a, b], "next": "//evil.example/x"})
    assert answer.headers["Location"] == "/history"
    assert listed(client, "starred=1") == [b, a]
    export = client.post("/history/bulk", data={"csrf_token": token, "action": "export",
                                                "ids": [a]})
    assert export.mimetype == "text/csv"
    assert len(export.get_data(as_text=True).strip().splitlines()) == 2
    client.post("/history/bulk", data={"csrf_token": token, "action": "delete", "ids": [a]})
    assert listed(client, "trash=include") == [b]
    no_csrf = client.post("/history/bulk", data={"action": "delete", "ids": [b]})
    assert no_csrf.status_code == 400
    assert listed(client) == [b]


def test_the_cli_trashes_lists_and_restores(client, runner):
    op = make(client, "a heron")
    assert runner.invoke(args=["history", "trash", op]).output == f"Moved to the trash: {op}\n"
    assert op not in runner.invoke(args=["history", "list"]).output
    assert op in runner.invoke(args=["history", "list", "--trash", "only"]).output
    assert runner.invoke(args=["history", "restore", op]).output == f"Restored: {op}\n"
    assert op in runner.invoke(args=["history", "list"]).output
