"""JSON Schema of the scenario format, generated from the models and installed plugins.

Targets become a union discriminated by `plugin`, each member the plugin's own
options model plus the common keys; services a union of the bundled kinds, each
with its own `options`; a request (and a step) is one plugin's shape — the common
keys plus that plugin's request keys — since a schema cannot follow `target:` to
the target's plugin. Built once per registry.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from llmscen.compile.compiler import Catalog
from llmscen.spec.models import RequestSpec, Scenario, ServiceSpec, StepSpec, TargetSpec
from llmscen.spec.units import UNIT_HINTS

# Loose on metric names (plugins and telemetry add their own), strict on the shape:
# METRIC[.STAT] OP NUMBER[UNIT] (the grammar is in docs/slo.md).
SLO_PATTERN = (r"^\s*[A-Za-z_][A-Za-z0-9_.:-]*(\{[^}]*\}(\.[A-Za-z0-9_.]+)?)?\s*"
               r"(<=|>=|==|<|>)\s*"
               r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\s*(%|/[A-Za-z]+|[A-Za-zµ]+)?\s*$")
SLO_STRING = {"type": "string", "pattern": SLO_PATTERN,
              "description": "METRIC[.STAT] OP THRESHOLD[UNIT], e.g. latency.p95 < 5s or "
                             "error_rate < 1% (docs/slo.md)",
              "examples": ["latency.p95 < 5s", "error_rate < 1%", "throughput > 50/min"]}


# generic aliases subscripted with classes built at run time (mypy sees no types there)
_List: Any = list
_Dict: Any = dict


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return {name: (f.annotation, f) for name, f in model.model_fields.items()}


def _union(members: list[Any], discriminator: str | None = None) -> Any:
    # a union built at run time from the installed plugins: `X | Y` cannot express that
    if len(members) == 1:
        return members[0]
    if discriminator is None:
        return Union[tuple(members)]  # noqa: UP007
    return Annotated[Union[tuple(members)], Field(discriminator=discriminator)]  # noqa: UP007


def _title(name: str) -> str:
    return name.title().replace("-", "").replace("_", "")


def _targets(catalog: Catalog) -> Any:
    common = {k: v for k, v in _fields(TargetSpec).items() if k != "plugin"}
    members = []
    for name, entry in sorted(catalog.plugins.items()):
        members.append(create_model(
            f"{_title(name)}Target", __config__=ConfigDict(extra="forbid"),
            __doc__=f"A target of the `{name}` plugin.",
            plugin=(Literal[name], Field(description=entry.obj.description or name)),  # type: ignore[arg-type]
            **common, **_fields(entry.obj.target_options)))
    return _union(members, "plugin") if members else TargetSpec


def _services(catalog: Catalog) -> Any:
    """`builtin:` services with their own `options`, and `command:` services."""
    spec = _fields(ServiceSpec)
    command_keys = {k: v for k, v in spec.items() if k not in ("builtin", "options")}
    command_keys["command"] = (str | list[str], Field(description=spec["command"][1].description))
    members: list[Any] = [create_model(
        "CommandService", __config__=ConfigDict(extra="forbid"),
        __doc__="Any process; {port} in it is replaced by a free port.", **command_keys)]
    for name, entry in sorted(catalog.services.items()):
        if name == "command":
            continue
        options = entry.obj.options
        members.append(create_model(
            f"{_title(name)}Service", __config__=ConfigDict(extra="forbid"),
            __doc__=f"The bundled `{name}` service.",
            builtin=(Literal[name], Field(description=entry.obj.description or name)),  # type: ignore[arg-type]
            options=(options, Field(default_factory=dict,
                                    description=f"options of {name} (docs/services.md)"))))
    return _union(members)


def _requests(catalog: Catalog) -> Any:
    """One shape per plugin's request keys, single-call or as the steps of a flow."""
    by_model: dict[type[BaseModel], list[str]] = {}
    for name, entry in sorted(catalog.plugins.items()):
        by_model.setdefault(entry.obj.request_options, []).append(name)
    request_common = {k: v for k, v in _fields(RequestSpec).items() if k != "steps"}
    steps, requests = [], []
    for model, names in by_model.items():
        label = _title(names[0])
        which = ", ".join(f"`{n}`" for n in names)
        steps.append(create_model(
            f"{label}Step", __config__=ConfigDict(extra="forbid"),
            __doc__=f"A step of a flow on a {which} target.",
            **_fields(StepSpec), **_fields(model)))
        requests.append(create_model(
            f"{label}Request", __config__=ConfigDict(extra="forbid"),
            __doc__=f"A single-call request to a {which} target.",
            **request_common, **_fields(model)))
    step = _union(steps)
    steps_field = _fields(RequestSpec)["steps"][1]
    flow = create_model(
        "FlowRequest", __config__=ConfigDict(extra="forbid"),
        __doc__="A request of several steps (docs/flows.md); plugin keys go in the steps.",
        **{k: v for k, v in request_common.items() if k not in ("expect", "record")},
        steps=(_List[step], Field(min_length=1, description=steps_field.description)))
    return _union([*requests, flow])


