"""JSON Schema of the scenario format, generated from the models and installed plugins.

Targets become a union discriminated by `plugin`, each member the plugin's own
options model plus the common keys; requests and steps accept the common keys
plus every installed plugin's request keys. Built once per registry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from llmscen.compile.compiler import Catalog
from llmscen.spec.models import RequestSpec, Scenario, ServiceSpec, StepSpec, TargetSpec


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return {name: (f.annotation, f) for name, f in model.model_fields.items()}


def scenario_model(catalog: Catalog) -> type[BaseModel]:
    """A Scenario model whose plugin-specific parts are spelled out, for the schema."""
    common_target = {k: v for k, v in _fields(TargetSpec).items() if k != "plugin"}
    members = []
    for name, entry in sorted(catalog.plugins.items()):
        options = entry.obj.target_options
        members.append(create_model(
            f"{name.title().replace('-', '')}Target", __config__=ConfigDict(extra="forbid"),
            plugin=(Literal[name], Field(description=entry.obj.description or name)),  # type: ignore[arg-type]
            **common_target, **_fields(options)))
    # a union built at run time from the installed plugins: `X | Y` cannot express that
    target: Any = TargetSpec
    if len(members) == 1:
        target = members[0]
    elif members:
        target = Annotated[Union[tuple(members)], Field(discriminator="plugin")]  # noqa: UP007

    plugin_request_fields: dict[str, Any] = {}
    for entry in catalog.plugins.values():
        plugin_request_fields.update(_fields(entry.obj.request_options))
    step = create_model("Step", __config__=ConfigDict(extra="forbid"),
                        **_fields(StepSpec), **plugin_request_fields)
    request_fields = _fields(RequestSpec)
    request_fields["steps"] = (list[step] | None, Field(None))
    request = create_model("Request", __config__=ConfigDict(extra="forbid"),
                           **request_fields, **plugin_request_fields)

    scenario_fields = _fields(Scenario)
    scenario_fields["targets"] = (dict[str, target], Field(min_length=1))
    scenario_fields["requests"] = (list[request], Field(min_length=1))
    scenario_fields["services"] = (dict[str, ServiceSpec], Field(default_factory=dict))
    return create_model("Scenario", __config__=ConfigDict(extra="forbid", populate_by_name=True),
                        **scenario_fields)


def scenario_schema(catalog: Catalog) -> dict[str, Any]:
    schema = scenario_model(catalog).model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmscen scenario"
    return schema
