"""openai-sim's tool calls: which tool a request with `tools` calls, and with what.

Deterministic, like the rest of the simulator: the tool named by `tool_choice`, else
the first one; arguments made from the tool's `parameters` schema by the prompt's
random source (each property of the schema given a value of its type, strings from
the pseudo-words, the first of an `enum`). The option `tool_arguments` replaces them
with a fixed text, e.g. JSON that does not parse, to test a client's checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from llmscen.services.openai_sim.text import pseudo_tokens


@dataclass(frozen=True, slots=True)
class ToolPick:
    id: str
    name: str
    arguments: str


def pick_tool(body: dict[str, Any], rng: random.Random, call_id: str,
              fixed_arguments: str | None) -> ToolPick | None:
    """The call a request's `tools` and `tool_choice` make, or None (answer in text).
    Raises ValueError (a 400) for malformed tools or a choice of an undeclared tool."""
    tools = body.get("tools")
    choice = body.get("tool_choice", "auto")
    if tools is None:
        return None
    if not isinstance(tools, list) or not tools:
        raise ValueError("'tools' must be a non-empty list")
    functions: dict[str, dict[str, Any]] = {}
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or tool.get("type", "function") != "function":
            raise ValueError("each tool must be {type: function, function: {name, parameters}}")
        functions.setdefault(function["name"], function)
    if choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") \
            if isinstance(choice.get("function"), dict) else None
        if name not in functions:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools: "
                             f"{', '.join(functions)}")
    elif choice in ("auto", "required"):
        name = next(iter(functions))
    else:
        raise ValueError("'tool_choice' must be none, auto, required or "
                         "{type: function, function: {name}}")
    parameters = functions[name].get("parameters")
    arguments = fixed_arguments if fixed_arguments is not None else \
        orjson.dumps(value_for(parameters, rng)).decode()
    return ToolPick(call_id, name, arguments)


def value_for(schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value of the type a (simple) JSON Schema asks for."""
    if not isinstance(schema, dict) or depth > 6:
        return {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties")
        return {key: value_for(sub, rng, depth + 1)
                for key, sub in (properties.items() if isinstance(properties, dict) else ())}
    if kind == "array":
        return [value_for(schema.get("items"), rng, depth + 1)]
    if kind == "integer":
        low = schema.get("minimum", 0)
        return rng.randint(int(low), int(schema.get("maximum", low + 100)))
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return "".join(pseudo_tokens(rng, 2, first=True))


def fragments(arguments: str, size: int = 6) -> list[str]:
    """The arguments as a stream sends them: in pieces, one chunk (token) each."""
    return [arguments[i:i + size] for i in range(0, len(arguments), size)] or [""]
