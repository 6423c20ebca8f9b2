"""pgml.tune (§2.1): LoRA fine-tuning of a Hugging Face model on the rows of a relation, with its project,
snapshot, model, files and deployment rows written like pgml.train's; and the tuned model's serving folder.

The rows are read through the client's session (a snapshot, like train's), split here with train's rules,
and fitted in the engine's training process (:meth:`Engine.tune`), whose per-step losses become INFO lines.
The adapter's files go to ``pgml.files`` in parts of 100,000,000 bytes. To serve a tuned model, the proxy
merges the deployed adapter into its base once per (database, model id) into a folder of the models
directory, which ``pgml.transform`` and ``pgml.generate`` then load like any local model, shared by all
sessions; a model id never changes its files, so the folder never goes stale.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pgml_engines import classical, tuning
from pgml_engines.classical.split import split
from pgml_engines.notices import notify
from pgml_engines.resolve import ModelResolver

from pgml_proxy.errors import InternalError, InvalidParameterValue, UndefinedObject
from pgml_proxy.functions.lifecycle.catalog import (
    SAMPLINGS,
    TASKS,
    Catalog,
    dashed,
    deployed_model,
    enum_error,
    in_one_transaction,
    jsonb_literal,
    session_of,
)
from pgml_proxy.functions.lifecycle.deploy import auto_deploy
from pgml_proxy.functions.lifecycle.snapshots import (
    describe_snapshot,
    reuse_snapshot,
    take_snapshot,
)
from pgml_proxy.functions.lifecycle.training import TrainArguments, Training, resolve_project
from pgml_proxy.functions.registry import CallContext, SessionQueries, json_object
from pgml_proxy.sql.literals import quote

ALGORITHM: Final = "transformers"
RUNTIME: Final = "python"
FILE_PART_BYTES: Final = 100_000_000
TUNED_PREFIX: Final = "pgml-tuned-"
"""Serving folders in the models directory are named ``pgml-tuned-<digest of database and model id>``."""

#: Per task: (``dataset_args`` key, the engine's column name, required).
_DATASET_COLUMNS: Final[Mapping[str, tuple[tuple[str, str, bool], ...]]] = {
    "text_classification": (("text_column", "text", True), ("class_column", "label", True)),
    "text_pair_classification": (
        ("text1_column", "text1", True),
        ("text2_column", "text2", True),
        ("class_column", "label", True),
    ),
    "conversation": (
        ("system_column", "system", False),
        ("user_column", "user", True),
        ("assistant_column", "assistant", True),
    ),
}
_UNSUPPORTED: Final = "Unsupported task for finetuning"


def _columns_of(
    task: str, hyperparams: Mapping[str, Any], y_column_name: str | None
) -> dict[str, str | None]:
    """The engine's column name → the relation's, from ``dataset_args`` (``class_column`` defaults to
    ``y_column_name``; an optional one not given is None); a required key missing is an error that lists
    them all."""
    dataset_args = json_object(hyperparams.get("dataset_args") or {}, "hyperparams.dataset_args")
    mapping: dict[str, str | None] = {}
    for key, field, required in _DATASET_COLUMNS[task]:
        column = dataset_args.get(key) or (y_column_name if key == "class_column" else None)
        if column is None and required:
            needed = ", ".join(k for k, _, r in _DATASET_COLUMNS[task] if r)
            raise InvalidParameterValue(
                f"pgml.tune for {dashed(task)} needs hyperparams.dataset_args with {needed}",
                hint='e.g. hyperparams => \'{"dataset_args": {"text_column": "body", "class_column": "label"}}\'',
            )
        mapping[field] = None if column is None else str(column)
    return mapping


def _rows(
    columns: Sequence[classical.ColumnData], mapping: Mapping[str, str | None], indexes: Sequence[int]
) -> dict[str, list[Any]]:
    """The rows at ``indexes`` as the engine's columns (an optional column not given: all NULL)."""
    by_name = {c.name: c for c in columns}
    out: dict[str, list[Any]] = {}
    for field, name in mapping.items():
        if name is None:
            out[field] = [None] * len(indexes)
            continue
        if name not in by_name:
            raise InvalidParameterValue(
                f"Column `{name}` not found. Did you pass the correct `dataset_args`?"
            )
        values = by_name[name].values
        out[field] = [values[i] for i in indexes]
    return out


