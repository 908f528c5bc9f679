"""The web page, and what the service says about itself: stats, health, its OpenAPI document."""
from __future__ import annotations

from flask import Blueprint, current_app

from tuneprint.server.http.auth import for_client, read_access
from tuneprint.server.http.openapi import openapi_document, service_version
from tuneprint.server.http.service import current_library

blueprint = Blueprint("meta", __name__)


@blueprint.get("/")
def index():
    return current_app.send_static_file("index.html")


@blueprint.get("/stats")
@read_access
def stats():
    return for_client(current_library().stats())


@blueprint.get("/health")
def health():
    lib = current_library()
    return {"status": "ok", "songs": lib.stats()["songs"], "model_id": lib.model_id, "version": service_version()}


@blueprint.get("/openapi.json")
def openapi():
    return openapi_document()
