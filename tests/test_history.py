"""The history API: listing, one record, its files, and what is refused."""

import time

import pytest

GENERATE = "/api/generate/text-to-image"


@pytest.fixture
def three_operations(client):
    ids = []
    for payload in ({"prompt": "first"}, {"prompt": ""}, {"prompt": "third"}):
        ids.append(client.post(GENERATE, json=payload).get_json()["operationId"])
        time.sleep(0.002)
    return ids


def test_history_lists_newest_first(client, three_operations):
    body = client.get("/api/history").get_json()
    assert body["success"] is True and body["total"] == 3
    assert [op["operationId"] for op in body["operations"]] == three_operations[::-1]


def test_history_limit_offset_and_filters(client, three_operations):
    body = client.get("/api/history?limit=1&offset=1").get_json()
    assert [op["operationId"] for op in body["operations"]] == [three_operations[1]]
    assert body["total"] == 3
    failed = client.get("/api/history?status=failed").get_json()
    assert [op["operationId"] for op in failed["operations"]] == [three_operations[1]]
    typed = client.get("/api/history?type=text_to_image&type=text_to_video").get_json()
    assert typed["total"] == 3


@pytest.mark.parametrize("query, words", [
    ("limit=0", ["limit", "1 to 500"]), ("limit=9999", ["limit", "1 to 500"]),
    ("limit=ten", ["limit", "whole number"]), ("offset=-1", ["offset"]),
    ("status=done", ["status", "succeeded, failed"]), ("type=cats", ["type", "text_to_image"]),
])
def test_history_bad_queries(client, query, words):
    response = client.get(f"/api/history?{query}")
    assert response.status_code == 400
    for word in words:
        assert word in response.get_json()["error"]


def test_one_record(client, three_operations):
    body = client.get(f"/api/history/{three_operations[0]}").get_json()
    assert body["operation"]["operationId"] == three_operations[0]
    assert body["operation"]["prompt"] == "first"


@pytest.mark.parametrize("op_id", ["20990101_aaaaaaaaaaaa", "nope", "..%2F..%2Fetc"])
def test_unknown_operation_is_404(client, op_id):
    response = client.get(f"/api/history/{op_id}")
    assert response.status_code == 404
    assert response.get_json()["success"] is False


@pytest.mark.parametrize("name", ["../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd",
                                  "/etc/passwd", "%2Fetc%2Fpasswd", "{other}", "{id}.json"])
def test_file_path_tricks_are_404(client, three_operations, name):
    own, other = three_operations[0], three_operations[2]
    name = name.format(id=own, other=f"{other}_out.jpg")
    response = client.get(f"/api/history/{own}/files/{name}")
    assert response.status_code == 404
    assert response.is_json and response.get_json()["success"] is False


def test_health(client, storage_dir):
    body = client.get("/api/health").get_json()
    assert body == {"success": True, "status": "ok", "provider": "local",
                    "storageDir": str(storage_dir), "storageWritable": True,
                    "history": {"index": "ok", "indexProblem": None, "indexProgress": None,
                                "indexPath": str(storage_dir / ".index" / "history.sqlite3"),
                                "skipped": 0, "skippedFiles": []},
                    "backup": {"enabled": False}}


@pytest.mark.parametrize("q, found", [("%22", 1), ("red%22", 1), ("%22red", 1), ("NEAR(red", 0),
                                      ("red*", 1), ("%5C", 1), ("(", 1), ("b%27red", 0)])
def test_a_search_of_any_characters_never_breaks_the_index(client, q, found):
    client.post("/api/generate/text-to-image", json={"prompt": "a red cat"})
    answer = client.get(f"/api/history?q={q}")
    assert (answer.status_code, answer.get_json()["total"]) == (200, found)
    assert "degraded" not in answer.get_json()
    assert client.get("/api/health").get_json()["history"]["index"] == "ok"
