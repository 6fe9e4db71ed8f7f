"""The workflow types: their versions, each one's machine and the commands each state accepts; and publishing one."""

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from contracts.auth import TokenHolder
from contracts.commands import CreateWorkflow
from contracts.definitions import PublishedType, TypeApplied, TypeDefinition, TypeVersionSummary
from contracts.types import WorkflowTypeInfo
from services.api.auth import may
from services.api.errors import DefinitionRefused, TypeNotFound, error_answers
from services.api.workflows import Workflows

# A type's name becomes a KV key: it must have the contracts' shape.
TypeNamePath = Annotated[
    str, PathParameter(pattern=CreateWorkflow.model_fields["workflow_type"].metadata[0].pattern, description="a type")
]
# A string, checked as a number: a route's int parameter that is not one answers 404 before the token is checked.
VersionPath = Annotated[str, PathParameter(pattern=r"^[1-9][0-9]{0,8}$", description="a version of the type")]


class TypeController(Controller):
    path = "/types"
    tags = ["types"]

    @get(operation_id="listTypes", responses=error_answers(401, 503))
    async def list_types(self, workflows: NamedDependency[Workflows]) -> list[WorkflowTypeInfo]:
        """Every workflow type, by name, as its latest version describes it: its machine, and the commands each state
        accepts."""
        return await workflows.types()

    @get("/{name:str}", operation_id="getType", responses=error_answers(401, 404, 422, 503))
    async def get_type(self, workflows: NamedDependency[Workflows], name: TypeNamePath) -> WorkflowTypeInfo:
        """One workflow type, as its latest version describes it."""
        return await workflows.type_info(name)

    @get("/{name:str}/versions", operation_id="listTypeVersions", responses=error_answers(401, 404, 422, 503))
    async def list_versions(
        self, workflows: NamedDependency[Workflows], name: TypeNamePath
    ) -> list[TypeVersionSummary]:
        """Every version of a type, oldest first: when, by whom, and what changed against the one before."""
        versions = await workflows.published(name)
        if not versions:
            raise TypeNotFound(name)
        return [
            TypeVersionSummary(
                name=name, **p.model_dump(include={"version", "published_at", "published_by", "changes"})
            )
            for p in versions
        ]

    @get(
        "/{name:str}/versions/{version:str}", operation_id="getTypeVersion", responses=error_answers(401, 404, 422, 503)
    )
    async def get_version(
        self, workflows: NamedDependency[Workflows], name: TypeNamePath, version: VersionPath
    ) -> PublishedType:
        """One version of a type: its definition document, and its machine as clients draw it."""
        return await workflows.type_version(name, int(version))

    @put(
        "/{name:str}",
        operation_id="publishType",
        status_code=HTTP_201_CREATED,
        guards=[may("publish_type")],
        responses={HTTP_200_OK: ResponseSpec(TypeApplied, description="unchanged: the latest version's own")}
        | error_answers(400, 401, 403, 422, 503),
    )
    async def publish(
        self,
        request: Request[TokenHolder, Any, State],
        workflows: NamedDependency[Workflows],
        name: TypeNamePath,
        data: JSONBody[TypeDefinition],
    ) -> Response[TypeApplied]:
        """Publish a definition (YAML's JSON, as `wf types apply` sends it) as the type's next version: 201 with what
        changed against the version before; 200 when it is the latest version's own (nothing is published). Instances
        already running stay on their version. A definition with problems (an unreachable state, a trigger no
        transition takes, a wait nobody may answer, an expression that does not parse, ...) answers 422 listing
        every one; nothing is published."""
        if data.name != name:
            raise DefinitionRefused([f"name: the document is '{data.name}', but the path is '{name}'"])
        applied = await workflows.apply_type(data.model_dump(mode="json"), request.user.name)
        if applied.outcome == "refused":
            raise DefinitionRefused(applied.problems)
        return Response(applied, status_code=HTTP_201_CREATED if applied.outcome == "published" else HTTP_200_OK)
