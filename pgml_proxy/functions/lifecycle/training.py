"""pgml.train and pgml.train_joint (§2.1): project, snapshot, the fit in the engine's worker process with
its progress as INFO lines, the model row, the artifact, and automatic deployment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pgml_engines import classical
from pgml_engines.notices import notify

from pgml_proxy.errors import InternalError, InvalidParameterValue
from pgml_proxy.functions.lifecycle.catalog import (
    SAMPLINGS,
    TASKS,
    Catalog,
    dashed,
    enum_error,
    in_one_transaction,
    jsonb_literal,
    nullable,
    session_of,
)
from pgml_proxy.functions.lifecycle.deploy import auto_deploy
from pgml_proxy.functions.lifecycle.snapshots import Snapshot, latest_snapshot, reuse_snapshot, take_snapshot
from pgml_proxy.functions.registry import CallContext, json_object
from pgml_proxy.sql.literals import quote

ARTIFACT_PATH: Final = "estimator.rmp"


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
            raise enum_error("sampling", test_sampling)
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


async def resolve_project(catalog: Catalog, name: str, task: str | None) -> tuple[int, str]:
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


class Training:
    """One train call's state between the catalog writes that surround the fit."""

    def __init__(self, catalog: Catalog, arguments: TrainArguments, project_id: int, task: str) -> None:
        self.catalog = catalog
        self.arguments = arguments
        self.project_id = project_id
        self.task = task
        self.model_id: int | None = None
        self.failure: BaseException | None = None

    async def on_progress(self, plan: classical.TrainingPlan, snapshot: Snapshot, event: Any) -> None:
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
        self, plan: classical.TrainingPlan, snapshot: Snapshot, data: Mapping[str, Any]
    ) -> None:
        """§2.1 steps 5–6: the snapshot's statistics, then the models row and its INFO line."""
        if snapshot.new:
            await self.catalog.rows(
                f"UPDATE pgml.snapshots SET columns = {jsonb_literal(data['columns'])}, "
                f"analysis = {jsonb_literal({'samples': data['samples']})}, status = 'successful' "
                f"WHERE id = {snapshot.id}"
            )
        arguments = self.arguments
        [[model_id]] = await self.catalog.rows(
            "INSERT INTO pgml.models (project_id, snapshot_id, num_features, algorithm, runtime, hyperparams, "
            "status, search, search_params, search_args) VALUES ("
            f"{self.project_id}, {snapshot.id}, {int(data['num_features'])}, {quote(plan.algorithm)}, "
            f"{quote(plan.runtime)}::pgml.runtime, {jsonb_literal(arguments.hyperparams)}, 'in_progress', "
            f"{nullable(arguments.search)}, {jsonb_literal(arguments.search_params)}, {jsonb_literal(arguments.search_args)}"
            ") RETURNING id"
        )
        self.model_id = int(str(model_id))
        notify(
            "INFO",
            f"Training Model {{ id: {self.model_id}, task: {self.task}, algorithm: {plan.algorithm}, "
            f"runtime: {plan.runtime} }}",
        )


async def train_one(context: CallContext, arguments: TrainArguments) -> tuple[str, str, str, bool]:
    catalog = Catalog(session_of(context))
    task: str | None = None
    if arguments.task is not None:
        task = TASKS.get(arguments.task)
        if task is None:
            raise enum_error("task", arguments.task)
    await catalog.check_installed("train")

    async def work() -> tuple[str, str, str, bool]:
        project_id, project_task = await resolve_project(catalog, arguments.project_name, task)
        # The labels of a reused snapshot decide what the plan checks (joint or not, supervised or not).
        reused = None if arguments.relation_name is not None else await latest_snapshot(catalog, project_id)
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
            snapshot, columns = await take_snapshot(catalog, arguments, project_task)
        else:
            snapshot, columns = await reuse_snapshot(catalog, arguments, project_id)
        training = Training(catalog, arguments, project_id, project_task)
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
            f"UPDATE pgml.models SET hyperparams = {jsonb_literal(result.hyperparams)}, metrics = {jsonb_literal(result.metrics)}, "
            f"num_features = {result.num_features}, status = 'successful' WHERE id = {training.model_id}"
        )
        await catalog.rows(
            f"INSERT INTO pgml.files (model_id, path, part, data) VALUES ({training.model_id}, "
            f"{quote(ARTIFACT_PATH)}, 0, {quote(chr(92) + 'x' + result.artifact.hex())}::bytea)"
        )
        deployed = await auto_deploy(catalog, training, result.metrics)
        return arguments.project_name, dashed(project_task), result.algorithm, deployed

    return await in_one_transaction(catalog, work)


async def train(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    results = []
    for call in calls:
        label = call[3]
        arguments = TrainArguments.from_call(call, None if label is None else [label])
        results.append([await train_one(context, arguments)])
    return results


async def train_joint(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    results = []
    for call in calls:
        arguments = TrainArguments.from_call(call, call[3])
        results.append([await train_one(context, arguments)])
    return results
