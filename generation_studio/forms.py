"""The studio page's forms, made from the catalogue (``operations``): each
posts to its API route and shows the same fields, limits and defaults the
route checks, so a form never promises what the API refuses.

The studio shows one form at a time, chosen from a menu of tasks grouped by
kind (``GROUPS``). A query string opens it ready to work: ``?form=<id>``
chooses it, ``?from=<operation id>`` fills the form of that operation's
type with what it ran (prompt, parameters, seed, its stored inputs by
reference), ``?use=op:<id>/<file>`` puts a stored image first in its images
(see ``studio_view``)."""

from dataclasses import dataclass, field, replace

from . import inputs, operations, rerun, thumbnails
from .catalog import WORKFLOWS
from .history.service import HistoryService
from .routes.workflow import FIELDS as WORKFLOW_FIELDS
from .storage import layout

PROMPT_MAX_CHARS = inputs.PROMPT_MAX_CHARS
# What each image is for, in order, where a route gives them roles.
ROLES = {"pose": ("Subject", "Pose reference"), "style": ("Content", "Style reference"),
         "transition": ("First frame", "Last frame")}
GROUPS = (("Image", ("text-to-image", "img-to-img")),
          ("Edit", ("edit", "pose", "style")),
          ("Video", ("text-to-video", "img-to-video", "animate", "transition")),
          ("Workflow", ("workflow",)))
DEFAULT_FORM = "text-to-image"
IMAGE_FORM = "img-to-img"  # where a stored image goes when no form is named
PREVIEW_WIDTH = thumbnails.PREVIEW_WIDTHS[0]  # a chosen image's picture, small


@dataclass
class Field:
    name: str
    label: str
    kind: str = "text"  # text, prompt, select, number, files
    options: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    value: str | None = None
    required: bool = False
    help: str = ""
    roles: tuple = ()  # files: what the first, second... image is for
    references: tuple = ()  # files: stored images already chosen (see ``reference``)


@dataclass
class Form:
    id: str
    title: str
    action: str
    fields: list = field(default_factory=list)
    makes: str = "image"
    description: str = ""
    rerun: str | None = None  # filled from an operation: where its rerun posts

    @property
    def images(self) -> Field | None:
        return next((f for f in self.fields if f.kind == "files"), None)


def prompt(required=True, text="Prompt"):
    return Field("prompt", text, "prompt", required=required,
                 help=f"Up to {PROMPT_MAX_CHARS:,} characters" + ("" if required else "; optional"))


def images(low, high, help="", roles=()):
    counted = f"exactly {low}" if low == high else f"{low} to {high}"
    return Field("images", "Image" if high == 1 else "Images", "files", low=low, high=high,
                 required=low > 0, roles=roles or (("Image",) if high == 1 else ()),
                 help=f"{counted} image(s); PNG, JPEG, WebP, GIF. {help}".strip())


def field_of(spec: operations.Field) -> Field:
    """A catalogue field as the form shows it."""
    if spec.kind == "choice":
        options = spec.choices if spec.default is not None else ("",) + spec.choices
        return Field(spec.name, spec.label, "select", options,
                     value=spec.default if spec.default is not None else "", help=spec.help)
    return Field(spec.name, spec.label, "number", low=spec.low, high=spec.high, step=spec.step,
                 value=None if spec.default is None else str(spec.default), help=spec.help)


def form_of(route: operations.Route) -> Form:
    low, high = route.images
    fields = [prompt(route.prompt == "required")]
    if high:
        fields.append(images(low, high, route.image_help, ROLES.get(route.form_id, ())))
    fields += [field_of(spec) for spec in route.fields]
    return Form(route.form_id, route.title, route.path, fields, route.makes, route.description)


