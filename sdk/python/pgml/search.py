"""``search``, ``add_search_event`` and ``vector_search`` (contract §3.1, §3.2, §5): validation and SQL.

A query is validated into a plan before anything touches the database, so a bad query fails the same way with
or without a server. Query vectors come first, each from its own ``pgml.embed`` statement with constant bound
arguments (the proxy answers those itself) or from the OpenAI API, and are then bound as pgvector text: the
statements that search are plain SQL, with every identifier quoted and every value bound.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .connection import connect, execute, fetch_all, fetch_one
from .embedding import embed_text, vector_text
from .errors import NotFoundError, ValidationError
from .filters import DOCUMENT, compile_filter, project_keys
from .layout import Names
from .schema import FieldSpec, SemanticSpec, check_keys, object_at, positive_integer

DEFAULT_LIMIT = 10
DEFAULT_RERANK_POOL = 10
_MIN_CANDIDATES = 100
_CANDIDATES_PER_RESULT = 10
_EF_SEARCH_RANGE = (40, 1000)

_SEARCH_KEYS = {"query", "limit"}
_SEARCH_QUERY_KEYS = {"semantic_search", "full_text_search", "filter"}
_SEMANTIC_KEYS = {"query", "parameters", "boost"}
_FULL_TEXT_KEYS = {"query", "boost"}
_VECTOR_KEYS = {"query", "document", "rerank", "limit"}
_VECTOR_QUERY_KEYS = {"fields", "filter"}
_VECTOR_FIELD_KEYS = {"query", "parameters", "boost", "full_text_filter"}
_DOCUMENT_KEYS = {"keys"}
_RERANK_KEYS = {"model", "query", "num_documents_to_rerank", "parameters"}

_RANK = (
    "SELECT corpus_id, score"
    " FROM pgml.rank(transformer => %s::text, query => %s::text, documents => %s::text[],"
    " kwargs => %s::jsonb)"
)
# set_config(..., true) is SET LOCAL with bound values. Iterative scans exist from pgvector 0.8 on; setting
# the option on an older one would leave a placeholder that pgvector warns about.
_HNSW_SETTINGS = (
    "SELECT set_config('hnsw.ef_search', %s, true),"
    " CASE WHEN %s AND (SELECT string_to_array(extversion, '.')::int[] >= '{0,8}'"
    " FROM pg_extension WHERE extname = 'vector')"
    " THEN set_config('hnsw.iterative_scan', 'strict_order', true) END"
)


# --- plans --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextMatch:
    """``plainto_tsquery(configuration, text)``."""

    configuration: str
    text: str


@dataclass(frozen=True)
class SemanticQuery:
    """One semantic field of a query: its text, embedded with the field's model and the query's own
    parameters (K5)."""

    field: str
    model: SemanticSpec
    text: str
    parameters: dict[str, Any]
    boost: float
    full_text_filter: TextMatch | None = None


@dataclass(frozen=True)
class FullTextQuery:
    field: str
    match: TextMatch
    boost: float


@dataclass(frozen=True)
class SearchPlan:
    semantic: tuple[SemanticQuery, ...]
    full_text: tuple[FullTextQuery, ...]
    filter: sql.Composable | None
    limit: int


@dataclass(frozen=True)
class Rerank:
    model: str
    text: str
    pool: int
    parameters: dict[str, Any]


@dataclass(frozen=True)
class VectorPlan:
    fields: tuple[SemanticQuery, ...]
    filter: sql.Composable | None
    document: sql.Composable
    rerank: Rerank | None
    limit: int

    @property
    def pool(self) -> int:
        """Rows fetched per field and kept after the merge: the rerank pool, else the limit (§5.3)."""
        return self.rerank.pool if self.rerank else self.limit


def string(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{path} must be a string, got {value!r}")
    return value


def required(path: str, entry: Mapping[str, Any], key: str) -> Any:
    if key not in entry:
        raise ValidationError(f"{path}.{key} is required")
    return entry[key]


def number(path: str, value: object) -> float:
    """A JSON number (bool is not one, though Python says it is an int)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{path} must be a number, got {value!r}")
    return float(value)


