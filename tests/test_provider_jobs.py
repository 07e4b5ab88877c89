"""A paid job is never abandoned: outages survived, ids kept first, give-ups canceled."""

import pytest

from generation_studio import create_app
from generation_studio.errors import ProviderError
from generation_studio.providers import Task

from . import test_fal, test_replicate
from .fakes import FakeFal, FakeReplicate, Outage

FAKES = {"replicate": (FakeReplicate, test_replicate), "fal": (FakeFal, test_fal)}
CREATE = {"replicate": ("POST", "/predictions"), "fal": ("POST", "/fal-ai/flux/schnell")}
STATUS = {"replicate": "/v1/predictions/job0", "fal": "/requests/job0/status"}
ID = {"replicate": "predictionId", "fal": "requestId"}


@pytest.fixture(params=["replicate", "fal"])
def name(request):
    return request.param


@pytest.fixture
def fake(name):
    fake = FAKES[name][0](FAKES[name][1].TOKEN if name == "replicate" else test_fal.KEY)
    yield fake
    fake.close()


def provider(fake, name, storage_dir, **settings):
    app = create_app(FAKES[name][1].settings(fake, storage_dir, **settings))
    return app.extensions["generation_provider"]


def creates(fake, name):
    return [r for r in fake.made(*CREATE[name]) if r["path"].endswith(CREATE[name][1])]


def test_a_30_second_outage_scaled_down_is_survived(fake, name, storage_dir):
    """The 30 s outage of the proof, with timings scaled 1:50: 0.6 s of 503s, 502s,
    429s and dropped connections while the job runs, then the result."""
    fake.polls_before_done, fake.outage = 2, Outage(0.6)
    result = provider(fake, name, storage_dir).run(Task("text_to_image", "a fox"))
    assert fake.outage.failed > 8  # far more than the old four tries
    assert len(creates(fake, name)) == 1
    assert result.details[ID[name]] == "job0"
    assert result.files[0].read_bytes() == fake.files["out.png"][0]


def test_a_multi_second_outage_is_survived_with_real_backoff(fake, name, storage_dir):
    fake.polls_before_done, fake.outage = 1, Outage(2.0, kinds=("503", "drop"))
    result = provider(fake, name, storage_dir, PROVIDER_RETRY_BACKOFF=0.2,
                      PROVIDER_RETRY_MAX_BACKOFF=1.0, PROVIDER_POLL_INTERVAL=0.2).run(
        Task("text_to_image", "a fox"))
    assert len(creates(fake, name)) == 1 and result.files
    assert 3 <= fake.outage.failed <= 20  # capped exponential backoff, not a tight loop


def test_status_requests_that_time_out_are_retried(fake, name, storage_dir):
    fake.polls_before_done, fake.outage = 1, Outage(0.5, kinds=("slow",), slow=0.4)
    result = provider(fake, name, storage_dir, PROVIDER_HTTP_TIMEOUT=0.1).run(
        Task("text_to_image", "a fox"))
    assert fake.outage.failed >= 2 and len(creates(fake, name)) == 1 and result.files


def test_the_job_is_reported_before_any_polling(fake, name, storage_dir):
    fake.polls_before_done = 2
    seen = []
    task = Task("text_to_image", "a fox",
                on_job=lambda d: seen.append((d, len(fake.made("GET", STATUS[name])))))
    provider(fake, name, storage_dir).run(task)
    [(details, polls_then)] = seen
    assert polls_then == 0
    assert details[ID[name]] == "job0" and details["model"] == fake_model(name)
    assert details["statusUrl"].startswith(fake.origin) and details["cancelUrl"]
    assert details["deadlineAt"]


def fake_model(name):
    return {"replicate": "black-forest-labs/flux-schnell", "fal": "fal-ai/flux/schnell"}[name]


class Crash(BaseException):
    """The studio process dying right after it kept the job's id."""


def test_resume_follows_the_job_kept_without_a_second_create(fake, name, storage_dir):
    fake.polls_before_done = 3
    kept = []

    def keep_then_crash(details):
        kept.append(details)
        raise Crash()

    with pytest.raises(Crash):
        provider(fake, name, storage_dir).run(Task("text_to_image", "a fox", on_job=keep_then_crash))
    restarted = provider(fake, name, storage_dir)  # a new process: a new provider
    result = restarted.resume(Task("text_to_image", "a fox"), kept[0])
    assert len(creates(fake, name)) == 1
    assert result.model == fake_model(name) and result.details[ID[name]] == "job0"
    assert result.files[0].read_bytes() == fake.files["out.png"][0]


def test_resume_past_the_deadline_cancels_the_job(fake, name, storage_dir):
    fake.never_finish = True
    kept = []
    with pytest.raises(Crash):
        provider(fake, name, storage_dir).run(
            Task("text_to_image", "a fox", on_job=lambda d: (kept.append(d), _raise(Crash()))))
    details = {**kept[0], "deadlineAt": "2020-01-01T00:00:00+00:00"}
    with pytest.raises(ProviderError) as failure:
        provider(fake, name, storage_dir).resume(Task("text_to_image", "a fox"), details)
    assert failure.value.status == 504 and failure.value.details["canceled"] is True
    assert len(creates(fake, name)) == 1 and cancels(fake, name) == 1


def _raise(error):
    raise error


