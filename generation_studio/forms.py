"""The studio page's forms, described once: each posts to its API route.

The limits shown come from the same constants the routes check, so a form
never promises what the API refuses.
"""

from dataclasses import dataclass, field

from .catalog import WORKFLOWS, image_limits
from .inputs import PROMPT_MAX_CHARS
from .providers.local.render import ASPECT_SIZES
from .providers.local.video import MOTIONS
from .routes.params import DURATION_SECONDS, FPS, OUTPUT_FORMATS


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


def output_format():
    return Field("outputFormat", "Output format", "select", OUTPUT_FORMATS, value="jpg")


def aspect(default="1:1"):
    return Field("aspectRatio", "Aspect ratio", "select", tuple(ASPECT_SIZES), value=default)


def video_fields():
    return [Field("duration", "Duration (seconds)", "number", low=DURATION_SECONDS[0],
                  high=DURATION_SECONDS[1], step=0.5, value="3"),
            Field("fps", "Frames per second", "number", low=FPS[0], high=FPS[1], step=1, value="8")]


def strength(default, help):
    return Field("strength", "Strength", "number", low=0, high=1, step=0.05, value=str(default),
                 help=help)


def seed():
    return Field("seed", "Seed", "number", low=0, high=2**32 - 1, step=1,
                 help="Optional; the same seed gives the same picture")


FORMS = [
    Form("text-to-image", "Text to image", "/api/generate/text-to-image",
         [prompt(), aspect(), seed(), output_format()]),
    Form("img-to-img", "Image to image", "/api/generate/img-to-img",
         [prompt(), images(*image_limits("img_to_img")),
          strength(0.5, "0 keeps the image, 1 replaces it"), output_format()]),
    Form("edit", "Edit", "/api/edit/image",
         [prompt(),
          images(1, image_limits("image_edit_multiple")[1], "Several are composed side by side."),
          output_format()]),
    Form("pose", "Pose transfer", "/api/edit/pose",
         [prompt(False), images(2, 2, "First the subject, then the pose reference."),
          output_format()]),
    Form("style", "Style transfer", "/api/edit/style",
         [prompt(False), images(2, 2, "First the content, then the style reference."),
          strength(1.0, "How much of the style to take"), output_format()]),
    Form("text-to-video", "Text to video", "/api/video/text-to-video",
         [prompt(), *video_fields(), aspect("16:9")], "video"),
    Form("img-to-video", "Image to video", "/api/video/img-to-video",
         [prompt(), images(1, 1), *video_fields()], "video"),
    Form("animate", "Animate an image", "/api/video-image/animate-image",
         [prompt(), images(1, 1), *video_fields(),
          Field("motion", "Motion", "select", MOTIONS, value="zoom-in")], "video"),
    Form("transition", "Transition", "/api/video-image/transition",
         [prompt(False), images(2, 2, "From the first to the second."), *video_fields()], "video"),
    Form("workflow", "Workflow", "/api/workflow/execute",
         [prompt(text="What to do"), images(0, 5, "Optional."),
          Field("workflow", "Workflow", "select", ("",) + WORKFLOWS, value="",
                help="Leave empty to let the studio choose"), *video_fields()], "either"),
]