def _parameters(path: str, value: object) -> dict[str, Any]:
    return dict(object_at(path, {} if value is None else value))


def _limit(path: str, value: object, default: int) -> int:
    """A positive integer; integral floats are accepted (F15), since JSON from other languages has no ints."""
    return default if value is None else positive_integer(path, value)


def _filter(path: str, value: object) -> sql.Composable | None:
    if value is None:
        return None
    try:
        return compile_filter(value)
    except ValidationError as error:
        raise ValidationError(f"{path}: {error}") from error


def _field(path: str, fields: Mapping[str, FieldSpec], name: str) -> FieldSpec:
    spec = fields.get(name)
    if spec is None:
        raise ValidationError(
            f"{path}: the pipeline has no field {name!r}; its fields: {', '.join(fields) or 'none'}"
        )
    return spec


def _lacks(path: str, name: str, action: str) -> ValidationError:
    return ValidationError(f"{path}: field {name!r} has no {action} in the pipeline schema")


def _semantic_query(
    path: str, fields: Mapping[str, FieldSpec], name: str, value: object, allowed: set[str]
) -> SemanticQuery:
    entry = object_at(path, value)
    check_keys(path, entry, allowed)
    spec = _field(path, fields, name)
    if spec.semantic is None:
        raise _lacks(path, name, "semantic_search")
    match = None
    if entry.get("full_text_filter") is not None:
        if spec.full_text is None:  # F15: a validation error, not an SQL one
            raise _lacks(f"{path}.full_text_filter", name, "full_text_search")
        match = TextMatch(
            spec.full_text.configuration, string(f"{path}.full_text_filter", entry["full_text_filter"])
        )
    return SemanticQuery(
        name,
        spec.semantic,
        string(f"{path}.query", required(path, entry, "query")),
        _parameters(f"{path}.parameters", entry.get("parameters")),
        number(f"{path}.boost", entry.get("boost", 1.0)),
        match,
    )


def _full_text_query(path: str, fields: Mapping[str, FieldSpec], name: str, value: object) -> FullTextQuery:
    entry = object_at(path, value)
    check_keys(path, entry, _FULL_TEXT_KEYS)
    spec = _field(path, fields, name)
    if spec.full_text is None:
        raise _lacks(path, name, "full_text_search")
    return FullTextQuery(
        name,
        TextMatch(spec.full_text.configuration, string(f"{path}.query", required(path, entry, "query"))),
        number(f"{path}.boost", entry.get("boost", 1.0)),
    )


def parse_search(fields: Mapping[str, FieldSpec], query: object) -> SearchPlan:
    """Validate a ``search`` query (§3.1) against the pipeline's fields."""
    top = object_at("search", query)
    check_keys("search", top, _SEARCH_KEYS)
    body = object_at("search.query", top.get("query", {}))
    check_keys("search.query", body, _SEARCH_QUERY_KEYS)
    semantic_path, full_text_path = "search.query.semantic_search", "search.query.full_text_search"
    semantic = tuple(
        _semantic_query(f"{semantic_path}.{name}", fields, name, value, _SEMANTIC_KEYS)
        for name, value in object_at(semantic_path, body.get("semantic_search") or {}).items()
    )
    full_text = tuple(
        _full_text_query(f"{full_text_path}.{name}", fields, name, value)
        for name, value in object_at(full_text_path, body.get("full_text_search") or {}).items()
    )
    if not semantic and not full_text:
        raise ValidationError(
            "search.query needs semantic_search or full_text_search; to select documents by filter alone,"
            " use get_documents"
        )
    return SearchPlan(
        semantic,
        full_text,
        _filter("search.query.filter", body.get("filter")),
        _limit("search.limit", top.get("limit"), DEFAULT_LIMIT),
    )


