"""The database layout (contract §4): every name the SDK uses and the DDL that creates it.

Names are built here only, always as quoted identifiers, so a collection written by the upstream SDK and one
written by us are the same objects. Postgres truncates identifiers beyond 63 bytes; we warn and let it.
"""

from __future__ import annotations

import logging

from psycopg import sql

from .schema import FieldSpec

log = logging.getLogger("pgml")

SDK_VERSION = "1.0.0"
_MAX_IDENTIFIER_BYTES = 63


def _name(text: str) -> str:
    if len(text.encode()) > _MAX_IDENTIFIER_BYTES:
        log.warning("identifier %r is longer than 63 bytes; Postgres truncates it", text)
    return text


class Names:
    """The objects of one collection and, when ``pipeline`` is given, of one of its pipelines."""

    def __init__(self, collection: str, pipeline: str | None = None) -> None:
        self.collection = collection
        self.pipeline = pipeline

    @property
    def schema(self) -> sql.Identifier:
        return sql.Identifier(_name(self.collection))

    @property
    def documents(self) -> sql.Identifier:
        return sql.Identifier(self.collection, "documents")

    @property
    def pipelines(self) -> sql.Identifier:
        return sql.Identifier(self.collection, "pipelines")

    @property
    def pipeline_schema_name(self) -> str:
        if self.pipeline is None:
            raise ValueError("no pipeline named")
        return _name(f"{self.collection}_{self.pipeline}")

    @property
    def pipeline_schema(self) -> sql.Identifier:
        return sql.Identifier(self.pipeline_schema_name)

    def table(self, name: str) -> sql.Identifier:
        """A table of the pipeline schema: searches, search_results, search_events or a field's table."""
        return sql.Identifier(self.pipeline_schema_name, _name(name))

    def chunks(self, field: str) -> sql.Identifier:
        return self.table(f"{field}_chunks")

    def embeddings(self, field: str) -> sql.Identifier:
        return self.table(f"{field}_embeddings")

    def tsvectors(self, field: str) -> sql.Identifier:
        return self.table(f"{field}_tsvectors")


_FK = sql.SQL("ON DELETE CASCADE ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED")

GLOBAL_TABLES = (
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS pgml.collections ("
        " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(), name text NOT NULL,"
        " active boolean DEFAULT TRUE,"
        " project_id int8 NOT NULL REFERENCES pgml.projects {fk}, sdk_version text, UNIQUE (name))"
    ).format(fk=_FK),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS pgml.splitters ("
        " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(), name text NOT NULL,"
        " parameters jsonb NOT NULL DEFAULT '{{}}',"
        " project_id int8 NOT NULL REFERENCES pgml.projects {fk})"
    ).format(fk=_FK),
)
"""The SDK's two tables in the catalog schema; ``pgml.projects``/``pgml.models`` come with the proxy's catalog."""


def collection_tables(names: Names) -> list[sql.Composed]:
    """Schema C: documents and pipelines (§4.3)."""
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(names.schema),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(), source_uuid uuid NOT NULL,"
            " version jsonb NOT NULL DEFAULT '{{}}'::jsonb, document jsonb NOT NULL, UNIQUE (source_uuid))"
        ).format(names.documents),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS documents_document_index ON {} USING gin (document jsonb_path_ops)"
        ).format(names.documents),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id serial8 PRIMARY KEY, name text NOT NULL, created_at timestamp NOT NULL DEFAULT now(),"
            " active boolean NOT NULL DEFAULT TRUE, schema jsonb NOT NULL, UNIQUE (name))"
        ).format(names.pipelines),
        sql.SQL("CREATE INDEX IF NOT EXISTS pipeline_name_index ON {} USING btree (name)").format(
            names.pipelines
        ),
    ]


def pipeline_tables(names: Names) -> list[sql.Composed]:
    """Schema C_P and its search bookkeeping (§4.4)."""
    searches, results, events = (names.table(t) for t in ("searches", "search_results", "search_events"))
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(names.pipeline_schema),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(), query jsonb)"
        ).format(searches),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id serial8 PRIMARY KEY, search_id int8 NOT NULL REFERENCES {} ON DELETE CASCADE,"
            " document_id int8 NOT NULL REFERENCES {} ON DELETE CASCADE, scores jsonb NOT NULL,"
            " rank integer NOT NULL)"
        ).format(results, searches, names.documents),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS search_results_search_id_rank_index ON {} (search_id, rank)"
        ).format(results),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(),"
            " search_result int8 NOT NULL REFERENCES {} ON DELETE CASCADE, event jsonb NOT NULL)"
        ).format(events, results),
    ]


def field_tables(names: Names, field: FieldSpec, dimensions: int | None) -> list[sql.Composed]:
    """A field's chunks, and its embeddings (``dimensions`` probed) and tsvectors when asked for (§4.5)."""
    k = field.name
    chunks = names.chunks(k)
    statements = [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(),"
            " document_id int8 NOT NULL REFERENCES {} {fk}, chunk_index int8 NOT NULL, chunk text NOT NULL,"
            " UNIQUE (document_id, chunk_index))"
        ).format(chunks, names.documents, fk=_FK),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING btree (document_id)").format(
            sql.Identifier(_name(f"{k}_pipeline_chunk_document_id_index")), chunks
        ),
    ]
    if field.semantic is not None:
        if dimensions is None:
            raise ValueError("a semantic_search field needs its embedding dimensions")
        embeddings = names.embeddings(k)
        statements += [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(),"
                " chunk_id int8 NOT NULL REFERENCES {} {fk}, embedding vector({dim}) NOT NULL, UNIQUE (chunk_id))"
            ).format(embeddings, chunks, fk=_FK, dim=sql.Literal(dimensions)),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING btree (chunk_id)").format(
                sql.Identifier(_name(f"{k}_pipeline_embedding_chunk_id_index")), embeddings
            ),
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops)"
                " WITH (m = {m}, ef_construction = {ef})"
            ).format(
                sql.Identifier(_name(f"{k}_pipeline_embedding_hnsw_vector_index")),
                embeddings,
                m=sql.Literal(field.semantic.m),
                ef=sql.Literal(field.semantic.ef_construction),
            ),
        ]
    if field.full_text is not None:
        tsvectors = names.tsvectors(k)
        statements += [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " id serial8 PRIMARY KEY, created_at timestamp NOT NULL DEFAULT now(),"
                " chunk_id int8 NOT NULL REFERENCES {} {fk}, ts tsvector, UNIQUE (chunk_id))"
            ).format(tsvectors, chunks, fk=_FK),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING btree (chunk_id)").format(
                sql.Identifier(_name(f"{k}_pipeline_tsvector_chunk_id_index")), tsvectors
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (ts)").format(
                sql.Identifier(_name(f"{k}_pipeline_tsvector_index")), tsvectors
            ),
        ]
    return statements
