"""Deployments (§3.7, §3.8): the automatic one after a fit, and pgml.deploy by strategy or model id."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from pgml_engines.notices import notify

from pgml_proxy.errors import InternalError, InvalidParameterValue
from pgml_proxy.functions.lifecycle.catalog import TARGETS, Catalog, number, session_of
from pgml_proxy.functions.registry import CallContext
from pgml_proxy.sql.literals import quote

if TYPE_CHECKING:
    from pgml_proxy.functions.lifecycle.training import Training

STRATEGIES: Final = ("best_score", "most_recent", "rollback")


async def auto_deploy(catalog: Catalog, training: Training, metrics: Mapping[str, Any]) -> bool:
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
    incumbent = None if current is None else number(current[0])
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


_NO_QUALIFIED: Final = "No qualified models exist for this deployment."


async def deploy_project(
    catalog: Catalog, project_name: str, strategy: str, algorithm: str | None
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


async def deploy(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    catalog = Catalog(session_of(context))
    results = []
    for project_name, strategy, algorithm in calls:
        if project_name is None:
            raise InvalidParameterValue("project_name must not be NULL")
        strategy = "best_score" if strategy is None else strategy
        if strategy not in STRATEGIES:
            raise InvalidParameterValue("invalid strategy")
        await catalog.check_installed("deploy")
        results.append([await deploy_project(catalog, project_name, strategy, algorithm)])
    return results


async def deploy_model(context: CallContext, calls: list[tuple[Any, ...]]) -> list[Any]:
    catalog = Catalog(session_of(context))
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
