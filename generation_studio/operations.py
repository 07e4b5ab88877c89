"""The catalogue of routes: one entry per generation route, the one place
that says what each takes — its path, the operation type it records, its
prompt, its images and their roles, its fields with their types, limits and
defaults, and what it makes.

The views (``routes/generate.py`` and its siblings) are built from it, the
decorator records what it reads, the worker runs the task it gives, the
studio's forms show its fields and limits, and the README's route table is
checked against it by a test. Adding a route is one entry here (and, for a
new operation type, a provider method and a line in ``catalog.OPERATIONS``).
"""

import secrets
from dataclasses import dataclass, field

from . import inputs
from .catalog import image_limits
from .providers import Task
from .providers.local.render import ASPECT_SIZES
from .providers.local.video import FORMATS as VIDEO_FORMATS
from .providers.local.video import MOTIONS

OUTPUT_FORMATS = ("jpg", "png", "webp")
FORMAT_ALIASES = {"jpeg": "jpg", "JPEG": "jpg", "JPG": "jpg", "PNG": "png", "WEBP": "webp"}
DURATION_SECONDS = (1, 30)
FPS = (1, 30)
SEED_RANGE = (0, 2**32 - 1)


@dataclass(frozen=True)
class Field:
    """One request field: ``kind`` is number, integer, choice or seed."""

    name: str
    label: str
    kind: str
    low: float | None = None
    high: float | None = None
    default: object = None
    choices: tuple = ()
    aliases: dict = field(default_factory=dict)
    step: float | None = None
    help: str = ""

    def read(self):
        """The field's value from the current request; 400 naming the limit."""
        if self.kind == "choice":
            return inputs.choice(self.name, self.choices, self.default, self.aliases)
        value = inputs.number(self.name, self.low, self.high, self.default,
                              integer=self.kind in ("integer", "seed"))
        if self.kind == "seed" and value is None:  # drawn now: the job runs with what it records
            value = secrets.randbelow(2**32)
        return value


@dataclass(frozen=True)
class Route:
    path: str
    family: str  # its blueprint: generate, edit, video, video_image
    endpoint: str
    title: str
    types: tuple  # the operation types it records: one, or by image count
    fields: tuple = ()
    prompt: str = "required"  # or "optional"
    image_help: str = ""  # the images' order and roles
    makes: str = "image"
    description: str = ""
    form: str = ""  # the studio form's id, when not the endpoint's

    @property
    def form_id(self) -> str:
        return self.form or self.endpoint.replace("_", "-")

    @property
    def images(self) -> tuple[int, int]:
        ranges = [image_limits(t) for t in self.types]
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    def type_for(self, data: inputs.RequestData) -> str:
        """The operation type a request makes: by its number of images when
        the route has several types (one image: a single edit, more: multiple)."""
        count = len(data.uploads)
        for op_type in self.types:
            low, high = image_limits(op_type)
            if low <= count <= high:
                return op_type
        return self.types[0]

    def task(self) -> Task:
        """The checked request, as the task its job will run."""
        prompt = inputs.prompt(required=self.prompt == "required")
        sources = inputs.images(*self.images)
        params = {f.name: v for f in self.fields if (v := f.read()) is not None}
        return Task(self.type_for(inputs.current()), prompt, params, sources=sources)


def aspect(default: str) -> Field:
    return Field("aspectRatio", "Aspect ratio", "choice", choices=tuple(ASPECT_SIZES),
                 default=default)


def strength(default: float, help: str) -> Field:
    return Field("strength", "Strength", "number", 0, 1, default, step=0.05, help=help)


OUTPUT_FORMAT = Field("outputFormat", "Output format", "choice", choices=OUTPUT_FORMATS,
                      default="jpg", aliases=FORMAT_ALIASES)
SEED = Field("seed", "Seed", "seed", *SEED_RANGE, step=1,
             help="Optional; the same seed gives the same picture")
GUIDANCE = Field("guidance", "Guidance", "number", 0, 30,
                 help="For hosted models; each takes its own range")
