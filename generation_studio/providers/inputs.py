"""A model's input: built from the studio's fields, then made to fit its contract.

``adapt`` runs before anything is sent or billed. Inputs that stand for a
choice the studio offers (aspect ratio, output format, frame count and rate,
duration) are mapped to the nearest value the model takes, with a warning
saying so; every other value must fit the model's contract as it is, or the
request is refused (400) naming the studio's field, the model and what it
accepts. Inputs the model does not have are left out, with a warning. With
no contract, the input goes unchecked and a warning says that too.
"""

from . import Task, schemas
from .errors import InputRefused

# Model inputs that stand for one of the studio's choices: mapped, not refused.
FITTED = {"aspect_ratio", "output_format", "num_frames", "frames_per_second", "duration"}

ROLE_PROMPTS = {
    "pose_transfer": "Image 1 is the subject. Image 2 is the pose reference. Show the subject of "
                     "image 1 in the pose of image 2, keeping their identity and clothes.",
    "style_transfer": "Image 1 is the content. Image 2 is the style reference. Render the "
                      "content of image 1 in the style of image 2.",
    "image_edit_multiple": "Images 1 to {n} are the inputs; use them together.",
}


def role_prompt(task: Task) -> str:
    """The prompt for a several-image model, saying what each image is."""
    roles = ROLE_PROMPTS.get(task.operation, "").format(n=len(task.sources))
    return " ".join(part for part in (roles, task.prompt) if part)


def frames(task: Task) -> int:
    """duration x fps: the frames the user asked for (``adapt`` fits them to the model)."""
    return round(task.params.get("duration", 5) * task.params.get("fps", 16))


def without_none(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}


def adapt(model: str, payload: dict, contract: dict | None, fields: dict) -> tuple[dict, list]:
    """``payload`` fitted to ``contract`` and checked, with the warnings to show.

    ``fields`` names the studio field behind each model input (for messages).
    Raises ``InputRefused`` (400) for a value the model would refuse.
    """
    if contract is None:
        unchecked = (f"The inputs of {model} were not checked: its schema could not be read, "
                     "so the request was sent as it is")
        return payload, [unchecked]
    specs, warnings, adapted = contract.get("properties") or {}, [], {}
    for key, value in payload.items():
        field = fields.get(key, key)
        if key not in specs:
            warnings.append(f"{field}: {model} has no input {key}; it was not sent")
            continue
        if key in FITTED:
            fitted = schemas.fit(specs[key], value)
            if not schemas.same(fitted, value):
                warnings.append(f"{field}: {key} {value} mapped to {fitted} for {model}, which "
                                f"takes {schemas.describe(specs[key])}")
            value = fitted
        allowed = schemas.problem(specs[key], value)
        if allowed is not None:
            raise InputRefused(f"{field} {_shown(value)} is not accepted by {model}: its input "
                               f"{key} takes {allowed}; nothing was sent", field=field,
                               details={"model": model}, warnings=warnings)
        adapted[key] = value
    missing = [k for k in contract.get("required") or [] if k not in adapted]
    if missing:
        raise InputRefused(f"{model} requires the input {', '.join(missing)}, which this "
                           "operation does not give it; choose another model for it",
                           details={"model": model}, warnings=warnings)
    return adapted, warnings


def _shown(value) -> str:
    if isinstance(value, str):
        if value.startswith("data:"):
            return "(an inline image)"
        return repr(value) if len(value) <= 40 else f"({len(value):,} characters)"
    if isinstance(value, list):
        return f"({len(value)} items)"
    return f"{value:g}" if isinstance(value, float) else str(value)
