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

    # every plugin's request keys, each optional: which are required depends on the target
    plugin_request_fields: dict[str, Any] = {}
    for entry in catalog.plugins.values():
        for name, field in entry.obj.request_options.model_fields.items():
            plugin_request_fields[name] = (field.annotation | None, Field(
                None, alias=field.alias, description=field.description))
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


# `${VAR}` / `${VAR:-default}` is replaced before validation, so an editor must accept it
# wherever a number, boolean or fixed choice goes.
ENV_PLACEHOLDER = {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$"}
_TYPED = {"integer", "number", "boolean"}


def _allow_placeholders(node: Any, key: str = "") -> Any:
    if isinstance(node, list):
        return [_allow_placeholders(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _allow_placeholders(v, k) for k, v in node.items()}
    kind = out.get("type")
    typed = "enum" in out or (isinstance(kind, str) and kind in _TYPED)
    if typed and key != "plugin" and "const" not in out:
        return {"anyOf": [out, ENV_PLACEHOLDER]}
    return out


def scenario_schema(catalog: Catalog) -> dict[str, Any]:
    schema = _allow_placeholders(scenario_model(catalog).model_json_schema(by_alias=True))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmscen scenario"
    return schema
