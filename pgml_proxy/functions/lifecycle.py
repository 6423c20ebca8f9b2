"""pgml.train, pgml.train_joint and pgml.deploy (contract §2.1, §3.4–§3.8): the model lifecycle, with its
catalog rows written on the client's own session.

The proxy reads the relation and writes ``pgml.projects``/``snapshots``/``models``/``files``/``deployments``
through the client's session, so the client's permissions hold (a table it may not read fails with the
upstream's 42501) and its transaction holds: inside a transaction block every row is part of it; outside
one, the proxy wraps the whole call in BEGIN … COMMIT (ROLLBACK on any error), so a failure leaves no rows.
The fit itself runs in the engine's training process (:meth:`Engine.train`); its progress messages arrive on
the event loop in this task, where they become the client's INFO/WARNING lines and, for ``prepared``, the
snapshot update and the models row (§2.1 steps 5–6 come before the fit).

The contract types ``algorithm``, ``search``, ``test_sampling``, ``runtime`` and ``strategy`` as pgml enums;
here they are ``text`` (the stubs then need no catalog type), which accepts the same literals through the
proxy. Unknown labels fail with Postgres's enum-input message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pgml_engines import classical
from pgml_engines.notices import notify

from pgml_proxy.errors import (
    InternalError,
    InvalidParameterValue,
    InvalidTextRepresentation,
    ObjectNotInPrerequisiteState,
)
from pgml_proxy.functions.registry import (
    CallContext,
    Overload,
    SessionQueries,
    SessionQueryFailed,
    json_object,
)
from pgml_proxy.functions.signatures import Column, Parameter, Signature
from pgml_proxy.sql.literals import identifier, quote
from pgml_proxy.wire.status import IDLE
from pgml_proxy.wire.types import BOOL, TEXT, parse_array_text

#: Task spellings accepted as arguments (§3.3) → the catalog's underscore label.
TASKS: Final[Mapping[str, str]] = {
    **{
        t: t
        for t in (
            "regression",
            "classification",
            "decomposition",
            "clustering",
            "summarization",
            "translation",
            "text2text",
            "conversation",
            "embedding",
        )
    },
    **{
        spelling: t
        for t in (
            "question_answering",
            "text_classification",
            "text_generation",
            "text_pair_classification",
        )
        for spelling in (t, t.replace("_", "-"))
    },
}

#: §3.7: the metric that decides deployments, and whether higher is better.
TARGETS: Final[Mapping[str, tuple[str, bool]]] = {
    "regression": ("r2", True),
    "classification": ("f1", True),
    "clustering": ("silhouette", True),
    "decomposition": ("cumulative_explained_variance", True),
    "question_answering": ("f1", True),
    "text_classification": ("f1", True),
    "text_pair_classification": ("f1", True),
    "summarization": ("rouge_ngram_f1", True),
    "translation": ("bleu", True),
    "conversation": ("bleu", True),
    "text_generation": ("perplexity", False),
    "text2text": ("perplexity", False),
}

SAMPLINGS: Final = ("random", "last", "stratified")
STRATEGIES: Final = ("best_score", "most_recent", "rollback")
ARTIFACT_PATH: Final = "estimator.rmp"
_INTEGERS: Final = frozenset(("int2", "int4", "int8"))
_FLOATS: Final = frozenset(("float4", "float8", "numeric"))
_NON_FINITE: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def dashed(task: str) -> str:
    """A task as output columns spell it (``text-classification``); the catalog keeps underscores."""
    return task if task == "text2text" else task.replace("_", "-")


def _enum_error(enum: str, value: str) -> InvalidTextRepresentation:
    return InvalidTextRepresentation(f'invalid input value for enum pgml.{enum}: "{value}"')


def _json(value: Any) -> str:
    """A jsonb literal; NaN and infinities (a metric that could not be computed) become null."""

    def finite(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {str(k): finite(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [finite(x) for x in v]
        return v

    return f"{quote(json.dumps(finite(value), allow_nan=False))}::jsonb"


def _nullable(text: str | None) -> str:
    return "NULL" if text is None else quote(text)


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)


# --- the session: catalog check and transaction ---------------------------------------------------------------


class _Catalog:
    """The client's session, seen as the pgml catalog."""

    def __init__(self, session: SessionQueries) -> None:
        self.session = session
        self.busy = False  # a statement is on its way: its answer is still to come

    async def rows(self, sql: str) -> list[list[str | None]]:
        self.busy = True
        found = await self.session.rows(sql)
        self.busy = False
        return found

    async def one(self, sql: str) -> list[str | None] | None:
        found = await self.rows(sql)
        return found[0] if found else None

    async def check_installed(self, function: str) -> None:
        [[present]] = await self.rows("SELECT to_regclass('pgml.projects') IS NOT NULL")
        if present != "t":
            raise ObjectNotInPrerequisiteState(
                "the pgml catalog is not installed in this database",
                hint=f"Run CREATE EXTENSION pgml before calling pgml.{function}.",
            )

    async def in_transaction_block(self) -> bool:
        """Whether the client is inside a transaction block.

        ``rows`` gives no transaction status, so the session is asked: the first statement gets the
        transaction an id, the second sees it only if both ran in one transaction, that is, in a block
        (outside one each side query is its own implicit transaction). No error, no notice, nothing that
        outlives the block.
        """
        await self.rows("SELECT txid_current()")
        [[assigned]] = await self.rows("SELECT txid_current_if_assigned()")
        return assigned is not None