DURATION = Field("duration", "Duration (seconds)", "number", *DURATION_SECONDS, 5, step=0.5)
FRAME_RATE = Field("fps", "Frames per second", "integer", *FPS, 8, step=1)
VIDEO_FORMAT = Field("videoFormat", "Video format", "choice", choices=VIDEO_FORMATS,
                     default="mp4", aliases={f.upper(): f for f in VIDEO_FORMATS},
                     help="MP4 (H.264) plays everywhere; WebP and GIF are animated images")
MOTION = Field("motion", "Motion", "choice", choices=MOTIONS,
               help="Or words of the prompt: zoom out, pan left…")

ROUTES = (
    Route("/api/generate/text-to-image", "generate", "text_to_image", "Text to image",
          ("text_to_image",), (aspect("1:1"), SEED, GUIDANCE, OUTPUT_FORMAT)),
    Route("/api/generate/img-to-img", "generate", "img_to_img", "Image to image",
          ("img_to_img",), (strength(0.5, "0 keeps the image, 1 replaces it"), SEED,
                            OUTPUT_FORMAT)),
    Route("/api/edit/image", "edit", "image", "Edit",
          ("image_edit_single", "image_edit_multiple"), (OUTPUT_FORMAT,),
          image_help="Several are composed side by side.", form="edit"),
    Route("/api/edit/pose", "edit", "pose", "Pose transfer", ("pose_transfer",),
          (OUTPUT_FORMAT,), prompt="optional",
          image_help="First the subject, then the pose reference."),
    Route("/api/edit/style", "edit", "style", "Style transfer", ("style_transfer",),
          (strength(1.0, "How much of the style to take"), OUTPUT_FORMAT), prompt="optional",
          image_help="First the content, then the style reference."),
    Route("/api/video/text-to-video", "video", "text_to_video", "Text to video",
          ("text_to_video",), (DURATION, FRAME_RATE, aspect("16:9"), SEED, VIDEO_FORMAT), makes="video"),
    Route("/api/video/img-to-video", "video", "img_to_video", "Image to video",
          ("image_to_video_single",), (DURATION, FRAME_RATE, VIDEO_FORMAT), makes="video",
          description="The motion comes from the prompt (\"zoom out\", \"pan left\"...)."),
    Route("/api/video-image/animate-image", "video_image", "animate_image", "Animate an image",
          ("image_to_video_single",), (DURATION, FRAME_RATE, MOTION, VIDEO_FORMAT), makes="video",
          form="animate"),
    Route("/api/video-image/transition", "video_image", "transition", "Transition",
          ("image_to_video_transition",), (DURATION, FRAME_RATE, VIDEO_FORMAT), prompt="optional",
          image_help="From the first to the second.", makes="video"),
)


def route_table() -> str:
    """The README's table of routes, made from the catalogue (a test keeps them equal)."""
    rows = ["| route | inputs | `operationType` |", "|---|---|---|"]
    for route in ROUTES:
        low, high = route.images
        parts = ["`prompt`" + (" optional" if route.prompt == "optional" else "")]
        if high:
            count = f"{low}" if low == high else f"{low} to {high}"
            parts.append(f"{count} image{'s' if high > 1 else ''}"
                         + (f" ({route.image_help.rstrip('.').lower()})" if route.image_help else ""))
        parts += [_describe(spec) for spec in route.fields]
        types = " or ".join(f"`{t}` ({_count(t)})" if len(route.types) > 1 else f"`{t}`"
                            for t in route.types)
        rows.append(f"| `POST {route.path}` | {', '.join(parts)} | {types} |")
    return "\n".join(rows)


def _describe(spec: Field) -> str:
    if spec.kind == "choice":
        return f"`{spec.name}`"
    limits = f"{spec.low:g}–{spec.high:g}" if spec.kind != "seed" else "optional"
    default = f", default {spec.default:g}" if spec.default is not None else ""
    return f"`{spec.name}` ({limits}{default})"


def _count(op_type: str) -> str:
    low, high = image_limits(op_type)
    return f"{low}" if low == high else f"{low}–{high}"