async def tune(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    return [[await _tune_one(context, call)] for call in calls]


async def _tune_one(context: CallContext, call: tuple[Any, ...]) -> tuple[str, str, str, bool]:
    (
        project,
        task_name,
        relation,
        y_column,
        model_name,
        hyperparams,
        test_size,
        sampling,
        deploy,
        materialize,
    ) = call
    if project is None:
        raise InvalidParameterValue("project_name must not be NULL")
    task: str | None = None
    if task_name is not None:
        task = TASKS.get(task_name)
        if task is None:
            raise enum_error("task", task_name)
        if task not in _DATASET_COLUMNS:
            raise InvalidParameterValue(_UNSUPPORTED)
    if sampling is not None and sampling not in SAMPLINGS:
        raise enum_error("sampling", sampling)
    settings = json_object(hyperparams if hyperparams is not None else {}, "hyperparams")
    catalog = Catalog(session_of(context))
    await catalog.check_installed("tune")

    async def work() -> tuple[str, str, str, bool]:
        project_id, project_task = await resolve_project(catalog, project, task)
        if project_task not in _DATASET_COLUMNS:
            raise InvalidParameterValue(_UNSUPPORTED)
        mapping = _columns_of(project_task, settings, y_column)
        if model_name is None:
            raise InvalidParameterValue("pgml.tune needs model_name: the model to fine-tune")
        base = ModelResolver(context.engine.config).resolve(model_name).path
        labels = (str(mapping["label"]),) if mapping.get("label") else ()
        arguments = TrainArguments(
            project_name=project,
            task=project_task,
            relation_name=relation,
            y_column_names=labels,
            algorithm=ALGORITHM,
            hyperparams={**settings, "model_name": model_name, "project_name": project},
            search=None,
            search_params={},
            search_args={},
            test_size=0.25 if test_size is None else float(test_size),
            test_sampling=sampling or "stratified",
            runtime=RUNTIME,
            automatic_deploy=deploy is not False,
            materialize_snapshot=bool(materialize),
            preprocess={},
        )
        if relation is not None:
            snapshot, columns = await take_snapshot(catalog, arguments, project_task)
        else:
            snapshot, columns = await reuse_snapshot(catalog, arguments, project_id)
        n_rows = len(columns[0].values) if columns else 0
        label_values = _rows(columns, {"label": labels[0]}, range(n_rows))["label"] if labels else None
        rows = split(
            n_rows,
            snapshot.test_size,
            snapshot.test_sampling,
            labels=label_values,
            stratify=label_values is not None,
            seed=_seed(settings),
        )
        if snapshot.new:
            await describe_snapshot(catalog, snapshot, columns)
        training = Training(catalog, arguments, project_id, project_task)
        [[model_id]] = await catalog.rows(
            "INSERT INTO pgml.models (project_id, snapshot_id, num_features, algorithm, runtime, hyperparams, "
            f"status, search_params, search_args) VALUES ({project_id}, {snapshot.id}, 1, {quote(ALGORITHM)}, "
            f"{quote(RUNTIME)}::pgml.runtime, {jsonb_literal(arguments.hyperparams)}, 'in_progress', '{{}}', '{{}}') "
            "RETURNING id"
        )
        training.model_id = int(str(model_id))
        notify(
            "INFO",
            f"Training Model {{ id: {training.model_id}, task: {project_task}, algorithm: {ALGORITHM}, "
            f"runtime: {RUNTIME} }}",
        )
        request = tuning.TuneRequest(
            task=dashed(project_task),
            base_model=base,
            train=_rows(columns, mapping, rows.train.tolist()),
            test=_rows(columns, mapping, rows.test.tolist()),
            hyperparams=settings,
        )
        result = await context.engine.tune(request, _progress)
        # as given (dataset_args, training_args) with the effective values over them
        hyperparams_stored = {**arguments.hyperparams, **result.hyperparams}
        await catalog.rows(
            f"UPDATE pgml.models SET hyperparams = {jsonb_literal(hyperparams_stored)}, "
            f"metrics = {jsonb_literal(result.metrics)}, status = 'successful' WHERE id = {training.model_id}"
        )
        for path, data in sorted(result.files.items()):
            for part, start in enumerate(range(0, max(len(data), 1), FILE_PART_BYTES)):
                chunk = data[start : start + FILE_PART_BYTES]
                await catalog.rows(
                    f"INSERT INTO pgml.files (model_id, path, part, data) VALUES ({training.model_id}, "
                    f"{quote(path)}, {part}, {quote(chr(92) + 'x' + chunk.hex())}::bytea)"
                )
        deployed = await auto_deploy(catalog, training, result.metrics)
        return project, dashed(project_task), ALGORITHM, deployed

    return await in_one_transaction(catalog, work)


def _seed(hyperparams: Mapping[str, Any]) -> int:
    """The tune's seed (the engine's default when not given, or not a number: it refuses those itself)
    also fixes the split, so the same rows and hyperparams tune the same model."""
    training_args = hyperparams.get("training_args")
    given = hyperparams.get("seed", training_args.get("seed") if isinstance(training_args, Mapping) else None)
    return given if isinstance(given, int) and not isinstance(given, bool) else tuning.Hyperparams().seed


def _progress(event: Any) -> None:
    """The engine's per-step report as an INFO line."""
    if isinstance(event, Mapping) and "loss" in event:
        notify(
            "INFO",
            f"epoch {event.get('epoch')}, step {event.get('step')}/{event.get('steps')}: "
            f"loss {float(event['loss']):.4f}",
        )


async def project_model(context: CallContext, session: SessionQueries, name: str) -> str | None:
    """A model name that names a project with a deployed tuned model, as its serving name; None for any
    other name (the catalog absent, no such project, or one whose deployment is not a tuned model)."""
    [[installed]] = await session.rows("SELECT to_regclass('pgml.deployments') IS NOT NULL")
    if installed != "t":
        return None
    [[deployed]] = await session.rows(
        "SELECT EXISTS (SELECT FROM pgml.deployments d JOIN pgml.projects p ON p.id = d.project_id "
        f"WHERE p.name = {quote(name)})"
    )
    return await tuned_model(context, session, name) if deployed == "t" else None


async def tuned_model(context: CallContext, session: SessionQueries, project: str) -> str | None:
    """The name under which the project's deployed tuned model is served (its folder in the models
    directory, written on first use), or None when the project's deployment is not a tuned model."""
    identity, model_id = await deployed_model(session, project)
    [[algorithm]] = await session.rows(f"SELECT algorithm FROM pgml.models WHERE id = {model_id}")
    if algorithm != ALGORITHM:
        return None
    search_dirs = context.engine.config.search_dirs
    if not search_dirs:
        raise InternalError("serving a tuned model needs a models directory (--models-dir)")
    digest = hashlib.sha256(f"{identity}|{model_id}".encode()).hexdigest()[:24]
    name = f"{TUNED_PREFIX}{digest}"
    target = Path(search_dirs[0]) / name
    if target.exists():
        return name
    [[base_name]] = await session.rows(
        f"SELECT hyperparams ->> 'model_name' FROM pgml.models WHERE id = {model_id}"
    )
    if base_name is None:
        raise UndefinedObject(f"model {model_id} does not name the model it was tuned from")
    files: dict[str, bytes] = {}
    for (row,) in await session.rows(
        "SELECT json_build_array(path, encode(data, 'base64'))::text FROM pgml.files "
        f"WHERE model_id = {model_id} ORDER BY path, part"
    ):
        path, data = json.loads(row or "[]")
        files[path] = files.get(path, b"") + base64.b64decode(data)
    base = ModelResolver(context.engine.config).resolve(base_name).path
    await context.engine.materialize_tuned(files, base, target)
    return name
