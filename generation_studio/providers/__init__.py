"""Generation providers behind one small interface.

A view turns its request into a ``Task`` (operation type, prompt, typed
parameters, decoded images) and hands it to the app's provider, which answers
with a ``Result``: output bytes and/or URLs, the model, and what the provider
says about the run. The recording decorator stores both. ``GENERATION_PROVIDER``
chooses the provider; ``local`` runs offline.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app
from PIL import Image


@dataclass
class Task:
    """One generation to run: ``images`` decoded, ``sources`` their bytes as
    sent (hosted providers pass those on rather than re-encoding).

    ``on_job(details)`` is called by a hosted provider as soon as the provider
    has answered the create, before any polling, with the job's id and URLs
    (what ``resume`` needs), so that a durable queue can keep them;
    ``on_progress(state)`` on each change of the job's state
    (``{"status": "IN_QUEUE", "queuePosition": 3}``).
    """

    operation: str
    prompt: str
    params: dict = field(default_factory=dict)
    images: list[Image.Image] = field(default_factory=list)
    sources: list[bytes] = field(default_factory=list)
    on_job: Callable[[dict], None] | None = None
    on_progress: Callable[[dict], None] | None = None
    plan: dict | None = None  # a workflow's plan (see workflow.py)
    operation_id: str | None = None  # the operation it runs for (its webhook's address)


@dataclass
class Result:
    """What a provider made.

    ``files`` are the outputs, as bytes or as paths of downloaded temp files
    (the store moves those in); ``urls`` are where the provider put them;
    ``details`` lands in the record's ``provider`` object (seed, prediction id,
    timings...). A workflow also carries its plan and its ``steps``.
    ``warnings`` say where the request was adapted to the model (an aspect
    ratio mapped to the nearest one it takes, a format it cannot give...).
    """

    files: list[bytes] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    model: str | None = None
    details: dict = field(default_factory=dict)
    analysis: dict | None = None
    steps: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Step:
    """One step of a workflow, recorded as its own operation under the workflow.

    ``inputs`` are ``(bytes, original_name)`` pairs; exactly one of
    ``result`` and ``error`` is set once the step has run.
    """

    operation: str
    prompt: str
    params: dict
    inputs: list
    started: float
    ended: float
    result: Result | None = None
    error: Exception | None = None


class Provider:
    """The interface: a name, ``run(task) -> Result``, and optionally a
    workflow planner. ``store`` gives temp files for downloads."""

    name = "base"

    def __init__(self, config, store=None):
        self.config = config
        self.store = store

    def run(self, task: Task) -> Result:
        raise NotImplementedError

    def resume(self, task: Task, details: dict) -> Result:
        """Follow a job already created (``details`` as given to ``task.on_job``)
        to its end, never creating another. Only hosted providers have jobs."""
        raise NotImplementedError(f"the {self.name} provider has no jobs to resume")

    def plan_workflow(self, prompt: str, image_count: int) -> dict | None:
        """A workflow plan from a language model, or None to use the rules."""
        return None


def _registry() -> dict:
    from .fal import FalProvider
    from .local import LocalProvider
    from .replicate import ReplicateProvider
    return {"local": LocalProvider, "replicate": ReplicateProvider, "fal": FalProvider}


def init_app(app):
    """Build the configured provider once, or fail start-up with a clear message."""
    name = app.config["GENERATION_PROVIDER"]
    if not app.config.get("PROVIDER_SCHEMA_DIR"):  # model schemas cached in the instance folder
        app.config["PROVIDER_SCHEMA_DIR"] = os.path.join(app.instance_path, "provider_schemas")
    providers = _registry()
    if name not in providers:
        raise ValueError(f"GENERATION_PROVIDER={name!r} is unknown; "
                         f"choose one of {', '.join(sorted(providers))}")
    app.extensions["generation_provider"] = providers[name](
        app.config, app.extensions["history"])


def current_provider() -> Provider:
    return current_app.extensions["generation_provider"]