def parse_vector_search(
    fields: Mapping[str, FieldSpec], query: object, path: str = "vector_search"
) -> VectorPlan:
    """Validate a ``vector_search`` query (§3.2); ``path`` names it in messages (rag nests one per
    variable)."""
    top = object_at(path, query)
    check_keys(path, top, _VECTOR_KEYS)
    body = object_at(f"{path}.query", top.get("query", {}))
    check_keys(f"{path}.query", body, _VECTOR_QUERY_KEYS)
    fields_path = f"{path}.query.fields"
    requested = object_at(fields_path, body.get("fields") or {})
    if not requested:
        raise ValidationError(f"{fields_path} must name at least one field")
    parts = tuple(
        _semantic_query(f"{fields_path}.{name}", fields, name, value, _VECTOR_FIELD_KEYS)
        for name, value in requested.items()
    )
    document = object_at(f"{path}.document", top.get("document") or {})
    check_keys(f"{path}.document", document, _DOCUMENT_KEYS)
    try:
        projection = DOCUMENT if document.get("keys") is None else project_keys(document["keys"])
    except ValidationError as error:
        raise ValidationError(f"{path}.document.{error}") from error
    return VectorPlan(
        parts,
        _filter(f"{path}.query.filter", body.get("filter")),
        projection,
        _rerank(f"{path}.rerank", top["rerank"]) if top.get("rerank") is not None else None,
        _limit(f"{path}.limit", top.get("limit"), DEFAULT_LIMIT),
    )


def _rerank(path: str, value: object) -> Rerank:
    entry = object_at(path, value)
    check_keys(path, entry, _RERANK_KEYS)
    return Rerank(
        string(f"{path}.model", required(path, entry, "model")),
        string(f"{path}.query", required(path, entry, "query")),
        _limit(f"{path}.num_documents_to_rerank", entry.get("num_documents_to_rerank"), DEFAULT_RERANK_POOL),
        _parameters(f"{path}.parameters", entry.get("parameters")),
    )


# --- shared SQL pieces --------------------------------------------------------------------------------------


