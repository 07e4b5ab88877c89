"""The operation types the studio records: the guide's list, with how many
input images each takes and what it makes, plus the workflow types."""

# type: (fewest images, most images, what it makes)
OPERATIONS = {
    "text_to_image": (0, 0, "image"),
    "img_to_img": (1, 1, "image"),
    "image_edit_single": (1, 1, "image"),
    "image_edit_multiple": (2, 5, "image"),
    "pose_transfer": (2, 2, "image"),
    "style_transfer": (2, 2, "image"),
    "text_to_video": (0, 0, "video"),
    "image_to_video_single": (1, 1, "video"),
    "image_to_video_transition": (2, 2, "video"),
}

# Workflows: each a chain of operations (see workflow.py).
WORKFLOWS = (
    "generate_image", "generate_then_edit", "generate_then_video", "edit_image",
    "edit_then_video", "style_image", "style_then_video", "transition_video",
)
# The type of a workflow request that failed before its plan was made.
UNPLANNED_WORKFLOW = "workflow"

OPERATION_TYPES = (*OPERATIONS, *WORKFLOWS, UNPLANNED_WORKFLOW)


def image_limits(operation: str) -> tuple[int, int]:
    low, high, _ = OPERATIONS[operation]
    return low, high


def makes_video(operation: str) -> bool:
    return OPERATIONS[operation][2] == "video"
