"""SQL in, analysis out: finding pgml calls, classifying them, and splicing rewrites (pure, no database)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from pgml_proxy.sql import (
    AnswerColumn,
    Argument,
    Clause,
    Literal,
    SessionCommand,
    Span,
    StatementAnalysis,
    Strategy,
    analyze,
    canonical,
    mentions_pgml,
    parses,
    splice,
)

IMPLEMENTED = frozenset(
    {
        "embed",
        "chunk",
        "version",
        "transform",
        "transform_stream",
        "predict",
        "predict_batch",
        "rank",
        "train",
        "deploy",
        "load_dataset",
        "generate",
    }
)
_ALWAYS_SETS = {"chunk", "rank", "transform_stream", "train", "deploy", "load_dataset"}

A, F, S, M, U = (
    Strategy.ANSWER,
    Strategy.FOLD,
    Strategy.SPLICE,
    Strategy.MATERIALIZE,
    Strategy.UNREACHABLE,
)


def set_returning(name: str, args: Sequence[Argument]) -> bool:
    """What the registry would say: embed is SETOF for a text[] second argument; predict_batch by project."""
    if name in _ALWAYS_SETS:
        return True
    if name == "embed":
        second = next((a for a in args if a.name == "inputs"), args[1] if len(args) > 1 else None)
        return second is not None and (second.name == "inputs" or second.is_array() is True)
    if name == "predict_batch":
        return bool(args) and args[0].literal is not None and isinstance(args[0].literal.value, str)
    return False


def one(sql: str) -> StatementAnalysis:
    statements = analyze(sql, IMPLEMENTED, set_returning)
    assert len(statements) == 1, statements
    return statements[0]


def strategies(sql: str) -> list[tuple[str, Strategy]]:
    return [(c.name, c.strategy) for c in one(sql).calls]


# --- fast path -----------------------------------------------------------------------------------


def test_fast_path_sees_pgml_in_any_case_without_decoding():
    assert mentions_pgml(b"SELECT PgMl.embed('m', 'x')")
    assert mentions_pgml(memoryview(b"select * from pgml.models"))
    assert mentions_pgml(bytearray(b"\xff\xfe pgml"))
    assert not mentions_pgml(b"SELECT 1; SELECT pg_ml, 'p g m l'")
    assert not mentions_pgml(b"")


# --- the contract's forms (§8) -------------------------------------------------------------------

CONTRACT_FORMS = [
    (
        "SELECT id, pgml.predict('churn', ARRAY[tenure, spend]) AS risk FROM customers;",
        S,
        [("predict", S)],
    ),
    ("SELECT pgml.predict('prices', (carat, cut, color)) FROM gems LIMIT 5;", S, [("predict", S)]),
    (
        "SELECT id FROM mail WHERE pgml.predict('spam', ARRAY[links, caps]) > 0.5;",
        M,
        [("predict", M)],
    ),
    (
        "SELECT title FROM docs ORDER BY pgml.cosine_similarity(vec, pgml.embed('intfloat/e5-small-v2', "
        "'query: cheap flights')) DESC LIMIT 3;",
        F,
        [("embed", F)],
    ),
    (
        "SELECT title FROM docs ORDER BY emb <=> pgml.embed('intfloat/e5-small-v2', 'query: hotels')::vector(384) "
        "LIMIT 3;",
        F,
        [("embed", F)],
    ),
    (
        "INSERT INTO doc_vec (doc_id, v) SELECT id, pgml.embed('intfloat/e5-small-v2', body) FROM docs;",
        M,
        [("embed", M)],
    ),
    (
        "UPDATE reviews SET mood = pgml.transform('text-classification', inputs => ARRAY[body]) -> 0 ->> 'label' "
        "WHERE mood IS NULL;",
        M,
        [("transform", M)],
    ),
    (
        "WITH s AS (SELECT id, pgml.predict('rank', ARRAY[a, b]) AS p FROM hits) SELECT id FROM s ORDER BY p DESC;",
        M,
        [("predict", M)],
    ),
    (
        "SELECT t.id, pgml.predict(m.id, ARRAY[t.x, t.y]) FROM t CROSS JOIN LATERAL "
        "(SELECT id FROM pgml.models ORDER BY id DESC LIMIT 1) m;",
        S,
        [("predict", S)],
    ),
    (
        "SELECT q.id, r.corpus_id, r.score FROM questions q CROSS JOIN LATERAL "
        "pgml.rank('mixedbread-ai/mxbai-rerank-base-v1', q.body, q.candidates) r;",
        M,
        [("rank", M)],
    ),
    (
        "SELECT chunk_index, chunk FROM pgml.chunk('recursive_character', 'long text …', '{\"chunk_size\": 200}');",
        A,
        [("chunk", A)],
    ),
    (
        "INSERT INTO pieces (doc_id, idx, body) SELECT d.id, c.chunk_index, c.chunk "
        "FROM docs d, pgml.chunk('markdown', d.body) c;",
        M,
        [("chunk", M)],
    ),
    (
        "SELECT pgml.predict_batch('churn', array_agg(f)) FROM (SELECT ARRAY[tenure, spend] AS f FROM customers) s;",
        M,
        [("predict_batch", M)],
    ),
    ("SELECT pgml.divide(pgml.sum(emb), count(emb)) FROM doc_vec;", None, []),
    (
        "SELECT author, pgml.sum(v) FROM doc_vec JOIN docs ON docs.id = doc_id GROUP BY author;",
        None,
        [],
    ),
    ("SELECT (pgml.chunk('character', body)).chunk FROM docs;", M, [("chunk", M)]),
    ("SELECT (pgml.deploy('p', 'best_score')).algorithm;", A, [("deploy", A)]),
    ("SELECT pgml.load_dataset('iris');", A, [("load_dataset", A)]),
    (
        'SELECT pgml.transform(\'question-answering\', inputs => ARRAY[\'{"question": "Who?", '
        '"context": "Ann wrote it."}\']) ->> \'answer\';',
        F,
        [("transform", F)],
    ),
    (
        "DECLARE g CURSOR FOR SELECT pgml.transform_stream('text-generation', input => 'Once upon')",
        A,
        [("transform_stream", A)],
    ),
    ("SELECT pgml.embed($1, $2, $3::jsonb)", A, [("embed", A)]),
    ("SELECT embed FROM pgml.embed($1, $2)", A, [("embed", A)]),
    (
        "SELECT * FROM pgml.train('p', algorithm => 'xgboost', hyperparams => '{\"n_estimators\": 10}');",
        A,
        [("train", A)],
    ),
    (
        "CREATE TABLE notes (body text, v real[] GENERATED ALWAYS AS "
        "(pgml.embed('intfloat/e5-small-v2', body)) STORED);",
        U,
        [("embed", U)],
    ),
    ("DO $$ BEGIN PERFORM pgml.embed('intfloat/e5-small-v2', ARRAY['a', 'b']); END $$;", U, []),
    (
        "SELECT m.id, m.metrics ->> 'r2' FROM pgml.trained_models t JOIN pgml.models m ON m.id = t.id "
        "ORDER BY (m.metrics ->> 'r2')::float DESC;",
        None,
        [],
    ),
]


@pytest.mark.parametrize(("sql", "statement", "calls"), CONTRACT_FORMS)
def test_every_contract_form_gets_its_strategy(sql, statement, calls):
    analysis = one(sql)
    assert analysis.parsed
    assert [(c.name, c.strategy) for c in analysis.calls] == calls
    assert analysis.strategy is statement


def test_streaming_cursor_script_keeps_each_statement_apart():
    sql = (
        "BEGIN; DECLARE g CURSOR FOR SELECT pgml.transform_stream('text-generation', input => 'Once upon'); "
        "FETCH 5 FROM g; FETCH 5 FROM g; COMMIT;"
    )
    statements = analyze(sql, IMPLEMENTED, set_returning)
    assert [s.kind for s in statements] == [
        "TransactionStmt",
        "DeclareCursorStmt",
        "FetchStmt",
        "FetchStmt",
        "TransactionStmt",
    ]
    declare = statements[1]
    assert declare.cursor == "g"
    assert declare.strategy is A
    assert declare.inner.text(sql) == (
        "SELECT pgml.transform_stream('text-generation', input => 'Once upon')"
    )
    assert [s.span.text(sql) for s in statements[2:]] == ["FETCH 5 FROM g", "FETCH 5 FROM g", "COMMIT"]


# --- call sites: spans, arguments, casts, aliases ------------------------------------------------


def test_select_list_call_records_span_arguments_alias_and_column_name():
    sql = "SELECT id, pgml.predict('churn', ARRAY[tenure, spend]) AS risk FROM customers;"
    (call,) = one(sql).calls
    assert call.span.text(sql) == "pgml.predict('churn', ARRAY[tenure, spend])"
    assert call.clause is Clause.TARGET
    assert (call.target_index, call.alias, call.column_name) == (1, "risk", "risk")
    assert call.target_span.text(sql) == "pgml.predict('churn', ARRAY[tenure, spend]) AS risk"
    assert call.expr_span.text(sql) == "pgml.predict('churn', ARRAY[tenure, spend])"
    model, features = call.args
    assert model == Argument(
        name=None,
        span=Span(24, 31),
        full_span=Span(24, 31),
        constant=True,
        literal=Literal("churn"),
    )
    assert model.span.text(sql) == "'churn'"
    assert features.span.text(sql) == "ARRAY[tenure, spend]"
    assert (features.constant, features.array_constructor, features.literal) == (False, True, None)
    assert call.constant is False
    assert call.strategy is S and call.reason is None


def test_unaliased_call_is_named_after_the_function_and_bare_alias_is_an_alias():
    sql = "SELECT pgml.embed('m', body), pgml.embed('m', title) t, (pgml.chunk('c', body)).chunk FROM docs"
    first, second, third = one(sql).calls
    assert (first.alias, first.column_name) == (None, "embed")
    assert (second.alias, second.column_name) == ("t", "t")
    assert second.target_span.text(sql) == "pgml.embed('m', title) t"
    assert second.expr_span.text(sql) == "pgml.embed('m', title)"
    assert (third.field, third.column_name) == ("chunk", "chunk")
    assert third.expr_span.text(sql) == "(pgml.chunk('c', body)).chunk"


def test_offsets_are_characters_with_non_ascii_text_before_and_inside_the_call():
    sql = (
        "SELECT 'é😀中文', /* コメント pgml */ pgml.embed('modèle', 'café 😀 東京', kwargs => '{\"é\": 1}') "
        'AS "résumé", naïve FROM "tablé" WHERE x = \'ü\''
    )
    statement = one(sql)
    (call,) = statement.calls
    assert call.span.text(sql) == "pgml.embed('modèle', 'café 😀 東京', kwargs => '{\"é\": 1}')"
    assert [a.span.text(sql) for a in call.args] == ["'modèle'", "'café 😀 東京'", "'{\"é\": 1}'"]
    assert [a.full_span.text(sql) for a in call.args][2] == "kwargs => '{\"é\": 1}'"
    assert [a.literal.value for a in call.args] == ["modèle", "café 😀 東京", '{"é": 1}']
    assert (call.alias, call.column_name) == ("résumé", "résumé")
    assert call.target_span.text(sql) == call.span.text(sql) + ' AS "résumé"'
    assert call.level.from_clause.text(sql) == '"tablé"'
    assert call.level.where.text(sql) == "x = 'ü'"
    assert statement.span == Span(0, len(sql))
    # The UTF-8 byte offset of the call is not its character offset: spans are characters.
    assert sql.encode().index(b"pgml.embed") != call.span.start


def test_calls_in_comments_and_string_constants_are_not_found():
    sql = (
        "SELECT /* pgml.embed('a', b) */ 'pgml.embed(x)', E'pgml.embed(\\'q\\')', $$ pgml.embed( $$, "
        "$tag$ pgml.chunk('c', 'd') $tag$, U&'pgml.version()' -- pgml.embed(\n"
        "  , pgml.version()"
    )
    assert mentions_pgml(sql.encode())
    (call,) = one(sql).calls
    assert call.name == "version"
    assert call.span.text(sql) == "pgml.version()"
    assert call.strategy is F  # other select-list entries are not calls: the upstream evaluates them


def test_named_arguments_with_quoted_keyword_names():
    sql = "SELECT pgml.chunk(splitter => 'character', \"text\" => body, kwargs := '{}') FROM docs"
    (call,) = one(sql).calls
    assert [a.name for a in call.args] == ["splitter", "text", "kwargs"]
    assert [a.span.text(sql) for a in call.args] == ["'character'", "body", "'{}'"]
    assert call.args[1].full_span.text(sql) == '"text" => body'
    sql = "SELECT * FROM pgml.load_dataset('iris', \"limit\" => 10)"
    (call,) = one(sql).calls
    assert call.args[1] == Argument(
        name="limit",
        span=Span(51, 53),
        full_span=Span(40, 53),
        constant=True,
        literal=Literal(10),
    )


def test_casts_applied_to_the_call_are_recorded_innermost_first():
    sql = (
        "SELECT pgml.embed('m', a)::vector(384), CAST(pgml.embed('m', b) AS real[]) AS c, "
        "(pgml.embed('m', d))::vector(3)::text FROM t "
        "WHERE ts > pgml.transform('t', inputs => ARRAY[x])::timestamp with time zone "
        "ORDER BY emb <=> pgml.embed('m', $1)::double precision[] LIMIT 2"
    )
    calls = one(sql).calls
    assert [c.casts for c in calls] == [
        ("vector(384)",),
        ("real[]",),
        ("vector(3)", "text"),
        ("timestamp with time zone",),
        ("double precision[]",),
    ]
    assert [c.cast for c in calls] == [
        "vector(384)",
        "real[]",
        "text",
        "timestamp with time zone",
        "double precision[]",
    ]
    assert [c.expr_span.text(sql) for c in calls] == [
        "pgml.embed('m', a)::vector(384)",
        "CAST(pgml.embed('m', b) AS real[])",
        "(pgml.embed('m', d))::vector(3)::text",
        "pgml.transform('t', inputs => ARRAY[x])::timestamp with time zone",
        "pgml.embed('m', $1)::double precision[]",
    ]
    assert [c.strategy for c in calls] == [S, S, S, M, F]


def test_argument_literals_parameters_and_array_hints():
    sql = (
        "SELECT pgml.embed('m', ARRAY['a', 'b'], '{}'::jsonb), pgml.embed($1, inputs => $2::text[]), "
        "pgml.predict(7, ARRAY[1.5, -2, NULL, true]), pgml.embed('m', 'x' || $3)"
    )
    first, second, third, fourth = one(sql).calls
    assert first.args[1].literal == Literal(("a", "b"))
    assert first.args[1].is_array() is True
    assert first.args[2].literal == Literal("{}", "jsonb")
    assert first.args[2].is_array() is False
    assert (second.args[0].param, second.args[0].params, second.args[0].is_array()) == (1, (1,), None)
    assert (second.args[1].param, second.args[1].cast, second.args[1].is_array()) == (2, "text[]", True)
    assert third.args[0].literal == Literal(7)
    assert third.args[1].literal == Literal((Decimal("1.5"), -2, None, True))
    assert (fourth.args[1].param, fourth.args[1].params, fourth.args[1].literal) == (None, (3,), None)
    assert fourth.args[1].constant
    assert [c.set_returning for c in (first, second, third, fourth)] == [True, True, False, False]


def test_quoted_and_upper_case_names_resolve_like_postgres():
    sql = "SELECT \"pgml\".\"embed\"('m', 'x'), pgml.\"Embed\"('m', 'x'), PGML.EMBED('m', 'y'), \"PGML\".embed('m', 'z')"
    calls = one(sql).calls
    assert [c.span.text(sql) for c in calls] == ["\"pgml\".\"embed\"('m', 'x')", "PGML.EMBED('m', 'y')"]


def test_volatile_arguments_are_row_dependent():
    sql = "SELECT pgml.embed('m', random()::text), pgml.embed('m', now()::text) FROM docs"
    volatile, stable = one(sql).calls
    assert (volatile.args[1].constant, volatile.args[1].volatile, volatile.strategy) == (False, True, S)
    assert (stable.args[1].constant, stable.args[1].volatile, stable.strategy) == (True, False, F)


# --- several statements, unparsable ones ---------------------------------------------------------


def test_multi_statement_string_gives_one_analysis_per_statement():
    sql = "SELECT 1;  /* é */ SELECT pgml.version() ; UPDATE t SET v = pgml.embed('m', b);SELECT 'x'"
    statements = analyze(sql, IMPLEMENTED, set_returning)
    assert [s.span.text(sql) for s in statements] == [
        "SELECT 1",
        "SELECT pgml.version()",
        "UPDATE t SET v = pgml.embed('m', b)",
        "SELECT 'x'",
    ]
    assert [s.strategy for s in statements] == [None, A, M, None]
    assert statements[2].calls[0].span.text(sql) == "pgml.embed('m', b)"


def test_unparsable_statement_is_marked_for_relay_and_the_others_are_still_analysed():
    sql = "SELECT pgml.embed('m', 'é'); SELEC broken pgml.embed('m','b'); SELECT pgml.version() AS v"
    first, broken, last = analyze(sql, IMPLEMENTED, set_returning)
    assert (first.parsed, first.strategy) == (True, A)
    assert first.calls[0].span.text(sql) == "pgml.embed('m', 'é')"
    assert broken.parsed is False and broken.kind is None and broken.calls == ()
    assert broken.span.text(sql) == "SELEC broken pgml.embed('m','b')"
    assert "syntax error" in broken.error
    assert (last.parsed, last.strategy, last.calls[0].alias) == (True, A, "v")
    assert last.calls[0].span.text(sql) == "pgml.version()"


def test_unterminated_string_is_one_unparsed_statement():
    (statement,) = analyze("  SELECT pgml.embed('m', 'oops)  ", IMPLEMENTED)
    assert statement.parsed is False
    assert statement.span == Span(2, 31)


def test_empty_text_has_no_statements():
    assert analyze("  -- nothing\n ", IMPLEMENTED) == []


# --- nesting and functions the proxy does not implement ------------------------------------------


def test_nested_calls_come_innermost_first_with_their_parent():
    sql = (
        "SELECT pgml.transform(task => 'summarization', "
        "inputs => ARRAY[pgml.generate('p', pgml.transform('t', inputs => ARRAY[body]) ->> 0)]) FROM docs"
    )
    inner, middle, outer = one(sql).calls
    assert [c.name for c in (inner, middle, outer)] == ["transform", "generate", "transform"]
    assert (inner.parent, middle.parent, outer.parent) == (1, 2, None)
    assert inner.span.text(sql) == "pgml.transform('t', inputs => ARRAY[body])"
    assert [c.strategy for c in (inner, middle, outer)] == [M, M, M]
    assert outer.reason == "has a row-dependent pgml call in its arguments"
    assert middle.reason == "argument of another pgml call"


def test_constant_inner_call_is_folded_before_its_row_dependent_parent():
    sql = "SELECT id, pgml.embed(pgml.transform('t', inputs => ARRAY['x']) ->> 'model', body) FROM docs"
    inner, outer = one(sql).calls
    assert (inner.strategy, inner.parent) == (F, 1)
    assert (outer.strategy, outer.args[0].constant) == (S, True)


def test_unimplemented_pgml_functions_are_left_alone_but_searched():
    sql = "SELECT pgml.divide(pgml.sum(pgml.embed('m', body)::real[]), count(*)) FROM docs"
    (call,) = one(sql).calls
    assert call.name == "embed"
    assert call.expr_span.text(sql) == "pgml.embed('m', body)::real[]"
    assert (call.strategy, call.in_aggregate, call.clause) == (M, True, Clause.TARGET)
    assert one("SELECT pgml.normalize_l2(v), pgml.sum(v) FROM pgml.models").calls == ()


def test_aggregate_as_argument_is_recorded_for_the_group_by_fetch():
    sql = "SELECT author, pgml.embed('m', string_agg(body, ' ')) FROM docs WHERE n > 1 GROUP BY author"
    (call,) = one(sql).calls
    assert (call.args[1].aggregate, call.args[1].constant, call.in_aggregate) == (True, False, False)
    assert call.strategy is M
    assert call.level.group_by.text(sql) == "author"
    assert call.level.where.text(sql) == "n > 1"


# --- answer --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "columns"),
    [
        ("SELECT pgml.version()", [AnswerColumn("call", 0, name="version")]),
        ("SELECT pgml.embed('m', 'hi') AS e", [AnswerColumn("call", 0, name="e")]),
        (
            "SELECT pgml.version(), pgml.embed('m', 'x')::vector(3) v",
            [
                AnswerColumn("call", 0, name="version"),
                AnswerColumn("call", 1, name="v", casts=("vector(3)",)),
            ],
        ),
        ("SELECT * FROM pgml.chunk('character', 'text', '{}')", [AnswerColumn("star", 0)]),
        (
            "SELECT chunk FROM pgml.chunk('character', 'text') c",
            [AnswerColumn("column", 0, column="chunk", name="chunk")],
        ),
        (
            "SELECT c.chunk AS piece, c.chunk_index::int, c.* FROM pgml.chunk('character', 'text') AS c",
            [
                AnswerColumn("column", 0, column="chunk", name="piece"),
                AnswerColumn("column", 0, column="chunk_index", name="chunk_index", casts=("integer",)),
                AnswerColumn("star", 0),
            ],
        ),
        (
            "SELECT (pgml.deploy('p', 'best_score')).algorithm",
            [AnswerColumn("call", 0, name="algorithm", field="algorithm")],
        ),
    ],
)
def test_statements_that_are_only_constant_pgml_calls_are_answered(sql, columns):
    analysis = one(sql)
    assert analysis.strategy is A
    assert list(analysis.answer) == columns
    assert all(c.strategy is A for c in analysis.calls)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM pgml.chunk('c', 'text') WHERE chunk_index > 1",
        "SELECT * FROM pgml.chunk('c', 'text') ORDER BY chunk_index DESC",
        "SELECT * FROM pgml.chunk('c', 'text') LIMIT 1",
        "SELECT * FROM pgml.chunk('c', 'text') WITH ORDINALITY",
        "SELECT pgml.version() FROM t",
        "SELECT 1 AS one, pgml.version()",
        "SELECT pgml.version() || '!'",
        "SELECT x.chunk FROM pgml.chunk('c', 't') c",
        "WITH a AS (SELECT 1) SELECT pgml.version()",
        "SELECT pgml.version() UNION ALL SELECT 'x'",
        "EXPLAIN SELECT pgml.version()",
        "COPY (SELECT pgml.version()) TO STDOUT",
    ],
)
def test_constant_calls_with_anything_else_in_the_statement_are_folded(sql):
    analysis = one(sql)
    assert analysis.strategy is F
    assert analysis.answer == ()


def test_constant_set_returning_call_beside_a_table_is_folded_as_a_from_item():
    sql = "SELECT d.id, c.chunk FROM docs d, pgml.chunk('c', 'const') AS c(i, t)"
    (call,) = one(sql).calls
    assert (call.strategy, call.clause, call.set_returning) == (F, Clause.FROM, True)
    assert (call.from_alias, call.column_aliases, call.source_index) == ("c", ("i", "t"), 1)


# --- splice versus materialize -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT id, pgml.embed('m', body) FROM docs ORDER BY id LIMIT 10 OFFSET 5", None),
        ("SELECT *, pgml.embed('m', body)::vector(3) FROM docs WHERE id > 3 FOR UPDATE", None),
        ("WITH d AS (SELECT * FROM docs) SELECT pgml.embed('m', body) FROM d", None),
        ("EXPLAIN ANALYZE SELECT pgml.embed('m', body) FROM docs", None),
        ("SELECT pgml.embed('m', body) AS e FROM docs ORDER BY e", "ORDER BY refers to the pgml column"),
        ("SELECT id, pgml.embed('m', body) FROM docs ORDER BY 2", "ORDER BY refers to the pgml column"),
        ("SELECT pgml.embed('m', body) FROM docs ORDER BY embed", "ORDER BY refers to the pgml column"),
        ("SELECT DISTINCT pgml.embed('m', body) FROM docs", "the SELECT has DISTINCT"),
        ("SELECT pgml.embed('m', a) FROM docs GROUP BY a", "the SELECT has GROUP BY"),
        (
            "SELECT pgml.embed('m', body), count(*) OVER () FROM docs",
            "the SELECT has aggregate or window functions",
        ),
        ("SELECT pgml.embed('m', max(body)) FROM docs", "the SELECT has aggregate or window functions"),
        ("SELECT pgml.embed('m', body) INTO t2 FROM docs", "the SELECT has SELECT INTO"),
        (
            "SELECT a FROM t UNION SELECT pgml.embed('m', b)::text FROM u",
            "not in the select list of the statement's own SELECT",
        ),
        (
            "SELECT * FROM (SELECT pgml.embed('m', b) FROM u) s",
            "not in the select list of the statement's own SELECT",
        ),
        (
            "COPY (SELECT pgml.embed('m', b) FROM u) TO STDOUT",
            "not in the select list of the statement's own SELECT",
        ),
        (
            "DECLARE c CURSOR FOR SELECT pgml.embed('m', b) FROM u",
            "not in the select list of the statement's own SELECT",
        ),
        ("SELECT pgml.embed('m', body) > pgml.embed('m', 'q') FROM docs", "part of a larger expression"),
        ("SELECT (pgml.chunk('c', body)).chunk FROM docs", "composite field access"),
        ("SELECT (pgml.chunk('c', body)).* FROM docs", "composite expansion"),
        ("SELECT pgml.chunk('c', body) FROM docs", "set-returning"),
        ("SELECT pgml.embed('m', ARRAY[body, title]) FROM docs", "set-returning"),
        ("SELECT id FROM docs WHERE pgml.predict('p', ARRAY[a]) > 0", "in WHERE"),
        ("SELECT id FROM docs ORDER BY pgml.predict('p', ARRAY[a])", "in ORDER BY"),
        ("SELECT a FROM t GROUP BY a HAVING max(pgml.predict('p', ARRAY[b])) > 0", "in HAVING"),
        ("SELECT id FROM t JOIN u ON pgml.predict('p', ARRAY[u.a]) > 0", "in JOIN ON"),
        ("UPDATE t SET v = pgml.embed('m', b)", "in SET"),
        ("DELETE FROM t WHERE pgml.predict('p', ARRAY[a]) > 0 RETURNING id", "in WHERE"),
        (
            "INSERT INTO t (v) VALUES ((SELECT pgml.embed('m', b) FROM u LIMIT 1))",
            "not in the select list of the statement's own SELECT",
        ),
        ("UPDATE t SET a = 1 RETURNING pgml.embed('m', b) AS e", None),
        ("DELETE FROM t RETURNING id, pgml.embed('m', b)::vector(3)", None),
        ("UPDATE t SET a = 1 RETURNING length(pgml.embed('m', b)::text)", "part of a larger expression"),
        (
            "WITH x AS (UPDATE t SET a = 1 RETURNING pgml.embed('m', b) AS e) SELECT * FROM x",
            "in RETURNING",
        ),
        ("SELECT d.id FROM docs d, pgml.chunk('c', d.body) c", "in FROM"),
    ],
)
def test_row_dependent_calls_splice_only_in_a_plain_top_level_select_or_returning_list(sql, reason):
    calls = [c for c in one(sql).calls if not c.constant]
    assert len(calls) == 1
    assert calls[0].strategy is (S if reason is None else M)
    assert calls[0].reason == reason


def test_returning_list_entries_have_their_own_spans():
    sql = "INSERT INTO t (a) VALUES ($1) RETURNING id, pgml.embed('m', a) AS e"
    (call,) = one(sql).calls
    assert (call.clause, call.target_index, call.alias) == (Clause.RETURNING, 1, "e")
    assert call.target_span.text(sql) == "pgml.embed('m', a) AS e"
    assert call.level.kind == "insert"
    assert sql[: call.level.targets_end] == sql  # hidden columns go after the last RETURNING entry


# --- materialize: where the arguments come from --------------------------------------------------


def test_materialize_level_for_a_where_call():
    sql = "WITH r AS (SELECT 1) SELECT id FROM mail m JOIN users u ON u.id = m.uid, tags WHERE pgml.predict('spam', ARRAY[m.links]) > 0.5"
    (call,) = one(sql).calls
    level = call.level
    assert (level.kind, level.parent, call.in_subquery) == ("select", None, False)
    assert level.from_clause.text(sql) == "mail m JOIN users u ON u.id = m.uid, tags"
    assert [s.span.text(sql) for s in level.sources] == ["mail m", "users u", "tags"]
    assert (level.where, level.where_has_call, level.from_has_call) == (None, True, False)
    assert level.with_clause.text(sql) == "WITH r AS (SELECT 1)"
    assert level.span.text(sql) == sql


def test_materialize_level_for_a_lateral_function_excludes_nothing_but_says_where_the_call_is():
    sql = (
        "SELECT q.id, r.score FROM questions q CROSS JOIN LATERAL "
        "pgml.rank('m', q.body, q.candidates) r WHERE q.open"
    )
    (call,) = one(sql).calls
    assert (call.clause, call.lateral, call.from_alias, call.source_index) == (Clause.FROM, True, "r", 1)
    assert [(s.span.text(sql), s.lateral, s.has_call) for s in call.level.sources] == [
        ("questions q", False, False),
        ("LATERAL pgml.rank('m', q.body, q.candidates) r", True, True),
    ]
    assert call.level.where.text(sql) == "q.open"
    assert call.level.from_has_call


def test_materialize_level_of_a_correlated_subquery_links_its_parent():
    sql = "SELECT x FROM t WHERE EXISTS (SELECT 1 FROM u WHERE pgml.predict('p', ARRAY[t.a, u.b]) > 0.5) AND t.z = 1"
    (call,) = one(sql).calls
    level = call.level
    assert call.in_subquery
    assert level.span.text(sql) == "SELECT 1 FROM u WHERE pgml.predict('p', ARRAY[t.a, u.b]) > 0.5"
    assert [s.span.text(sql) for s in level.sources] == ["u"]
    assert [s.span.text(sql) for s in level.parent.sources] == ["t"]
    assert level.parent.where is None  # the outer WHERE holds the subquery with the call


def test_materialize_levels_of_update_delete_and_merge():
    sql = "UPDATE docs AS d SET v = pgml.embed('m', d.body) FROM authors a WHERE a.id = d.author_id"
    level = one(sql).calls[0].level
    assert level.kind == "update"
    assert [s.span.text(sql) for s in level.sources] == ["docs AS d", "authors a"]
    assert level.where.text(sql) == "a.id = d.author_id"

    sql = "DELETE FROM docs USING authors a JOIN x USING (id) WHERE pgml.predict('p', ARRAY[docs.a]) > 1"
    level = one(sql).calls[0].level
    assert level.kind == "delete"
    assert [s.span.text(sql) for s in level.sources] == ["docs", "authors a", "x"]
    assert level.from_clause.text(sql) == "authors a JOIN x USING (id)"

    sql = (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = pgml.embed('m', s.body) "
        "WHEN NOT MATCHED THEN INSERT VALUES (s.id, pgml.embed('m', s.body))"
    )
    set_call, values_call = one(sql).calls
    assert (set_call.clause, values_call.clause) == (Clause.SET, Clause.VALUES)
    level = set_call.level
    assert [s.span.text(sql) for s in level.sources] == ["t", "s"]
    assert level.join_condition.text(sql) == "t.id = s.id"


def test_materialize_fetch_query_built_from_the_analysis_parses():
    sql = "SELECT id FROM mail m JOIN users u ON u.id = m.uid WHERE m.spam AND pgml.predict('spam', ARRAY[m.links, u.age]) > 0.5"
    (call,) = one(sql).calls
    args = ", ".join(a.span.text(sql) for a in call.args)
    sources = ", ".join(s.span.text(sql) for s in call.level.sources)
    fetch = f"SELECT DISTINCT {args} FROM {sources}"
    assert canonical(fetch) == canonical("SELECT DISTINCT 'spam', ARRAY[m.links, u.age] FROM mail m, users u")
    lookup = splice(
        sql, [(call.span.start, call.span.end, "(SELECT r FROM unnest($1::text[], $2::real[]) x(k, r))")]
    )
    assert parses(lookup)
    assert lookup.startswith(
        "SELECT id FROM mail m JOIN users u ON u.id = m.uid WHERE m.spam AND (SELECT r FROM"
    )


# --- unreachable ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "where"),
    [
        ("CREATE VIEW v AS SELECT pgml.version()", "in a view definition"),
        (
            "CREATE MATERIALIZED VIEW mv AS SELECT id, pgml.embed('m', body) FROM docs",
            "in a materialized view",
        ),
        ("CREATE FUNCTION f(t text) RETURNS real[] RETURN pgml.embed('m', t)", "in a function or procedure"),
        (
            "CREATE FUNCTION f(t text = pgml.version()) RETURNS text LANGUAGE sql AS 'SELECT t'",
            "in a function or procedure",
        ),
        (
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW WHEN (pgml.predict('p', ARRAY[NEW.a]) > 0) EXECUTE FUNCTION g()",
            "in a trigger definition",
        ),
        (
            "CREATE TABLE n (b text, v real[] GENERATED ALWAYS AS (pgml.embed('m', b)) STORED)",
            "in a generated column",
        ),
        ("CREATE TABLE n (a text DEFAULT pgml.version())", "in a column default"),
        ("CREATE TABLE n (a real[] CHECK (pgml.predict('p', a) > 0))", "in a check constraint"),
        ("CREATE INDEX i ON docs ((pgml.embed('m', body)::vector(3)))", "in an index definition"),
        ("CREATE INDEX i ON docs (id) WHERE pgml.predict('p', ARRAY[a]) > 0", "in an index definition"),
        ("CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO log VALUES (pgml.version())", "in a rule"),
        ("CREATE POLICY p ON t USING (pgml.predict('p', ARRAY[a]) > 0)", "in a row security policy"),
        ("ALTER TABLE t ALTER COLUMN a SET DEFAULT pgml.version()", "in a column default"),
        (
            "ALTER TABLE t ADD COLUMN v real[] GENERATED ALWAYS AS (pgml.embed('m', b)) STORED",
            "in a generated column",
        ),
        ("ALTER TABLE t ALTER COLUMN a TYPE real[] USING pgml.embed('m', a)", "in ALTER TABLE"),
        ("CREATE DOMAIN d AS text CHECK (pgml.predict('p', ARRAY[1]) > 0)", "in a domain definition"),
        ("COPY t FROM STDIN WHERE pgml.predict('p', ARRAY[a]) > 0", "in a COPY FROM filter"),
    ],
)
def test_calls_that_would_run_inside_postgres_are_unreachable_with_a_reason(sql, where):
    analysis = one(sql)
    assert analysis.strategy is U
    assert analysis.calls and all(c.strategy is U for c in analysis.calls)
    name = analysis.calls[0].name
    assert analysis.reason.startswith(f"pgml.{name} cannot be used {where}: it would run inside PostgreSQL ")
    assert analysis.reason.endswith("out of the proxy's reach")
    assert analysis.calls[0].reason == analysis.reason


def test_view_reason_is_one_sentence():
    assert one("CREATE VIEW v AS SELECT pgml.version()").reason == (
        "pgml.version cannot be used in a view definition: it would run inside PostgreSQL each time the view "
        "is read, out of the proxy's reach"
    )


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("DO $$ BEGIN PERFORM pgml.embed('m', ARRAY['a', 'b']); END $$", ("embed",)),
        ("DO LANGUAGE plpgsql 'BEGIN PERFORM pgml.version(); END'", ("version",)),
        ("DO $$ BEGIN RAISE NOTICE 'pgml.embed(x)'; PERFORM 1; END $$", ("embed",)),
        ("DO $$ BEGIN /* pgml.embed( */ -- pgml.chunk(\n PERFORM pgml.sum(v) FROM t; END $$", ()),
        (
            "CREATE FUNCTION f(t text) RETURNS real[] LANGUAGE sql AS $$ SELECT pgml.embed('m', t) $$",
            ("embed",),
        ),
        (
            "CREATE FUNCTION f(t text) RETURNS real[] LANGUAGE sql AS $$ -- pgml.embed(\n SELECT pgml.sum(t) $$",
            (),
        ),
        (
            "CREATE FUNCTION f(t text) RETURNS real[] LANGUAGE plpgsql AS $$ BEGIN RETURN PGML.\"embed\"('m', t); END $$",
            ("embed",),
        ),
        (
            "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'SELECT pgml.chunk(''c'', $1)' USING 1; END $$",
            ("chunk",),
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpython3u AS $$ plpy.execute(\"SELECT pgml.embed('m', 'x')\") $$",
            ("embed",),
        ),
    ],
)
def test_function_and_do_bodies_are_checked_for_pgml_calls(sql, found):
    analysis = one(sql)
    assert analysis.body_calls == found
    if found:
        assert analysis.strategy is U
        assert analysis.reason.startswith(f"pgml.{found[0]} cannot be used in a ")
    else:
        assert analysis.strategy is None


# --- EXPLAIN, COPY, PREPARE / EXECUTE ------------------------------------------------------------


def test_explain_copy_and_create_table_as_analyse_the_inner_statement():
    sql = "EXPLAIN (ANALYZE, FORMAT json) SELECT id, pgml.embed('m', body) FROM docs"
    analysis = one(sql)
    assert (analysis.explain, analysis.kind, analysis.strategy) == (True, "ExplainStmt", S)
    assert analysis.inner.text(sql) == "SELECT id, pgml.embed('m', body) FROM docs"

    sql = "COPY (SELECT id, pgml.embed('m', body) FROM docs) TO STDOUT WITH (FORMAT csv)"
    analysis = one(sql)
    assert (analysis.copy, analysis.strategy) == (True, M)
    assert analysis.inner.text(sql) == "SELECT id, pgml.embed('m', body) FROM docs"

    sql = "CREATE TABLE t2 AS SELECT id, pgml.embed('m', body) FROM docs WITH NO DATA"
    analysis = one(sql)
    assert analysis.inner.text(sql) == "SELECT id, pgml.embed('m', body) FROM docs"
    assert analysis.calls[0].level.span.text(sql) == "SELECT id, pgml.embed('m', body) FROM docs"
    assert analysis.strategy is M


def test_sql_level_prepare_execute_and_deallocate_are_recorded():
    sql = "PREPARE q (text, int) AS SELECT pgml.embed('m', $1); EXECUTE q('hé', 2); DEALLOCATE q; DEALLOCATE ALL; DISCARD ALL"
    prepare, execute, deallocate, deallocate_all, discard = analyze(sql, IMPLEMENTED, set_returning)
    assert prepare.session == SessionCommand("prepare", "q", ("text", "integer"))
    assert prepare.inner.text(sql) == "SELECT pgml.embed('m', $1)"
    assert (prepare.strategy, prepare.calls[0].args[1].param) == (A, 1)
    assert execute.session.kind == "execute" and execute.session.name == "q"
    assert [a.text(sql) for a in execute.session.args] == ["'hé'", "2"]
    assert deallocate.session == SessionCommand("deallocate", "q")
    assert deallocate_all.session == SessionCommand("deallocate", None)
    assert discard.session == SessionCommand("discard", None)


# --- splicing text -------------------------------------------------------------------------------


def test_fold_rewrite_leaves_every_other_character_untouched():
    sql = (
        "/* top: pgml.embed('no') */ SELECT title, E'it\\'s', $d$ pgml.embed( $d$ -- keep\n"
        "FROM docs ORDER BY emb <=> pgml.embed('intfloat/e5-small-v2', 'query: hôtels 😀')::vector(384) LIMIT 3"
    )
    (call,) = one(sql).calls
    assert call.strategy is F
    rewritten = splice(sql, [(call.span.start, call.span.end, "$1")])
    head, tail = sql[: call.span.start], sql[call.span.end :]
    assert rewritten == head + "$1" + tail
    assert tail == "::vector(384) LIMIT 3"
    assert parses(rewritten)
    assert canonical(rewritten) == canonical(
        "SELECT title, 'it''s', ' pgml.embed( ' FROM docs ORDER BY emb <=> $1::vector(384) LIMIT 3"
    )


def test_splice_rewrite_of_the_select_list_reparses():
    sql = "SELECT id, pgml.embed('m', body)::vector(3) AS e, title FROM docs WHERE id < 10 ORDER BY id"
    (call,) = one(sql).calls
    hidden = ", ".join(f'{a.span.text(sql)} AS "__pgml_{i}"' for i, a in enumerate(call.args))
    rewritten = splice(sql, [(call.target_span.start, call.target_span.end, f"NULL AS e, {hidden}")])
    assert rewritten == (
        'SELECT id, NULL AS e, \'m\' AS "__pgml_0", body AS "__pgml_1", title FROM docs WHERE id < 10 ORDER BY id'
    )
    assert parses(rewritten)


def test_several_replacements_in_any_order_and_multi_statement_text():
    sql = "SELECT pgml.version(); SELECT x FROM t WHERE a = pgml.embed('m', 'é') AND b = pgml.embed('m', $1)"
    first, second = analyze(sql, IMPLEMENTED, set_returning)
    assert first.strategy is A
    spans = [c.span for c in second.calls]
    rewritten = splice(sql, [(spans[1].start, spans[1].end, "$3"), (spans[0].start, spans[0].end, "$2")])
    assert rewritten == "SELECT pgml.version(); SELECT x FROM t WHERE a = $2 AND b = $3"
    assert splice(sql, []) == sql
    assert splice("ab", [(1, 1, "X")]) == "aXb"


def test_splice_refuses_overlapping_or_out_of_range_spans():
    with pytest.raises(ValueError, match="overlaps"):
        splice("SELECT 123456", [(7, 10, "x"), (9, 12, "y")])
    with pytest.raises(ValueError, match="outside"):
        splice("SELECT 1", [(7, 20, "x")])


def test_reparse_helpers():
    assert parses("SELECT 1; SELECT 2")
    assert not parses("SELEC 1")
    assert canonical("select  a::int from t -- c") == canonical("SELECT CAST(a AS integer) FROM t")


def test_aggregate_syntax_on_an_implemented_function_is_left_for_postgres_to_reject():
    assert one("SELECT pgml.version(*)").calls == ()
    assert one("SELECT pgml.embed('m', b) OVER () FROM d").calls == ()
    sql = "SELECT pgml.embed('m', pgml.version() ORDER BY x) FROM d"
    assert [(c.name, c.strategy, c.parent) for c in one(sql).calls] == [("version", F, None)]


def test_comments_and_spaces_inside_the_call_name_are_kept_in_its_span():
    sql = "SELECT pgml /* why not */ . embed ( 'm' , body ) FROM docs"
    (call,) = one(sql).calls
    assert call.span.text(sql) == "pgml /* why not */ . embed ( 'm' , body )"
    assert [a.span.text(sql) for a in call.args] == ["'m'", "body"]


_CALL_FORMS = [
    "pgml.embed('m', body)",
    "pgml.embed(transformer => 'm', \"text\" => $1)",
    "(pgml.chunk('c', body)).chunk",
    "CAST(pgml.embed('m', 'é') AS real[])",
    "pgml.embed('m',body)::vector(3)::text",
    "pgml.transform('t', inputs => ARRAY[body]) ->> 0",
    "pgml.embed('m', pgml.transform('x', inputs => ARRAY[b]) ->> 0)",
]
_POSITIONS = [
    "SELECT {c} FROM docs",
    "SELECT id, {c} AS e FROM docs d WHERE d.x > 1 ORDER BY id LIMIT 3",
    "SELECT /* é */ 'ü', {c} -- x\n FROM docs",
    "SELECT id FROM docs WHERE {c} IS NOT NULL AND x IS DISTINCT FROM y",
    "SELECT id FROM docs ORDER BY {c} DESC",
    "WITH w AS (SELECT {c} AS v FROM docs) SELECT * FROM w",
    "SELECT * FROM docs d CROSS JOIN LATERAL (SELECT {c} AS v) l",
    "SELECT * FROM t JOIN u USING (id) LEFT JOIN v ON {c} IS NOT NULL, w",
    "UPDATE docs SET v = {c} WHERE id = 1 RETURNING id, {c}",
    "INSERT INTO t SELECT {c} FROM docs ON CONFLICT DO NOTHING RETURNING *",
    "DELETE FROM docs USING a WHERE {c} IS NULL",
    "SELECT count(*) FROM docs GROUP BY {c} HAVING count(*) > 1",
    "SELECT a FROM t UNION ALL SELECT {c}::text FROM u",
    "SELECT (SELECT {c} FROM docs LIMIT 1)",
    "COPY (SELECT {c} FROM docs) TO STDOUT",
    "CREATE TABLE z AS SELECT {c} FROM docs WITH DATA",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = {c}",
    "INSERT INTO t VALUES ({c})",
]


@pytest.mark.parametrize("position", _POSITIONS)
def test_every_reported_span_can_be_replaced_and_the_statement_still_parses(position):
    for form in _CALL_FORMS:
        sql = position.replace("{c}", form)
        calls = one(sql).calls
        assert calls, sql
        for call in calls:
            assert call.span.text(sql).lower().startswith("pgml")
            for span, text in (
                (call.span, "NULL"),
                (call.expr_span, "NULL"),
                (call.target_span, "NULL AS z"),
            ):
                if span is not None:
                    assert parses(splice(sql, [(span.start, span.end, text)])), (sql, span.text(sql))
            for arg in call.args:
                assert parses("SELECT " + arg.span.text(sql)), (sql, arg.span.text(sql))
            level = call.level
            while level is not None:
                if level.sources:
                    assert parses("SELECT 1 FROM " + ", ".join(s.span.text(sql) for s in level.sources)), sql
                if level.where is not None:
                    assert parses("SELECT 1 WHERE " + level.where.text(sql)), sql
                level = level.parent


def test_star_expansion_of_a_call_covers_the_whole_entry():
    sql = "SELECT id, (pgml.chunk('c', body)).* FROM docs"
    (call,) = one(sql).calls
    assert call.star and call.field is None
    assert call.expr_span.text(sql) == "(pgml.chunk('c', body)).*" and call.expr_span == call.target_span