def cancels(fake, name):
    return len(fake.made("POST" if name == "replicate" else "PUT", "/cancel"))


def test_the_deadline_cancels_and_the_error_keeps_the_job(fake, name, storage_dir):
    fake.never_finish = True
    with pytest.raises(ProviderError) as failure:
        provider(fake, name, storage_dir, PROVIDER_IMAGE_DEADLINE=0.3).run(
            Task("text_to_image", "a fox"))
    error = failure.value
    assert error.status == 504 and "the job was canceled" in error.message
    assert error.details[ID[name]] == "job0" and error.details["canceled"] is True
    assert error.details["cancelUrl"].endswith("/cancel") and cancels(fake, name) == 1


def test_an_outage_past_the_deadline_cancels_once_the_api_answers(fake, name, storage_dir):
    fake.never_finish, fake.outage = True, Outage(0.5, kinds=("503",))
    with pytest.raises(ProviderError) as failure:
        provider(fake, name, storage_dir, PROVIDER_IMAGE_DEADLINE=0.3,
                 PROVIDER_CANCEL_TIMEOUT=2).run(Task("text_to_image", "a fox"))
    assert failure.value.status == 504 and failure.value.details["canceled"] is True
    assert "until the deadline passed" in failure.value.message
    assert len(creates(fake, name)) == 1 and cancels(fake, name) == 1


def test_an_answer_it_cannot_use_while_polling_cancels_the_job(fake, name, storage_dir):
    fake.never_finish = True
    fake.poll_answers = [(403, {"detail": "Forbidden"})]
    with pytest.raises(ProviderError) as failure:
        provider(fake, name, storage_dir).run(Task("text_to_image", "a fox"))
    assert "with an answer it cannot use" in failure.value.message
    assert failure.value.details["canceled"] is True and cancels(fake, name) == 1


def test_a_create_that_fails_leaves_nothing_to_cancel(fake, name, storage_dir):
    fake.create_answers = [(500, {"detail": "internal error"}, {})]
    with pytest.raises(ProviderError) as failure:
        provider(fake, name, storage_dir).run(Task("text_to_image", "a fox"))
    assert failure.value.status == 502 and len(fake.made("POST")) == 1
    assert cancels(fake, name) == 0


def test_a_job_that_ended_meanwhile_is_not_reported_canceled(fake, name, storage_dir):
    fake.never_finish = True
    fake.poll_answers = [(403, {"detail": "Forbidden"})]

    def ended_meanwhile(details):
        if name == "replicate":
            fake.predictions["job0"]["status"] = "succeeded"
        else:
            fake.jobs["job0"]["done"] = True

    with pytest.raises(ProviderError) as failure:
        provider(fake, name, storage_dir).run(Task("text_to_image", "a fox", on_job=ended_meanwhile))
    assert failure.value.details["canceled"] is False
    assert failure.value.message.endswith("; the job had already ended")


class Canceled(Exception):
    """The user canceled the operation (what a queue's progress callback raises)."""


def test_a_callback_that_raises_stops_and_cancels_the_job(fake, name, storage_dir):
    fake.never_finish = True

    def progress(state):
        raise Canceled()

    with pytest.raises(Canceled) as stopped:
        provider(fake, name, storage_dir).run(Task("text_to_image", "a fox", on_progress=progress))
    assert stopped.value.details["canceled"] is True and stopped.value.details[ID[name]] == "job0"
    assert cancels(fake, name) == 1


def test_fal_queue_positions_are_reported_as_progress(storage_dir):
    fake = FakeFal(test_fal.KEY)
    try:
        fake.polls_before_done = 3
        states = []
        provider(fake, "fal", storage_dir).run(
            Task("text_to_image", "a heron", on_progress=states.append))
        assert states[:2] == [{"status": "IN_QUEUE", "queuePosition": 2},
                              {"status": "IN_QUEUE", "queuePosition": 1}]
        assert states[-1] == {"status": "COMPLETED"}
    finally:
        fake.close()


def test_replicate_cancel_after_is_never_under_five_seconds(storage_dir):
    fake = FakeReplicate(test_replicate.TOKEN)
    try:
        provider(fake, "replicate", storage_dir, PROVIDER_IMAGE_DEADLINE=2).run(
            Task("text_to_image", "a fox"))
        provider(fake, "replicate", storage_dir, PROVIDER_IMAGE_DEADLINE=300).run(
            Task("text_to_image", "a fox"))
        first, second = fake.made("POST", "/predictions")
        assert first["headers"]["Cancel-After"] == "5s" and first["headers"]["Prefer"] == "wait=2"
        assert second["headers"]["Cancel-After"] == "5m"
    finally:
        fake.close()


def test_fal_gets_its_request_timeout_from_the_deadline(storage_dir):
    fake = FakeFal(test_fal.KEY)
    try:
        provider(fake, "fal", storage_dir, PROVIDER_VIDEO_DEADLINE=1800).run(
            Task("text_to_video", "waves", {"duration": 5, "fps": 16, "aspectRatio": "16:9"}))
        [submit] = fake.made("POST", "/fal-ai/wan")
        assert submit["path"] == "/fal-ai/wan/v2.2-a14b/text-to-video"
        assert submit["headers"]["X-Fal-Request-Timeout"] == "1800"
    finally:
        fake.close()
