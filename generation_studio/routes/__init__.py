"""The studio's blueprints, one per route family."""

from . import admin, edit, generate, history, pages, video, video_image, workflow

BLUEPRINTS = (generate.bp, edit.bp, video.bp, video_image.bp, workflow.bp, history.bp,
              pages.bp, admin.bp)


def init_app(app):
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