async def _in_one_transaction(catalog: _Catalog, work: Any) -> Any:
    """Run ``work()`` in the client's transaction block, or in one of the proxy's (BEGIN … COMMIT) when
    the client has none; a failure then rolls everything back, and the client is told it is idle."""
    if await catalog.in_transaction_block():
        return await work()
    await catalog.rows("BEGIN")
    try:
        result = await work()
    except Exception as exc:
        await catalog.rows("ROLLBACK")
        upstream = getattr(exc, "result", None)  # the upstream's own error: its ReadyForQuery said "failed"
        if isinstance(exc, SessionQueryFailed) and upstream is not None:
            upstream.status = IDLE  # the client never was in a transaction block
        raise
    except BaseException:
        # Cancelled: roll back unless a statement's answer is still due (it would be read as ROLLBACK's);
        # then the session's cancellation handling meets an open transaction, as after any interrupted
        # side query.
        if not catalog.busy:
            await catalog.rows("ROLLBACK")
        raise
    await catalog.rows("COMMIT")  # a deferred constraint failing here is the statement's error
    return result


# --- reading a relation ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RelationColumn:
    name: str
    pg_type: str  # ``float4``, ``int2[]``
    nullable: bool

    @property
    def element(self) -> str:
        return self.pg_type.removesuffix("[]")

    @property
    def is_array(self) -> bool:
        return self.pg_type.endswith("[]")


def _split_relation(relation_name: str) -> tuple[str, str]:
    """§3.5: ``a.b`` is table ``b`` of schema ``a``; a bare name is looked for in ``public`` only."""
    schema, dot, table = relation_name.partition(".")
    return (schema, table) if dot else ("public", relation_name)


