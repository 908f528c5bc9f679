"""Milvus index backend through pymilvus: one code path for an embedded Milvus Lite file and for a
Milvus cluster by URI.

Where the vectors live (never inside the index folder, which :func:`~.vectors.save_index` replaces
by renaming):

- ``config.uri == ""``: a Milvus Lite file beside the index folder, ``<folder>/../milvus.db``
  (a library's ``LIB/milvus.db``). Milvus Lite serves one process at a time.
- otherwise the Milvus server at ``config.uri``, e.g. ``http://host:19530``.

Every new index gets its own collection (``tuneprint_<12 hex>``); the index folder holds only
``milvus.json``, naming it. A fresh index (``reindex``) thus fills a new collection while the live
one keeps answering, and the rename of the folder is the switch. The new folder's ``milvus.json``
records the collection it ``replaces``; that one is dropped once the new folder is live (when
``location`` is set, by ``save_index`` after the swap or by ``load_index``). Copying a library folder
that uses a Milvus server copies only that name, not the vectors.

A new index on Milvus Lite has no file until it is written: it keeps what it is given in memory
(as the FAISS backend does), and moves to a private scratch file only if searched before that.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from pathlib import Path

import numpy as np

from tuneprint.errors import BusyError, LibraryError, MismatchError

from .vectors import IndexConfig, _check_vectors

log = logging.getLogger(__name__)

STORE_FILE = "milvus.json"  # in the index folder: which collection, on which Milvus
STORE_VERSION = 1
LITE_FILE = "milvus.db"  # beside the index folder
PREFIX = "tuneprint_"
ID, VECTOR = "id", "vector"
REQUEST_BYTES = 8 << 20  # vectors per insert or fetch: ~8 MB a request, well under gRPC's 64 MB
QUERY_BATCH = 1024  # queries per search request (Milvus allows up to 16384)
MAX_K = 16384  # Milvus's limit on top-k and on an iterator's page
DEFAULT_NLIST = 1024  # IVF lists when config.nlist is 0
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_MIN_EF = 32, 200, 64  # build and query knobs of HNSW
PQ_DIMS_PER_SEGMENT = 8  # IVF_PQ: one byte of code per 8 dimensions


class MilvusIndex:
    """Vectors in a Milvus collection: inner product (cosine on unit vectors) under int64 ids.

    Durable: changes go to Milvus at once; :meth:`save` flushes them where the index was read from.
    """

    name = "milvus"
    durable = True

    def __init__(self, config: IndexConfig):
        _pymilvus()  # refuse at once, before anything is written, when the extra is missing
        self.config = config
        self._location: Path | None = None
        self._store = config.uri  # the Milvus to connect to ("" while a new Lite index has no file)
        self._collection: str | None = None
        self._scratch: Path | None = None  # a private Lite folder, for a new index searched before written
        self._buffer: list[tuple[np.ndarray, np.ndarray]] = []  # (ids, vectors) while there is no collection
        self._client = None
        self._finalizer = None
        self._count: int | None = None  # cached; None after a change

    # -- where it lives ----------------------------------------------------------------------
    @property
    def location(self) -> Path | None:
        return self._location

    @location.setter
    def location(self, directory: Path | None) -> None:
        """Set by save_index/load_index: this index is now the one live in ``directory``."""
        self._location = None if directory is None else Path(directory)
        if self._location is None:
            return
        if not self.config.uri and self._scratch is None:
            self._store = _lite_file(self._location)
        self._retire_replaced(self._location)

    def _connected(self):
        """The pymilvus client of this index's store, connected on first use."""
        if self._client is None:
            if not self._store:
                raise LibraryError("a Milvus Lite index has no file before it is written")
            self._client = _connect(self._store)
            self._finalizer = weakref.finalize(self, _disconnect, self._store, self._client, self._scratch)
            if self._collection is not None:
                self._client.load_collection(self._collection)  # a reopened collection starts released
        return self._client

    def _disconnect(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # closes the client; a Lite file's in-process server stops with its last client
        self._client = self._finalizer = None

    def _bound(self):
        """The client, with this index's collection created; a new index gets one now."""
        if self._collection is None:
            if not self._store:  # a Lite index searched before it was written
                self._scratch = Path(tempfile.mkdtemp(prefix="tuneprint-milvus-"))
                self._store = str(self._scratch / LITE_FILE)
            client = self._connected()
            self._collection = _new_collection(client, self.config)
            for ids, vectors in self._buffer:
                _insert(client, self._collection, ids, vectors)
            self._buffer = []
        return self._connected()

    # -- the index contract ------------------------------------------------------------------
    def __len__(self) -> int:
        if self._collection is None:
            return sum(len(ids) for ids, _ in self._buffer)
        if self._count is None:
            rows = self._connected().query(self._collection, filter="", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = _check_vectors(vectors, self.config.dim)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if self._collection is None and not self.config.uri:  # no Lite file yet: kept until written
            self._buffer.append((ids, vectors))
            return
        _insert(self._bound(), self._collection, ids, vectors)
        self._count = None

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if self._collection is None:
            kept = [(batch_ids, batch, ~np.isin(batch_ids, ids)) for batch_ids, batch in self._buffer]
            self._buffer = [(batch_ids[keep], batch[keep]) for batch_ids, batch, keep in kept]
            return
        client, step = self._connected(), _rows_per_request(self.config.dim)
        for start in range(0, len(ids), step):
            client.delete(self._collection, ids=ids[start:start + step].tolist())
        self._count = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Queries [shape=(n, D)] → similarities and ids, each [shape=(n, k)], best first; id -1 and
        similarity -inf where fewer exist (and beyond Milvus's top-k limit of 16384)."""
        queries = _check_vectors(queries, self.config.dim)
        sims = np.full((len(queries), k), -np.inf, np.float32)
        found = np.full((len(queries), k), -1, np.int64)
        if len(queries) == 0 or k <= 0 or len(self) == 0:
            return sims, found
        client, limit = self._bound(), min(k, MAX_K)
        params = {"metric_type": "IP", "params": self._search_params(limit)}
        for start in range(0, len(queries), QUERY_BATCH):
            batch = queries[start:start + QUERY_BATCH]
            hits = client.search(self._collection, data=batch, limit=limit, anns_field=VECTOR,
                                 output_fields=[ID], search_params=params)
            for row, row_hits in enumerate(hits, start):
                n = len(row_hits)
                found[row, :n] = [hit["id"] for hit in row_hits]
                sims[row, :n] = [hit["distance"] for hit in row_hits]
        return sims, found

    def ids(self) -> np.ndarray:
        if self._collection is None:
            return np.concatenate([np.zeros(0, np.int64)] + [ids for ids, _ in self._buffer])
        pages = [np.asarray([row[ID] for row in page], np.int64) for page in self._pages([ID])]
        return np.concatenate([np.zeros(0, np.int64)] + pages)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors [shape=(len(ids), D)], in the order asked; an unknown id is an error."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._collection is None:
            have = {int(i): v for batch_ids, batch in self._buffer for i, v in zip(batch_ids, batch)}
        else:
            have, step, client = {}, _rows_per_request(self.config.dim), self._connected()
            for start in range(0, len(ids), step):
                rows = client.get(self._collection, ids=ids[start:start + step].tolist(), output_fields=[VECTOR])
                have.update((int(row[ID]), row[VECTOR]) for row in rows)
        missing = [int(i) for i in ids if int(i) not in have]
        if missing:
            raise ValueError(f"no vectors under ids {missing[:10]}{' …' if len(missing) > 10 else ''}")
        return np.asarray([have[int(i)] for i in ids], np.float32).reshape(len(ids), self.config.dim)

    def write(self, directory: Path) -> None:
        """Put the whole index into a new collection of ``directory``'s Milvus and name it in
        ``directory``. A new index that already has its collection there (on a server) keeps it."""
        directory = Path(directory)
        target = self.config.uri or _lite_file(directory)
        # a new index on a server already fills a collection there that no folder names yet
        if self._collection is not None and self._location is None and self._scratch is None and self._store == target:
            name, client = self._collection, self._connected()
        else:
            client = _connect(target)
            name = _new_collection(client, self.config)
            try:
                for ids, vectors in self._contents():
                    _insert(client, name, ids, vectors)
            except BaseException:
                client.drop_collection(name)
                _disconnect(target, client)
                raise
            self._disconnect()  # from the old store; a scratch file goes with it
            self._client = client
            self._finalizer = weakref.finalize(self, _disconnect, target, client, None)
            self._store, self._collection, self._scratch, self._buffer = target, name, None, []
        client.flush(name)
        record = {"format_version": STORE_VERSION, "uri": self.config.uri, "collection": name,
                  "replaces": _replaced_collection(directory, self.config.uri, name)}
        (directory / STORE_FILE).write_text(json.dumps(record, indent=2))
        log.info("index of %d vectors written to Milvus collection %s", len(self), name)
        if not self.config.uri:
            self._disconnect()  # lets go of the Lite file: its folder may be renamed next (a library being created)

    @classmethod
    def read(cls, config: IndexConfig, directory: Path) -> "MilvusIndex":
        directory = Path(directory)
        record = _read_record(directory)
        if record is None:
            raise MismatchError(f"{directory}: no {STORE_FILE} naming the Milvus collection")
        if record.get("format_version") != STORE_VERSION:
            raise MismatchError(f"{directory / STORE_FILE}: format version {record.get('format_version')}, "
                                f"this tuneprint reads {STORE_VERSION}")
        index, name = cls(config), record["collection"]
        index._store = config.uri or _lite_file(directory)
        client = index._connected()
        if not client.has_collection(name):
            raise MismatchError(f"{directory}: Milvus collection {name} is missing from {index._store}")
        index._collection = name
        client.load_collection(name)  # a reopened collection starts released
        return index

    def save(self, directory: Path, meta: dict) -> None:
        """Make the changes since the last save durable, then write ``meta`` (index.json) last."""
        from .vectors import META_FILE

        directory = Path(directory)
        self._connected().flush(self._collection)  # read or written there, so it has its collection
        tmp = directory / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, directory / META_FILE)

    # -- helpers -----------------------------------------------------------------------------
    def _search_params(self, k: int) -> dict:
        kind = self.config.milvus_index.upper()
        if kind.startswith("IVF"):
            return {"nprobe": self.config.nprobe}
        if kind == "HNSW":
            return {"ef": max(k, HNSW_MIN_EF)}  # HNSW needs ef >= k
        return {}

    def _pages(self, fields: list[str]):
        """The collection's rows, a page at a time (a query iterator: no limit on the total)."""
        client = self._connected()
        _quiet_lite_iterator()
        pages = client.query_iterator(self._collection, batch_size=min(_rows_per_request(self.config.dim), MAX_K),
                                      filter="", output_fields=fields)
        try:
            while page := pages.next():
                yield page
        finally:
            pages.close()

    def _contents(self):
        """Everything this index holds, as (ids, vectors) batches, wherever it is now."""
        if self._collection is None:
            yield from self._buffer
            return
        for page in self._pages([ID, VECTOR]):
            yield (np.asarray([row[ID] for row in page], np.int64),
                   np.asarray([row[VECTOR] for row in page], np.float32).reshape(len(page), self.config.dim))

    def _retire_replaced(self, directory: Path) -> None:
        """Drop the collection the folder's previous index used, now that this one is live there."""
        record = _read_record(directory) or {}
        old = record.get("replaces")
        if not old or old == self._collection or not old.startswith(PREFIX):
            return
        client = self._connected()
        if client.has_collection(old):
            client.drop_collection(old)
            log.info("dropped Milvus collection %s, replaced by %s", old, self._collection)


def _pymilvus():
    try:
        import pymilvus
    except ImportError as e:
        raise LibraryError("the milvus backend needs `pip install 'tuneprint[cluster]'`") from e
    return pymilvus


def _lite_file(directory: Path) -> str:
    return os.path.abspath(Path(directory).parent / LITE_FILE)


def _is_lite(store: str) -> bool:
    return store.endswith(".db") and "://" not in store


# A Lite file is served in-process, one server per file for the whole process: it may stop only
# when the last client of that file closes, so clients are counted.
_lite_clients: dict[str, int] = {}
_lite_lock = threading.Lock()


def _connect(store: str):
    """A pymilvus client of a Milvus server URI or a Milvus Lite file."""
    lite = _is_lite(store)
    try:
        client = _pymilvus().MilvusClient(store)
    except LibraryError:
        raise
    except Exception as e:
        if lite:
            raise BusyError(f"cannot open the Milvus Lite file {store}: another process may have it open "
                            f"(Milvus Lite serves one process at a time; a Milvus server, --uri, serves many)") from e
        raise LibraryError(f"cannot reach Milvus at {store}: {e}") from e
    if lite:
        with _lite_lock:
            _lite_clients[store] = _lite_clients.get(store, 0) + 1
    return client


def _disconnect(store: str, client, scratch: Path | None = None) -> None:
    client.close()
    if _is_lite(store):
        with _lite_lock:
            _lite_clients[store] -= 1
            last = _lite_clients[store] == 0
            if last:
                del _lite_clients[store]
        if last:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(store)  # flushes, unlocks the file
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def _new_collection(client, config: IndexConfig) -> str:
    """Create an empty collection (int64 id, float vector, the configured index) and load it."""
    pymilvus = _pymilvus()
    name = PREFIX + uuid.uuid4().hex[:12]
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(ID, pymilvus.DataType.INT64, is_primary=True)
    schema.add_field(VECTOR, pymilvus.DataType.FLOAT_VECTOR, dim=config.dim)
    index_params = client.prepare_index_params()
    # build knobs as one JSON "params" entry, the classic form: Milvus servers and Milvus Lite both
    # read it (Lite ignores knobs that pymilvus 3 sends one by one)
    index_params.add_index(field_name=VECTOR, index_type=config.milvus_index.upper(), metric_type="IP",
                           params={"params": _build_params(config)})
    # Strong consistency: a search sees every insert and delete made before it
    client.create_collection(name, schema=schema, consistency_level="Strong")
    # sync=False: an empty collection's index is built at once; pymilvus would poll for it for 0.5 s
    client.create_index(name, index_params, sync=False)
    client.load_collection(name)
    log.info("created Milvus collection %s (%s, dim %d)", name, config.milvus_index, config.dim)
    return name


def _build_params(config: IndexConfig) -> dict:
    kind = config.milvus_index.upper()
    params: dict = {}
    if kind.startswith("IVF"):
        params["nlist"] = config.nlist or DEFAULT_NLIST
    if kind == "IVF_PQ":
        if config.dim % PQ_DIMS_PER_SEGMENT:
            raise ValueError(f"IVF_PQ needs a dimension divisible by {PQ_DIMS_PER_SEGMENT}, not {config.dim}")
        params.update(m=config.dim // PQ_DIMS_PER_SEGMENT, nbits=8)
    if kind == "HNSW":
        params.update(M=HNSW_M, efConstruction=HNSW_EF_CONSTRUCTION)
    return params


def _rows_per_request(dim: int) -> int:
    return max(1, REQUEST_BYTES // (4 * dim))


def _insert(client, collection: str, ids: np.ndarray, vectors: np.ndarray) -> None:
    step = _rows_per_request(vectors.shape[1])
    for start in range(0, len(ids), step):
        client.insert(collection, [{ID: int(i), VECTOR: v} for i, v in
                                   zip(ids[start:start + step], vectors[start:start + step])])


def _read_record(directory: Path) -> dict | None:
    path = Path(directory) / STORE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _replaced_collection(directory: Path, uri: str, new: str) -> str | None:
    """The collection of the folder ``directory`` is about to replace: save_index writes a fresh
    index into ``<folder>.new`` and renames it over ``<folder>``."""
    if not directory.name.endswith(".new"):
        return None
    record = _read_record(directory.with_name(directory.name[: -len(".new")]))
    if not record or record.get("uri") != uri or record.get("collection") == new:
        return None
    return record.get("collection")


class _NoLiteTimestampWarning(logging.Filter):
    """Milvus Lite gives iterators no server timestamp; pymilvus warns on every ids() call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


def _quiet_lite_iterator() -> None:
    logger = logging.getLogger("pymilvus.client.iterator.query_iterator")
    if not any(isinstance(f, _NoLiteTimestampWarning) for f in logger.filters):
        logger.addFilter(_NoLiteTimestampWarning())