class _Binds:
    """The bind parameters of one statement, each behind a named placeholder with an explicit cast."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any, cast: str) -> sql.Composable:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.SQL("{}::{}").format(sql.Placeholder(name), sql.SQL(cast))


def _tsquery(bind: _Binds, match: TextMatch) -> sql.Composable:
    return sql.SQL("plainto_tsquery({}, {})").format(
        bind(match.configuration, "regconfig"), bind(match.text, "text")
    )


async def _query_vector(connection: psycopg.AsyncConnection[Any], part: SemanticQuery) -> str:
    """The query's embedding as pgvector text, with the query's own parameters (K5)."""
    return vector_text(await embed_text(connection, part.model, part.text, part.parameters))


async def _tune_hnsw(connection: psycopg.AsyncConnection[Any], wanted: int, filtered: bool) -> None:
    """F16, inside the caller's transaction: let the HNSW scan yield ``wanted`` rows, and keep scanning past
    rows the filter drops (pgvector >= 0.8) so that a filter does not starve the result."""
    low, high = _EF_SEARCH_RANGE
    await execute(connection, _HNSW_SETTINGS, (str(min(high, max(low, wanted))), filtered))


# --- search -------------------------------------------------------------------------------------------------


def candidate_count(limit: int) -> int:
    """C_cand of §5.2: how many chunks each field recalls. ``PGML_SEARCH_CANDIDATES`` replaces the formula,
    never going below ``limit``."""
    configured = os.environ.get("PGML_SEARCH_CANDIDATES", "").strip()
    if not configured:
        return max(_MIN_CANDIDATES, _CANDIDATES_PER_RESULT * limit)
    if not configured.isdigit() or int(configured) < 1:
        raise ValidationError(f"PGML_SEARCH_CANDIDATES must be a positive integer, got {configured!r}")
    return max(limit, int(configured))


def _records_searches() -> bool:
    """K2, with our opt-out ``PGML_RECORD_SEARCHES=0``."""
    return os.environ.get("PGML_RECORD_SEARCHES", "1").strip().lower() not in {"0", "false", "no", "off"}


def _search_statement(
    names: Names, plan: SearchPlan, vectors: list[str], record: Jsonb | None
) -> tuple[sql.Composable, dict[str, Any]]:
    """One statement for §5.1/§5.2 (F2): per field, recall ``C_cand`` chunks through its index; take the union
    of their documents; score exactly those documents over all of their chunks (best chunk per field).

    With ``record`` (the query JSON), data-modifying CTEs write the searches row and the ranked search_results
    rows (K2) in the same statement. Every row carries the search id first; without results there is one row
    with only the id.
    """
    bind = _Binds()
    candidates = bind(candidate_count(plan.limit), "int8")
    # Recall joins the documents only for a filter: an unfiltered HNSW scan stays an index-ordered LIMIT.
    if plan.filter is None:
        recall_from = sql.SQL("")
        recall_where = sql.SQL("TRUE")
    else:
        recall_from = sql.SQL(" JOIN {} documents ON documents.id = chunks.document_id").format(
            names.documents
        )
        recall_where = plan.filter
    in_candidates = sql.SQL("chunks.document_id IN (SELECT document_id FROM candidates)")
    recalls: list[sql.Composable] = []
    scores: list[sql.Composable] = []
    keys: list[sql.Composable] = []  # the scores-JSON key of each score CTE, in order

    for part, vector in zip(plan.semantic, vectors, strict=True):
        tables = {"embeddings": names.embeddings(part.field), "chunks": names.chunks(part.field)}
        distance = sql.SQL("embeddings.embedding <=> {}").format(bind(vector, "vector"))
        recalls.append(
            sql.SQL(
                "SELECT chunks.document_id FROM {embeddings} embeddings"
                " JOIN {chunks} chunks ON chunks.id = embeddings.chunk_id{join}"
                " WHERE {where} ORDER BY {distance} LIMIT {candidates}"
            ).format(join=recall_from, where=recall_where, distance=distance, candidates=candidates, **tables)
        )
        scores.append(
            sql.SQL(
                "SELECT chunks.document_id, {boost} * MAX(1 - ({distance})) AS score"
                " FROM {chunks} chunks JOIN {embeddings} embeddings ON embeddings.chunk_id = chunks.id"
                " WHERE {in_candidates} GROUP BY chunks.document_id"
            ).format(
                boost=bind(part.boost, "float8"), distance=distance, in_candidates=in_candidates, **tables
            )
        )
        keys.append(bind(f"{part.field}_embedding_score", "text"))

    for part in plan.full_text:
        tables = {"tsvectors": names.tsvectors(part.field), "chunks": names.chunks(part.field)}
        tsquery = _tsquery(bind, part.match)
        recalls.append(
            sql.SQL(
                "SELECT chunks.document_id FROM {tsvectors} tsvectors"
                " JOIN {chunks} chunks ON chunks.id = tsvectors.chunk_id{join}"
                " WHERE tsvectors.ts @@ {tsquery} AND {where}"
                " ORDER BY ts_rank(tsvectors.ts, {tsquery}, 32) DESC, chunks.document_id LIMIT {candidates}"
            ).format(join=recall_from, where=recall_where, tsquery=tsquery, candidates=candidates, **tables)
        )
        scores.append(
            sql.SQL(
                "SELECT chunks.document_id, {boost} * MAX(ts_rank(tsvectors.ts, {tsquery}, 32)) AS score"
                " FROM {chunks} chunks JOIN {tsvectors} tsvectors ON tsvectors.chunk_id = chunks.id"
                " WHERE {in_candidates} AND tsvectors.ts @@ {tsquery} GROUP BY chunks.document_id"
            ).format(boost=bind(part.boost, "float8"), tsquery=tsquery, in_candidates=in_candidates, **tables)
        )
        keys.append(bind(f"{part.field}_tsvectors_score", "text"))

    recall_names = [sql.Identifier(f"recall_{i}") for i in range(len(recalls))]
    score_names = [sql.Identifier(f"score_{i}") for i in range(len(scores))]
    total = sql.SQL(" + ").join(sql.SQL("COALESCE({}.score, 0)").format(name) for name in score_names)
    ctes = [
        *(sql.SQL("{} AS ({})").format(name, body) for name, body in zip(recall_names, recalls, strict=True)),
        sql.SQL("candidates AS ({})").format(
            sql.SQL(" UNION ").join(
                sql.SQL("SELECT document_id FROM {}").format(name) for name in recall_names
            )
        ),
        *(sql.SQL("{} AS ({})").format(name, body) for name, body in zip(score_names, scores, strict=True)),
        sql.SQL(
            "results AS (SELECT documents.id, documents.document, {total} AS score,"
            " jsonb_build_object('total', {total}, {score_json}) AS scores,"
            " row_number() OVER (ORDER BY {total} DESC, documents.id) AS rank"
            " FROM candidates JOIN {documents} documents ON documents.id = candidates.document_id {joins}"
            " ORDER BY rank LIMIT {limit})"
        ).format(
            total=total,
            score_json=sql.SQL(", ").join(
                sql.SQL("{}, {}.score").format(key, name) for key, name in zip(keys, score_names, strict=True)
            ),
            documents=names.documents,
            joins=sql.SQL(" ").join(
                sql.SQL("LEFT JOIN {name} ON {name}.document_id = documents.id").format(name=name)
                for name in score_names
            ),
            limit=bind(plan.limit, "int8"),
        ),
    ]
    if record is None:
        tail = sql.SQL(
            "SELECT NULL::int8, results.id, results.score, results.document"
            " FROM results ORDER BY results.rank"
        )
    else:
        ctes += [
            sql.SQL("search AS (INSERT INTO {} (query) VALUES ({}) RETURNING id)").format(
                names.table("searches"), bind(record, "jsonb")
            ),
            sql.SQL(
                "recorded AS (INSERT INTO {} (search_id, document_id, scores, rank)"
                " SELECT search.id, results.id, results.scores, results.rank FROM search, results)"
            ).format(names.table("search_results")),
        ]
        tail = sql.SQL(
            "SELECT search.id, results.id, results.score, results.document"
            " FROM search LEFT JOIN results ON TRUE ORDER BY results.rank"
        )
    return sql.SQL("WITH {} {}").format(sql.SQL(", ").join(ctes), tail), bind.values


async def search(dsn: str, names: Names, fields: Mapping[str, FieldSpec], query: object) -> dict[str, Any]:
    """Document-level hybrid search (§3.1, §5.1, §5.2).

    Returns ``{"search_id", "results": [{"id": row id (K1), "score", "document"}]}``.
    """
    plan = parse_search(fields, query)
    async with connect(dsn) as connection:
        vectors = [await _query_vector(connection, part) for part in plan.semantic]
        statement, params = _search_statement(
            names, plan, vectors, Jsonb(query) if _records_searches() else None
        )
        async with connection.transaction():
            if plan.semantic:
                await _tune_hnsw(connection, candidate_count(plan.limit), plan.filter is not None)
            rows = await fetch_all(connection, statement, params)
    return {
        "search_id": rows[0][0] if rows else None,
        "results": [
            {"id": row_id, "score": score, "document": document}
            for _, row_id, score, document in rows
            if row_id is not None
        ],
    }


async def add_search_event(
    dsn: str, names: Names, search_id: int, search_result: int, event: dict[str, Any]
) -> None:
    """Record an event (a click, a rating) against the result ranked ``search_result`` (1-based) of a
    search, so that searches can be evaluated later."""
    search_id = positive_integer("search_id", search_id)
    rank = positive_integer("search_result", search_result)
    event = dict(object_at("event", event))
    statement = sql.SQL(
        "INSERT INTO {events} (search_result, event)"
        " SELECT id, %s::jsonb FROM {results} WHERE search_id = %s AND rank = %s RETURNING id"
    ).format(events=names.table("search_events"), results=names.table("search_results"))
    async with connect(dsn) as connection:
        inserted = await fetch_one(connection, statement, (Jsonb(event), search_id, rank))
    if inserted is None:
        raise NotFoundError(f"search {search_id} has no result ranked {rank}")


# --- vector_search ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    row_id: int
    chunk_index: int
    chunk: str
    document: Any
    score: float
    rerank_score: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "chunk": self.chunk,
            "score": self.score,
            "rerank_score": self.rerank_score,
        }


def _vector_statement(
    names: Names, plan: VectorPlan, vectors: list[str]
) -> tuple[sql.Composable, dict[str, Any]]:
    """§5.3: per field, the nearest ``pool`` chunks in HNSW order that pass the filters, scored
    (1 - distance) * boost; then all fields merged by score. Ties go by row id, then chunk_index (§5.4)."""
    bind = _Binds()
    pool = bind(plan.pool, "int8")
    where = plan.filter if plan.filter is not None else sql.SQL("TRUE")
    parts: list[sql.Composable] = []
    for part, vector in zip(plan.fields, vectors, strict=True):
        if part.full_text_filter is None:
            text_join, text_where = sql.SQL(""), sql.SQL("")
        else:
            text_join = sql.SQL(" JOIN {} tsvectors ON tsvectors.chunk_id = chunks.id").format(
                names.tsvectors(part.field)
            )
            text_where = sql.SQL(" AND tsvectors.ts @@ {}").format(_tsquery(bind, part.full_text_filter))
        distance = sql.SQL("embeddings.embedding <=> {}").format(bind(vector, "vector"))
        parts.append(
            sql.SQL(
                "(SELECT documents.id AS row_id, chunks.chunk_index, chunks.chunk, {document} AS document,"
                " (1 - ({distance})) * {boost} AS score"
                " FROM {embeddings} embeddings JOIN {chunks} chunks ON chunks.id = embeddings.chunk_id"
                " JOIN {documents} documents ON documents.id = chunks.document_id{text_join}"
                " WHERE {where}{text_where} ORDER BY {distance} LIMIT {pool})"
            ).format(
                document=plan.document,
                distance=distance,
                boost=bind(part.boost, "float8"),
                embeddings=names.embeddings(part.field),
                chunks=names.chunks(part.field),
                documents=names.documents,
                text_join=text_join,
                where=where,
                text_where=text_where,
                pool=pool,
            )
        )
    statement = sql.SQL(
        "SELECT row_id, chunk_index, chunk, document, score FROM ({}) hits"
        " ORDER BY score DESC, row_id, chunk_index LIMIT {}"
    ).format(sql.SQL(" UNION ALL ").join(parts), pool)
    return statement, bind.values


async def _rerank_hits(
    connection: psycopg.AsyncConnection[Any], rerank: Rerank, hits: list[_Hit], limit: int
) -> list[_Hit]:
    """``pgml.rank`` over the pool's chunks, bound as an array; F1: the result is ordered by rerank_score."""
    kwargs = {"return_documents": False, "top_k": limit, **rerank.parameters}
    rows = await fetch_all(
        connection, _RANK, (rerank.model, rerank.text, [hit.chunk for hit in hits], Jsonb(kwargs))
    )
    ranked = sorted(
        ((float(score), hits[int(corpus_id)]) for corpus_id, score in rows),
        key=lambda pair: (-pair[0], -pair[1].score, pair[1].row_id, pair[1].chunk_index),
    )
    return [replace(hit, rerank_score=score) for score, hit in ranked[:limit]]


async def run_vector_search(
    connection: psycopg.AsyncConnection[Any], names: Names, plan: VectorPlan
) -> list[dict[str, Any]]:
    """A validated vector_search on an open connection (rag runs several on one)."""
    vectors = [await _query_vector(connection, part) for part in plan.fields]
    statement, params = _vector_statement(names, plan, vectors)
    async with connection.transaction():
        await _tune_hnsw(connection, plan.pool, plan.filter is not None)
        rows = await fetch_all(connection, statement, params)
    hits = [_Hit(*row) for row in rows]
    if plan.rerank is not None and hits:
        hits = await _rerank_hits(connection, plan.rerank, hits, plan.limit)
    return [hit.public() for hit in hits]


async def vector_search(
    dsn: str, names: Names, fields: Mapping[str, FieldSpec], query: object
) -> list[dict[str, Any]]:
    """Chunk-level retrieval (§3.2, §5.3): ``[{"document", "chunk", "score", "rerank_score"}]``; a document
    may appear once per matching chunk (K6)."""
    plan = parse_vector_search(fields, query)
    async with connect(dsn) as connection:
        return await run_vector_search(connection, names, plan)