def scenario_model(catalog: Catalog) -> type[BaseModel]:
    """A Scenario model whose plugin-specific parts are spelled out, for the schema."""
    request = _requests(catalog)
    fields = _fields(Scenario)
    about = {name: f.description for name, f in Scenario.model_fields.items()}
    fields["targets"] = (_Dict[str, _targets(catalog)], Field(min_length=1,
                                                             description=about["targets"]))
    fields["requests"] = (_List[request], Field(min_length=1, description=about["requests"]))
    fields["services"] = (_Dict[str, _services(catalog)], Field(default_factory=dict,
                                                               description=about["services"]))
    return create_model("Scenario", __config__=ConfigDict(extra="forbid", populate_by_name=True),
                        __doc__=Scenario.__doc__, **fields)


# `${VAR}` / `${VAR:-default}` is replaced before validation, so an editor must accept it
# wherever a number, boolean or fixed choice goes.
ENV_PLACEHOLDER = {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$"}
_TYPED = {"integer", "number", "boolean"}
# Annotations that stay on the property when its type is wrapped in anyOf.
_OUTER = ("description", "default", "examples", "title")


def _allow_placeholders(node: Any, key: str = "") -> Any:
    if isinstance(node, list):
        return [_allow_placeholders(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _allow_placeholders(v, k) for k, v in node.items()}
    kind = out.get("type")
    typed = "enum" in out or (isinstance(kind, str) and kind in _TYPED)
    if typed and key != "plugin" and "const" not in out:
        outer = {k: out.pop(k) for k in _OUTER if k in out}
        return {"anyOf": [out, ENV_PLACEHOLDER], **outer}
    return out


def _slo_strings(node: Any) -> None:
    """An SLO written as text (in `slos:`, `assert:`, `objectives:`) gets the grammar's shape."""
    defs = node.get("$defs", {})
    slo = defs.get("SLOSpec", {}).get("properties", {})
    if "assert" in slo:
        slo["assert"].update({k: v for k, v in SLO_STRING.items() if k != "description"})
    for holder in (node.get("properties", {}).get("slos"),
                   defs.get("SearchSpec", {}).get("properties", {}).get("objectives")):
        for choice in (holder or {}).get("items", {}).get("anyOf", []):
            if choice.get("type") == "string":
                choice.update(SLO_STRING)


def _unit_of(node: Any, depth: int = 0) -> str | None:
    """What a duration, rate, fraction or size field accepts, found in its anyOf."""
    if not isinstance(node, dict) or depth > 3:
        return None
    if node.get("pattern") in UNIT_HINTS:
        return UNIT_HINTS[node["pattern"]]
    for choice in node.get("anyOf", []):
        found = _unit_of(choice, depth + 1)
        if found is not None:
            return found
    return None


def _units_in_descriptions(node: Any) -> None:
    """A field's description replaces its type's: say the unit again (`timeout: 60s`)."""
    if isinstance(node, list):
        for item in node:
            _units_in_descriptions(item)
        return
    if not isinstance(node, dict):
        return
    for prop in (node.get("properties") or {}).values():
        unit = _unit_of(prop)
        if unit is not None and isinstance(prop, dict) and unit not in prop.get(
                "description", ""):
            prop["description"] = f"{prop.get('description', '')} ({unit})".lstrip()
    for value in node.values():
        _units_in_descriptions(value)


def scenario_schema(catalog: Catalog) -> dict[str, Any]:
    schema = scenario_model(catalog).model_json_schema(by_alias=True)
    _slo_strings(schema)
    _units_in_descriptions(schema)
    schema = _allow_placeholders(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmscen scenario"
    return schema
