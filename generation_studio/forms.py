"""The studio page's forms, made from the catalogue (``operations``): each
posts to its API route and shows the same fields, limits and defaults the
route checks, so a form never promises what the API refuses."""

from dataclasses import dataclass, field

from . import operations
from .catalog import WORKFLOWS
from .inputs import PROMPT_MAX_CHARS


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


@dataclass
class Form:
    id: str
    title: str
    action: str
    fields: list = field(default_factory=list)
    makes: str = "image"


def prompt(required=True, text="Prompt"):
    return Field("prompt", text, "prompt", required=required,
                 help=f"Up to {PROMPT_MAX_CHARS:,} characters" + ("" if required else "; optional"))


def images(low, high, help=""):
    counted = f"exactly {low}" if low == high else f"{low} to {high}"
    return Field("images", "Image" if high == 1 else "Images", "files", low=low, high=high,
                 required=low > 0, help=f"{counted} image(s); PNG, JPEG, WebP, GIF. {help}".strip())


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
        fields.append(images(low, high, route.image_help))
    fields += [field_of(spec) for spec in route.fields]
    return Form(route.form_id, route.title, route.path, fields, route.makes)


FORMS = [form_of(route) for route in operations.ROUTES] + [
    Form("workflow", "Workflow", "/api/workflow/execute",
         [prompt(text="What to do"), images(0, 5, "Optional."),
          Field("workflow", "Workflow", "select", ("",) + WORKFLOWS, value="",
                help="Leave empty to let the studio choose"),
          field_of(operations.DURATION), field_of(operations.FRAME_RATE)], "either"),
]