FORMS = [form_of(route) for route in operations.ROUTES] + [
    Form("workflow", "Workflow", rerun.WORKFLOW_ROUTE,
         [prompt(text="What to do"), images(0, 5, "Optional."),
          Field("workflow", "Workflow", "select", ("",) + WORKFLOWS, value="",
                help="Leave empty to let the studio choose")]
         + [field_of(spec) for spec in WORKFLOW_FIELDS], "either",
         "Describe the steps; the studio plans them (generate, edit, style, animate)."),
]
BY_ID = {form.id: form for form in FORMS}


class Refused(ValueError):
    """A query the studio cannot follow; the page says why (``status``)."""

    def __init__(self, message: str, status: int = 404):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass
class StudioView:
    """What the studio page shows: every form (the chosen one filled), and why
    it is filled or what could not be done."""

    forms: list
    chosen: str
    source: dict | None = None  # the operation a ``from`` filled the form with
    message: str | None = None
    status: int = 200


def form_for(record: dict) -> str:
    """The id of the form that runs ``record``'s route."""
    path = rerun.route_of(record)
    return next((f.id for f in FORMS if f.action == path), "workflow")


def reference(history: HistoryService, text: str) -> dict:
    """A stored file named ``op:<id>/<file>`` as the form shows it; Refused
    when there is no such operation or file."""
    op_id, _, name = text.removeprefix(inputs.REFERENCE_PREFIX).partition("/")
    record = history.get(op_id) if layout.is_id(op_id) else None
    kept = [e.get("file") for e in (record or {}).get("inputImages") or []] + \
        [e.get("file") for e in (record or {}).get("outputs") or []]
    if not text.startswith(inputs.REFERENCE_PREFIX) or name not in kept:
        raise Refused(f"There is no stored image {text[:200]!r}: a stored image is written "
                      "op:<operation id>/<file name>, as \"Use as input\" links give it.")
    return {"value": text, "name": name, "url": f"/history/{op_id}/preview/{name}?w={PREVIEW_WIDTH}"}


def filled(form: Form, values: dict, references: list) -> Form:
    """``form`` with ``values`` in its fields and ``references`` as its images."""
    def one(f: Field) -> Field:
        if f.kind == "files":
            return replace(f, references=tuple(references[:int(f.high)]),
                           required=f.required and not references)
        value = values.get(f.name)
        return f if value is None else replace(f, value=_text(value))
    return replace(form, fields=[one(f) for f in form.fields])


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def studio_view(args, history: HistoryService) -> StudioView:
    """The studio for a query string: ``form``, ``from`` and ``use`` (see the
    module's docstring). A query it cannot follow shows the studio with a
    message saying why, never an error page."""
    chosen = args.get("form") or (IMAGE_FORM if args.get("use") else DEFAULT_FORM)
    if chosen not in BY_ID:
        return StudioView(FORMS, DEFAULT_FORM, message=f"There is no form {chosen[:100]!r}; "
                          "choose a task from the list.", status=404)
    try:
        if args.get("from"):
            return _from_operation(args["from"], history)
        if args.get("use"):
            return _using(BY_ID[chosen], reference(history, args["use"]))
    except Refused as e:
        return StudioView(FORMS, chosen, message=e.message, status=e.status)
    return StudioView(FORMS, chosen)


def _from_operation(op_id: str, history: HistoryService) -> StudioView:
    record = history.get(op_id) if layout.is_id(op_id) else None
    if record is None:
        raise Refused(f"There is no operation {op_id[:100]!r} to start from: it may have been "
                      "deleted. Choose a task to start afresh.")
    values = rerun.fields_of(record)
    form = BY_ID[form_for(record)]
    refs = [reference(history, text) for text in values.pop("images", [])]
    form = replace(filled(form, values, refs), rerun=f"/api/history/{op_id}/rerun")
    return StudioView(_with(form), form.id, source=record)


def _using(form: Form, ref: dict) -> StudioView:
    if form.images is None:
        form = BY_ID[IMAGE_FORM]
    return StudioView(_with(filled(form, {}, [ref])), form.id)


def _with(form: Form) -> list:
    """Every form, ``form`` in the place of its blank one."""
    return [form if f.id == form.id else f for f in FORMS]
