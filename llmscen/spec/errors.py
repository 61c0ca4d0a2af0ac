"""pydantic validation errors → positioned diagnostics with suggestions."""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from llmscen.spec.diagnostics import Diagnostic, did_you_mean, one_of
from llmscen.spec.loader import Document, Loc


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated/Optional/Union."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [t for a in get_args(tp) for t in _unwrap(a) if t is not type(None)]
    return [tp]


def keys_at(model: type[BaseModel], loc: Loc) -> set[str]:
    """The keys a mapping at `loc` (inside `model`) accepts, for 'did you mean'."""
    candidates: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for tp in candidates:
            for t in _unwrap(tp):
                origin = get_origin(t)
                if isinstance(t, type) and issubclass(t, BaseModel):
                    field = _field(t, str(part))
                    if field is not None:
                        following.append(field.annotation)
                elif origin is dict and not isinstance(part, int):
                    following.append(get_args(t)[1])
                elif origin in (list, tuple) and isinstance(part, int):
                    following.append(get_args(t)[0])
        candidates = following
    keys: set[str] = set()
    for tp in candidates:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, BaseModel):
                keys |= {f.alias or name for name, f in t.model_fields.items()}
    return keys


def _field(model: type[BaseModel], name: str) -> Any:
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field
    return None


def _where(raw_loc: Loc, node: Any) -> Loc:
    """Keep the parts of pydantic's loc that exist in the data; the others are union
    member or tag names pydantic adds."""
    kept: list[str | int] = []
    for part in raw_loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            continue
        kept.append(part)
    return tuple(kept)


def _node_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def diagnostics_from(exc: ValidationError, doc: Document, model: type[BaseModel],
                     prefix: Loc = (), inside: tuple[str, ...] = ()) -> list[Diagnostic]:
    """One diagnostic per distinct problem; union noise collapsed to the clearest member.
    Problems inside the items of the lists named by `inside` are left out: the caller
    validates those items one by one."""
    out: dict[tuple[Loc, str], tuple[Diagnostic, Any]] = {}
    errors = [e for e in exc.errors(include_url=False)
              if not (len(e["loc"]) > 1 and e["loc"][0] in inside)]
    root = _node_at(doc.data, prefix)
    # A value that matched no member of a union (e.g. an SLO that is neither a string nor a
    # mapping) yields one error per member; keep the ones the user can act on.
    for err in errors:
        raw_loc = tuple(err["loc"])
        rel = _where(raw_loc, root)
        loc = (*prefix, *rel)
        if not doc.usable(loc):
            continue    # the loader already said what is wrong there
        kind, msg = err["type"], err["msg"]
        key = False
        if kind == "extra_forbidden":
            name = str(raw_loc[-1])
            allowed = keys_at(model, rel[:-1])
            msg = f"unknown key {name!r}{did_you_mean(name, allowed)}"
            if allowed:
                msg += f" (valid keys: {one_of(allowed)})"
            key = True
        elif kind == "missing":
            msg = f"missing required key {str(raw_loc[-1])!r}"
            key = bool(rel)
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            choices = [c.strip().strip("'") for c in str(expected).replace(" or ", ",").split(",")]
            msg = f"invalid value {err['input']!r}{did_you_mean(str(err['input']), choices)} " \
                  f"(expected one of: {one_of(c for c in choices if c)})"
        elif kind in ("bool_parsing", "bool_type"):
            msg = f"expected true or false, got {err['input']!r}"
        elif kind == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif kind == "string_pattern_mismatch":
            msg = (f"invalid name {err['input']!r}: use letters, digits, '_', '.' or '-', "
                   "starting with a letter or digit")
        out.setdefault((loc, msg), (doc.diagnostic(loc, msg, key=key), err.get("input")))
    return _prefer_specific(doc, out)


_NOISY = {"Input should be a valid string": "a string",
          "Input should be a valid dictionary": "a mapping"}


def _noise(message: str) -> str | None:
    return next((what for prefix, what in _NOISY.items() if message.startswith(prefix)), None)


def _prefer_specific(doc: Document, found: dict[tuple[Loc, str], tuple[Diagnostic, Any]]
                     ) -> list[Diagnostic]:
    """A union of `str | Model` reports 'should be a string' beside the model's own errors:
    drop that noise where the model has errors at or under the same place, and say
    'expected a string or a mapping' once where nothing else does."""
    at: dict[Loc, list[tuple[str, Diagnostic, Any]]] = {}
    for (loc, msg), (diag, given) in found.items():
        at.setdefault(loc, []).append((msg, diag, given))
    inner = {loc[:n] for loc in at for n in range(len(loc))}
    out = []
    for loc, here in at.items():
        specific = [d for msg, d, _ in here if _noise(msg) is None]
        if specific:
            out += specific
        elif loc in inner:
            continue
        elif len(here) > 1:
            wanted = " or ".join(sorted({_noise(msg) or "" for msg, _, _ in here}, reverse=True))
            given = here[0][2]
            shown = repr(given) if isinstance(given, (int, float, bool)) or given is None \
                else f"a {type(given).__name__}"
            out.append(doc.diagnostic(loc, f"expected {wanted}, got {shown}"))
        else:
            out += [d for _, d, _ in here]
    return out
