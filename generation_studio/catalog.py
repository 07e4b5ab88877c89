"""The operation types the studio records, by family (the guide's list)."""

OPERATION_TYPES = {
    "text_to_image": "image",
    "img_to_img": "image",
    "image_edit_single": "image",
    "image_edit_multiple": "image",
    "pose_transfer": "image",
    "style_transfer": "image",
    "text_to_video": "video",
    "image_to_video_single": "video",
    "image_to_video_transition": "video",
}
