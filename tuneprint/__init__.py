"""tuneprint: audio fingerprinting and music similarity search.

The distribution installs one import package, ``tuneprint``, whose stages live in the
repository's top-level folders (see pyproject.toml's package-dir):

- ``tuneprint.encoder`` (``encoder/``): audio → log-mel patches → embeddings; training
- ``tuneprint.index`` (``index/``): vector store, catalog, vote, verification, the search pipeline
- ``tuneprint.server`` (``server/``): the Python API (:class:`tuneprint.server.library.Library`),
  evaluation, HTTP service and command line
- ``tuneprint.errors``: the one exception root every package may import
"""
__version__ = "0.1.0"
