"""The ``local`` provider: an offline engine built on Pillow. Not AI.

It renders pictures procedurally from the prompt (``render``) and transforms
uploaded images with classic image processing, so every route gives a real,
viewable result on a machine with no account and no network. Its videos are
encoded with PyAV (``video``).
"""

import io
import os
import secrets
import tempfile
from pathlib import Path

from PIL import Image

from ...errors import GenerationError
from .. import Provider, Result, Task
from . import edit, render, video

MODEL = "local-procedural-1"
SAVE_OPTIONS = {
    "jpg": ("JPEG", {"quality": 90}),
    "png": ("PNG", {"compress_level": 1}),
    "webp": ("WEBP", {"quality": 90}),
}


def encode(image: Image.Image, fmt: str = "jpg") -> bytes:
    """The bytes of ``image`` in ``fmt`` (jpg, png or webp)."""
    pil_format, options = SAVE_OPTIONS[fmt]
    buffer = io.BytesIO()
    image.save(buffer, pil_format, **options)
    return buffer.getvalue()


class LocalProvider(Provider):
    name = "local"

    def run(self, task: Task) -> Result:
        handler = getattr(self, task.operation, None)
        if handler is None:
            raise NotImplementedError(f"the local provider cannot run {task.operation}")
        return handler(task)

    def _image_result(self, image: Image.Image, task: Task, **details) -> Result:
        fmt = task.params.get("outputFormat", "jpg")
        width, height = image.size
        return Result(files=[encode(image, fmt)], model=MODEL,
                      details={"width": width, "height": height, **details})

    def _seed(self, task: Task) -> int:
        seed = task.params.get("seed")
        return secrets.randbelow(2**32) if seed is None else seed

    def _video_result(self, task: Task, make_frames, aspect) -> Result:
        """Encode ``make_frames(count, size)`` as the frames come, into a temp file."""
        fps, duration = task.params["fps"], task.params["duration"]
        fmt = task.params.get("videoFormat", "mp4")
        if not video.can_encode(fmt):
            raise GenerationError(f"videoFormat {fmt} needs PyAV's {video.MP4_CODEC} encoder, "
                                  "which this server's PyAV lacks; ask for webp or gif",
                                  status=501, field="videoFormat")
        cap = self.config["MAX_VIDEO_FRAMES"]
        count = video.frame_count(duration, fps, cap)
        size = video.frame_size(aspect, self.config["LOCAL_VIDEO_SIZE"])
        path = self._temp_file(f".{fmt}")
        try:
            video.encode(_reported(make_frames(count, size), task, count), fps, size, fmt, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Result(files=[path], model=MODEL, warnings=video.cut_warning(duration, fps, cap),
                      details={"width": size[0], "height": size[1], "frames": count, "fps": fps,
                               "durationSeconds": count / fps})

    def _temp_file(self, suffix: str) -> Path:
        """A temp file the history can move in (the system's when there is no history)."""
        if self.store is not None:
            return self.store.temp_file(suffix)
        fd, name = tempfile.mkstemp(suffix=suffix)
        os.close(fd)
        return Path(name)

    def text_to_image(self, task: Task) -> Result:
        seed = self._seed(task)
        size = render.ASPECT_SIZES[task.params.get("aspectRatio", "1:1")]
        return self._image_result(render.render(task.prompt, seed, size), task, seed=seed)

    def img_to_img(self, task: Task) -> Result:
        seed = self._seed(task)
        strength = task.params["strength"]
        image = edit.blend_with_rendering(task.images[0], task.prompt, seed, strength)
        return self._image_result(image, task, seed=seed, strength=strength)

    def image_edit_single(self, task: Task) -> Result:
        source = task.images[0] if len(task.images) == 1 else edit.compose(task.images)
        image, edits = edit.apply_edits(edit.fit(source), task.prompt)
        return self._image_result(image, task, edits=edits)

    image_edit_multiple = image_edit_single

    def pose_transfer(self, task: Task) -> Result:
        return self._image_result(edit.pose_transfer(*task.images[:2]), task)

    def style_transfer(self, task: Task) -> Result:
        strength = task.params.get("strength", 1.0)
        return self._image_result(edit.style_transfer(*task.images[:2], strength), task,
                                  strength=strength)

    def text_to_video(self, task: Task) -> Result:
        seed = self._seed(task)
        aspect = render.ASPECT_SIZES[task.params.get("aspectRatio", "16:9")]
        result = self._video_result(
            task, lambda n, size: video.pan_rendering(task.prompt, seed, n, size), aspect)
        result.details["seed"] = seed
        return result

    def image_to_video_single(self, task: Task) -> Result:
        image = task.images[0]
        motion = task.params.get("motion") or video.motion_in(task.prompt)
        result = self._video_result(
            task, lambda n, size: video.ken_burns(image, n, size, motion), image.size)
        result.details["motion"] = motion
        return result

    def image_to_video_transition(self, task: Task) -> Result:
        first, second = task.images[:2]
        return self._video_result(
            task, lambda n, size: video.cross_fade(first, second, n, size), first.size)


def _reported(frames, task: Task, count: int):
    """``frames``, telling the job how far it is after each (encoding ends it)."""
    for done, frame in enumerate(frames, 1):
        yield frame
        report(task, 0.99 * done / count)


def report(task: Task, progress: float) -> None:
    """Tell the job how far this task is (it raises there when canceled)."""
    if task.on_progress is not None:
        task.on_progress({"progress": progress})
