"""The API's description: ``/api/openapi.json`` (OpenAPI 3.1, made from the
catalogue by ``openapi``) and ``/api/docs``, the same as a page to read."""

from flask import Blueprint, jsonify, render_template

from .. import openapi

bp = Blueprint("docs", __name__)


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(openapi.document())


@bp.get("/api/docs")
def docs():
    document = openapi.document()
    return render_template("api_docs.html", document=document,
                           operations=list(openapi.page_rows(document)))
