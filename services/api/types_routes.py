"""The workflow types: their machines, and the commands each state accepts."""

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from contracts.commands import CreateWorkflow
from contracts.types import WorkflowTypeInfo
from services.api.errors import error_answers
from services.api.workflows import Workflows

# A type's name becomes a KV key: it must have the contracts' shape.
TypeNamePath = Annotated[
    str, PathParameter(pattern=CreateWorkflow.model_fields["workflow_type"].metadata[0].pattern, description="a type")
]


class TypeController(Controller):
    path = "/types"
    tags = ["types"]

    @get(operation_id="listTypes", responses=error_answers(401, 503))
    async def list_types(self, workflows: NamedDependency[Workflows]) -> list[WorkflowTypeInfo]:
        """Every workflow type, by name: its machine, and the commands each state accepts."""
        return await workflows.types()

    @get("/{name:str}", operation_id="getType", responses=error_answers(401, 404, 422, 503))
    async def get_type(self, workflows: NamedDependency[Workflows], name: TypeNamePath) -> WorkflowTypeInfo:
        """One workflow type."""
        return await workflows.type_info(name)
