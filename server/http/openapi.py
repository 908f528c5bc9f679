"""The OpenAPI 3.1 description of the service: ``openapi.json`` beside this file.

The document is kept as a file, edited by hand with the routes and answers it describes;
only ``info.version`` is filled in when it is served. tests/test_api.py checks that it lists
exactly the routes the app serves and that every answer fits its schema.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

DOCUMENT = Path(__file__).with_name("openapi.json")


def openapi_document() -> dict:
    """The document as served: a fresh copy, with this installation's version."""
    doc = json.loads(_text())
    doc["info"]["version"] = service_version()
    return doc


@cache
def _text() -> str:
    return DOCUMENT.read_text(encoding="utf-8")


def service_version() -> str:
    """The installed distribution's version ("dev" when running from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuneprint")
    except PackageNotFoundError:
        return "dev"