async def _columns(catalog: _Catalog, relation_name: str) -> tuple[str, list[_RelationColumn]]:
    """The relation's SQL name and its columns in ordinal order (array types spelled ``int2[]``)."""
    schema, table = _split_relation(relation_name)
    found = await catalog.one(
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = {quote(schema)} AND c.relname = {quote(table)} "
        "AND c.relkind IN ('r', 'v', 'm', 'p', 'f')"
    )
    if found is None:
        if "." not in relation_name:
            raise InvalidParameterValue(
                f'Relation "{table}" could not be found in the public schema. Please specify the table '
                f"schema, e.g. pgml.{table}"
            )
        raise InvalidParameterValue(f'Relation "{relation_name}" does not exist')
    rows = await catalog.rows(
        "SELECT a.attname, CASE WHEN t.typelem <> 0 AND t.typlen = -1 "
        "THEN (SELECT e.typname FROM pg_catalog.pg_type e WHERE e.oid = t.typelem) || '[]' "
        "ELSE t.typname END, NOT a.attnotnull "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "
        f"WHERE a.attrelid = {found[0]} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    )
    columns = [_RelationColumn(str(name), str(pg_type), nullable == "t") for name, pg_type, nullable in rows]
    return f"{identifier(schema)}.{identifier(table)}", columns


def _scalar(element: str, text: str) -> Any:
    if element in _INTEGERS:
        return int(text)
    if element in _FLOATS:
        return float(text)
    if element == "bool":
        return text == "t"
    return text


def _array(element: str, value: Any) -> Any:
    """An array read as JSON: numbers stay, NaN/Infinity (JSON strings) become floats."""
    if isinstance(value, list):
        return [_array(element, v) for v in value]
    if isinstance(value, str) and element in _FLOATS:
        return _NON_FINITE.get(value, value)
    return value


async def _read(
    catalog: _Catalog, table_sql: str, columns: Sequence[_RelationColumn]
) -> list[classical.ColumnData]:
    """Every row of the relation in one SELECT, in its natural order, as typed column values."""
    selected = ", ".join(
        f"to_json({identifier(c.name)})::text" if c.is_array else identifier(c.name) for c in columns
    )
    rows = await catalog.rows(f"SELECT {selected} FROM {table_sql}")
    values: list[list[Any]] = [[] for _ in columns]
    for row in rows:
        for index, (column, text) in enumerate(zip(columns, row, strict=True)):
            if text is None:
                values[index].append(None)
            elif column.is_array:
                values[index].append(_array(column.element, json.loads(text)))
            else:
                values[index].append(_scalar(column.element, text))
    return [
        classical.ColumnData(c.name, c.pg_type, v, nullable=c.nullable)
        for c, v in zip(columns, values, strict=True)
    ]


# --- train ---------------------------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    id: int
    relation_name: str
    y_column_names: list[str]
    test_size: float
    test_sampling: str
    materialized: bool
    preprocess: dict[str, Any] = field(default_factory=dict)
    new: bool = True


@dataclass(frozen=True, slots=True)
class TrainArguments:
    """``pgml.train``/``train_joint``'s arguments with NULLs read as "not given" (§2.1)."""

    project_name: str
    task: str | None
    relation_name: str | None
    y_column_names: tuple[str, ...]
    algorithm: str | None
    hyperparams: dict[str, Any]
    search: str | None
    search_params: dict[str, Any]
    search_args: dict[str, Any]
    test_size: float
    test_sampling: str
    runtime: str | None
    automatic_deploy: bool
    materialize_snapshot: bool
    preprocess: dict[str, Any]

    @classmethod
    def from_call(cls, call: Sequence[Any], y_column_names: Sequence[str | None] | None) -> TrainArguments:
        (project, task, relation, _y, algorithm, hyperparams, search, search_params, search_args) = call[:9]
        (test_size, test_sampling, runtime, automatic_deploy, materialize, preprocess) = call[9:]
        if project is None:
            raise InvalidParameterValue("project_name must not be NULL")
        if test_sampling is not None and test_sampling not in SAMPLINGS:
            raise _enum_error("sampling", test_sampling)
        labels = tuple(y for y in (y_column_names or ()) if y is not None)
        return cls(
            project_name=project,
            task=task,
            relation_name=relation,
            y_column_names=labels,
            algorithm=algorithm,
            hyperparams=json_object(hyperparams if hyperparams is not None else {}, "hyperparams"),
            search=search,
            search_params=json_object(search_params if search_params is not None else {}, "search_params"),
            search_args=json_object(search_args if search_args is not None else {}, "search_args"),
            test_size=0.25 if test_size is None else float(test_size),
            test_sampling=test_sampling or "stratified",
            runtime=runtime,
            automatic_deploy=automatic_deploy is not False,
            materialize_snapshot=bool(materialize),
            preprocess=json_object(preprocess if preprocess is not None else {}, "preprocess"),
        )


async def _project(catalog: _Catalog, name: str, task: str | None) -> tuple[int, str]:
    """§3.4: the project's id and task, created when it does not exist and a task is given."""
    found = await catalog.one(f"SELECT id, task FROM pgml.projects WHERE name = {quote(name)}")
    if found is None:
        if task is None:
            raise InvalidParameterValue(
                f"Project `{name}` does not exist. To create a new project, you must specify a `task`."
            )
        [[created]] = await catalog.rows(
            f"INSERT INTO pgml.projects (name, task) VALUES ({quote(name)}, {quote(task)}::pgml.task) RETURNING id"
        )
        return int(str(created)), task
    project_id, existing = int(str(found[0])), str(found[1])
    if task is not None and task != existing:
        raise InvalidParameterValue(
            f'Project `"{name}"` already exists with a different task: `{existing}`. Create a new project '
            "instead."
        )
    return project_id, existing


async def _latest_snapshot(catalog: _Catalog, project_id: int) -> _Snapshot:
    """§3.5: the snapshot of the project's most recent model, its stored settings and preprocessors."""
    found = await catalog.one(
        "SELECT s.id, s.relation_name, s.y_column_name, s.test_size, s.test_sampling, s.materialized, s.columns "
        "FROM pgml.models m JOIN pgml.snapshots s ON s.id = m.snapshot_id "
        f"WHERE m.project_id = {project_id} ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
    )
    if found is None:
        raise InvalidParameterValue(
            "You must pass a `relation_name` and `y_column_name` to snapshot the first time you train a model."
        )
    snapshot_id, relation, labels, test_size, sampling, materialized, columns = found
    preprocess = {
        str(c["name"]): c["preprocessor"]
        for c in (json.loads(columns) if columns else [])
        if isinstance(c, Mapping) and c.get("preprocessor")
    }
    return _Snapshot(
        id=int(str(snapshot_id)),
        relation_name=str(relation),
        y_column_names=[y for y in parse_array_text(labels) if y is not None] if labels else [],
        test_size=float(str(test_size)),
        test_sampling=str(sampling),
        materialized=materialized == "t",
        preprocess=preprocess,
        new=False,
    )


class _Training:
    """One train call's state between the catalog writes that surround the fit."""

    def __init__(self, catalog: _Catalog, arguments: TrainArguments, project_id: int, task: str) -> None:
        self.catalog = catalog
        self.arguments = arguments
        self.project_id = project_id
        self.task = task
        self.model_id: int | None = None
        self.failure: BaseException | None = None

    async def on_progress(self, plan: classical.TrainingPlan, snapshot: _Snapshot, event: Any) -> None:
        """A training's messages, in order. The worker only logs a failing callback, so a failed catalog
        write is kept and raised once the fit is over; the messages after it are dropped."""
        if self.failure is not None:
            return
        try:
            if event.event == "prepared":
                await self._prepared(plan, snapshot, event.data)
            elif event.event == "warning":
                notify("WARNING", event.message)
            elif event.message:
                notify("INFO", event.message)
        except Exception as exc:  # not a cancellation: that one stops the training
            self.failure = exc

    async def _prepared(
        self, plan: classical.TrainingPlan, snapshot: _Snapshot, data: Mapping[str, Any]
    ) -> None:
        """§2.1 steps 5–6: the snapshot's statistics, then the models row and its INFO line."""
        if snapshot.new:
            await self.catalog.rows(
                f"UPDATE pgml.snapshots SET columns = {_json(data['columns'])}, "
                f"analysis = {_json({'samples': data['samples']})}, status = 'successful' "
                f"WHERE id = {snapshot.id}"
            )
        arguments = self.arguments
        [[model_id]] = await self.catalog.rows(
            "INSERT INTO pgml.models (project_id, snapshot_id, num_features, algorithm, runtime, hyperparams, "
            "status, search, search_params, search_args) VALUES ("
            f"{self.project_id}, {snapshot.id}, {int(data['num_features'])}, {quote(plan.algorithm)}, "
            f"{quote(plan.runtime)}::pgml.runtime, {_json(arguments.hyperparams)}, 'in_progress', "
            f"{_nullable(arguments.search)}, {_json(arguments.search_params)}, {_json(arguments.search_args)}"
            ") RETURNING id"
        )
        self.model_id = int(str(model_id))
        notify(
            "INFO",
            f"Training Model {{ id: {self.model_id}, task: {self.task}, algorithm: {plan.algorithm}, "
            f"runtime: {plan.runtime} }}",
        )


async def _take_snapshot(
    catalog: _Catalog, arguments: TrainArguments, task: str
) -> tuple[_Snapshot, list[classical.ColumnData]]:
    """§3.5 with a relation: its columns introspected, the snapshot row, the rows read (materialized:
    copied into ``pgml."snapshot_<id>"`` first and read from there)."""
    relation = arguments.relation_name
    assert relation is not None
    notify("INFO", f'Snapshotting table "{relation}", this may take a little while...')
    table_sql, columns = await _columns(catalog, relation)
    names = {c.name for c in columns}
    for label in arguments.y_column_names:
        if label not in names:
            raise InvalidParameterValue(
                f"Column `{label}` not found. Did you pass the correct `y_column_name`?"
            )
    supervised = task in ("regression", "classification")
    labels = list(arguments.y_column_names) if supervised else []
    [[snapshot_id]] = await catalog.rows(
        "INSERT INTO pgml.snapshots (relation_name, y_column_name, test_size, test_sampling, status, "
        f"materialized) VALUES ({quote(relation)}, "
        f"{('ARRAY[' + ', '.join(quote(y) for y in labels) + ']::text[]') if labels else 'NULL'}, "
        f"{arguments.test_size!r}, {quote(arguments.test_sampling)}::pgml.sampling, 'in_progress', "
        f"{'true' if arguments.materialize_snapshot else 'false'}) RETURNING id"
    )
    snapshot = _Snapshot(
        id=int(str(snapshot_id)),
        relation_name=relation,
        y_column_names=labels,
        test_size=arguments.test_size,
        test_sampling=arguments.test_sampling,
        materialized=arguments.materialize_snapshot,
        preprocess=dict(arguments.preprocess),
    )
    if snapshot.materialized:
        copy = f"pgml.{identifier(f'snapshot_{snapshot.id}')}"
        await catalog.rows(f"CREATE TABLE {copy} AS SELECT * FROM {table_sql}")
        table_sql = copy
    return snapshot, await _read(catalog, table_sql, columns)


async def _reuse_snapshot(
    catalog: _Catalog, arguments: TrainArguments, project_id: int
) -> tuple[_Snapshot, list[classical.ColumnData]]:
    """§3.5 without a relation: the latest snapshot's settings; its copy when materialized, else the live
    relation (re-sampled)."""
    snapshot = await _latest_snapshot(catalog, project_id)
    notify("INFO", f'Using existing snapshot from "pgml"."snapshot_{snapshot.id}"')
    snapshot.preprocess = {**snapshot.preprocess, **arguments.preprocess}
    if snapshot.materialized:
        table_sql, columns = await _columns(catalog, f"pgml.snapshot_{snapshot.id}")
    else:
        table_sql, columns = await _columns(catalog, snapshot.relation_name)
    return snapshot, await _read(catalog, table_sql, columns)


async def _auto_deploy(catalog: _Catalog, training: _Training, metrics: Mapping[str, Any]) -> bool:
    """§3.7: deploy when there is no current deployment or the new score is at least as good (ties deploy)."""
    if not training.arguments.automatic_deploy:
        notify("WARNING", "Automatic deployment disabled via configuration.")
        return False
    if training.task not in TARGETS:
        raise InternalError(f"automatic deployment is not supported for the {training.task} task")
    metric, higher = TARGETS[training.task]
    value = metrics.get(metric)
    new = float(value) if isinstance(value, int | float) and math.isfinite(value) else None
    current = await catalog.one(
        f"SELECT CASE WHEN jsonb_typeof(m.metrics -> {quote(metric)}) = 'number' "
        f"THEN (m.metrics ->> {quote(metric)})::float8 END "
        "FROM pgml.deployments d JOIN pgml.models m ON m.id = d.model_id "
        f"WHERE d.project_id = {training.project_id} ORDER BY d.created_at DESC, d.id DESC LIMIT 1"
    )
    incumbent = None if current is None else _number(current[0])
    if current is not None and incumbent is not None:
        better = new is not None and (new >= incumbent if higher else new <= incumbent)
        if not better:
            shown = "null" if new is None else repr(new)
            notify(
                "WARNING",
                f"New model's {metric} is not better than current model. New: {shown}, Current {incumbent!r}",
            )
            notify("WARNING", "Not deploying newly trained model.")
            return False
    await catalog.rows(
        "INSERT INTO pgml.deployments (project_id, model_id, strategy) "
        f"VALUES ({training.project_id}, {training.model_id}, 'new_score')"
    )
    notify("INFO", f"Deploying model id: {training.model_id}")
    return True


async def _train_one(context: CallContext, arguments: TrainArguments) -> tuple[str, str, str, bool]:
    catalog = _Catalog(_session(context))
    task: str | None = None
    if arguments.task is not None:
        task = TASKS.get(arguments.task)
        if task is None:
            raise _enum_error("task", arguments.task)
    await catalog.check_installed("train")

    async def work() -> tuple[str, str, str, bool]:
        project_id, project_task = await _project(catalog, arguments.project_name, task)
        # The labels of a reused snapshot decide what the plan checks (joint or not, supervised or not).
        reused = None if arguments.relation_name is not None else await _latest_snapshot(catalog, project_id)
        labels = arguments.y_column_names if reused is None else reused.y_column_names
        plan = classical.plan_training(
            project_task,
            arguments.algorithm,
            y_column_names=list(labels),
            hyperparams=arguments.hyperparams,
            search_method=arguments.search,
            search_params=arguments.search_params,
            search_args=arguments.search_args,
            runtime=arguments.runtime,
        )
        if reused is None:
            snapshot, columns = await _take_snapshot(catalog, arguments, project_task)
        else:
            snapshot, columns = await _reuse_snapshot(catalog, arguments, project_id)
        training = _Training(catalog, arguments, project_id, project_task)
        request = classical.TrainRequest(
            task=project_task,
            columns=columns,
            y_column_names=snapshot.y_column_names,
            algorithm=plan.algorithm,
            hyperparams=arguments.hyperparams,
            search=arguments.search,
            search_params=arguments.search_params,
            search_args=arguments.search_args,
            test_size=snapshot.test_size,
            test_sampling=snapshot.test_sampling,
            runtime=plan.runtime,
            preprocess=snapshot.preprocess,
        )
        result = await context.engine.train(
            request, lambda event: training.on_progress(plan, snapshot, event)
        )
        if training.failure is not None:
            raise training.failure
        if training.model_id is None:
            raise InternalError("the training ended without preparing its data")
        await catalog.rows(
            f"UPDATE pgml.models SET hyperparams = {_json(result.hyperparams)}, metrics = {_json(result.metrics)}, "
            f"num_features = {result.num_features}, status = 'successful' WHERE id = {training.model_id}"
        )
        await catalog.rows(
            f"INSERT INTO pgml.files (model_id, path, part, data) VALUES ({training.model_id}, "
            f"{quote(ARTIFACT_PATH)}, 0, {quote(chr(92) + 'x' + result.artifact.hex())}::bytea)"
        )
        deployed = await _auto_deploy(catalog, training, result.metrics)
        return arguments.project_name, dashed(project_task), result.algorithm, deployed

    return await _in_one_transaction(catalog, work)


def _session(context: CallContext) -> SessionQueries:
    assert context.session is not None  # the registry runs these only where the session is there
    return context.session


async def _train(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    results = []
    for call in calls:
        label = call[3]
        arguments = TrainArguments.from_call(call, None if label is None else [label])
        results.append([await _train_one(context, arguments)])
    return results


async def _train_joint(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    results = []
    for call in calls:
        arguments = TrainArguments.from_call(call, call[3])
        results.append([await _train_one(context, arguments)])
    return results


# --- deploy --------------------------------------------------------------------------------------------------


_NO_QUALIFIED: Final = "No qualified models exist for this deployment."


async def _deploy_project(
    catalog: _Catalog, project_name: str, strategy: str, algorithm: str | None
) -> tuple[str, str, str]:
    """§3.8 by project: the chosen successful model gets a deployments row."""
    found = await catalog.one(f"SELECT id, task FROM pgml.projects WHERE name = {quote(project_name)}")
    if found is None:
        raise InvalidParameterValue(f"Project named `{project_name}` does not exist.")
    project_id, task = int(str(found[0])), str(found[1])
    qualified = f"m.project_id = {project_id} AND m.status = 'successful'"
    if algorithm is not None and strategy != "rollback":
        qualified += f" AND m.algorithm = {quote(algorithm)}"
    if strategy == "best_score":
        metric, higher = TARGETS.get(task, ("", True))
        score = (
            f"CASE WHEN jsonb_typeof(m.metrics -> {quote(metric)}) = 'number' "
            f"THEN (m.metrics ->> {quote(metric)})::float8 END"
        )
        chosen = await catalog.one(
            f"SELECT m.id, m.algorithm FROM pgml.models m WHERE {qualified} "
            f"ORDER BY {score} {'DESC' if higher else 'ASC'} NULLS LAST, m.id DESC LIMIT 1"
        )
    elif strategy == "most_recent":
        chosen = await catalog.one(
            f"SELECT m.id, m.algorithm FROM pgml.models m WHERE {qualified} "
            "ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
        )
    else:  # rollback: the newest deployment of another model than the current one
        chosen = await catalog.one(
            "WITH current AS (SELECT model_id FROM pgml.deployments "
            f"WHERE project_id = {project_id} ORDER BY created_at DESC, id DESC LIMIT 1) "
            "SELECT m.id, m.algorithm FROM pgml.deployments d JOIN pgml.models m ON m.id = d.model_id "
            f"WHERE d.project_id = {project_id} AND m.status = 'successful' "
            "AND d.model_id <> (SELECT model_id FROM current) ORDER BY d.created_at DESC, d.id DESC LIMIT 1"
        )
    if chosen is None:
        raise InvalidParameterValue(_NO_QUALIFIED)
    await catalog.rows(
        "INSERT INTO pgml.deployments (project_id, model_id, strategy) "
        f"VALUES ({project_id}, {chosen[0]}, {quote(strategy)}::pgml.strategy)"
    )
    return project_name, strategy, str(chosen[1])


async def _deploy(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    catalog = _Catalog(_session(context))
    results = []
    for project_name, strategy, algorithm in calls:
        if project_name is None:
            raise InvalidParameterValue("project_name must not be NULL")
        strategy = "best_score" if strategy is None else strategy
        if strategy not in STRATEGIES:
            raise InvalidParameterValue("invalid strategy")
        await catalog.check_installed("deploy")
        results.append([await _deploy_project(catalog, project_name, strategy, algorithm)])
    return results


async def _deploy_model(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    catalog = _Catalog(_session(context))
    results = []
    for (model_id,) in calls:
        await catalog.check_installed("deploy")
        found = await catalog.one(
            "SELECT m.project_id, p.name, m.algorithm, m.status FROM pgml.models m "
            f"JOIN pgml.projects p ON p.id = m.project_id WHERE m.id = {int(model_id)}"
        )
        if found is None:
            raise InvalidParameterValue(f"Model with id = {int(model_id)} does not exist")
        project_id, name, algorithm, status = found
        if status != "successful":
            raise InvalidParameterValue(_NO_QUALIFIED)
        await catalog.rows(
            "INSERT INTO pgml.deployments (project_id, model_id, strategy) "
            f"VALUES ({project_id}, {int(model_id)}, 'specific')"
        )
        results.append([(str(name), "specific", str(algorithm))])
    return results


def _train_parameters(labels: str) -> tuple[Parameter, ...]:
    return (
        Parameter("project_name", "text"),
        Parameter("task", "text", None),
        Parameter("relation_name", "text", None),
        Parameter("y_column_name", labels, None),
        Parameter("algorithm", "text", "linear"),
        Parameter("hyperparams", "jsonb", {}),
        Parameter("search", "text", None),
        Parameter("search_params", "jsonb", {}),
        Parameter("search_args", "jsonb", {}),
        Parameter("test_size", "real", 0.25),
        Parameter("test_sampling", "text", "stratified"),
        Parameter("runtime", "text", None),
        Parameter("automatic_deploy", "boolean", True),
        Parameter("materialize_snapshot", "boolean", False),
        Parameter("preprocess", "jsonb", {}),
    )


_TRAIN_RESULT: Final = (
    Column("project", TEXT),
    Column("task", TEXT),
    Column("algorithm", TEXT),
    Column("deployed", BOOL),
)
_DEPLOY_RESULT: Final = (Column("project", TEXT), Column("strategy", TEXT), Column("algorithm", TEXT))

LIFECYCLE: Final[Sequence[Overload]] = (
    Overload(
        Signature("train", _train_parameters("text"), _TRAIN_RESULT, set_returning=True, strict=False),
        _train,
        uses_session=True,
    ),
    Overload(
        Signature(
            "train_joint", _train_parameters("text[]"), _TRAIN_RESULT, set_returning=True, strict=False
        ),
        _train_joint,
        uses_session=True,
    ),
    Overload(
        Signature(
            "deploy",
            (
                Parameter("project_name", "text"),
                Parameter("strategy", "text", "best_score"),
                Parameter("algorithm", "text", None),
            ),
            _DEPLOY_RESULT,
            set_returning=True,
            strict=False,
        ),
        _deploy,
        uses_session=True,
    ),
    Overload(
        Signature("deploy", (Parameter("model_id", "bigint"),), _DEPLOY_RESULT, set_returning=True),
        _deploy_model,
        uses_session=True,
    ),
)
"""The model lifecycle's overloads, for the registry."""
