"""Discovers protocol plugins and services through entry points.

Built-ins register exactly like third-party packages (see pyproject.toml), so
the path a team's plugin takes is the one our own code takes. One `Registry`
is made per command; nothing here is a module global.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pydantic import BaseModel

from llmscen.engine.protocol import PLUGIN_API_VERSION

PLUGIN_GROUP = "llmscen.plugins"
SERVICE_GROUP = "llmscen.services"


@dataclass(frozen=True)
class Entry:
    """One registered plugin or service, with where it came from."""

    name: str
    obj: Any
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}"


@dataclass(frozen=True)
class Broken:
    name: str
    distribution: str
    version: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} from {self.distribution} {self.version}: {self.reason}"


@dataclass
class Registry:
    plugins: dict[str, Entry] = field(default_factory=dict)
    services: dict[str, Entry] = field(default_factory=dict)
    broken: dict[str, Broken] = field(default_factory=dict)

    @classmethod
    def discover(cls) -> Registry:
        registry = cls()
        for ep in _entry_points(PLUGIN_GROUP):
            registry._load(ep, registry.plugins, check_plugin)
        for ep in _entry_points(SERVICE_GROUP):
            registry._load(ep, registry.services, check_service)
        return registry

    def add_plugin(self, obj: Any, distribution: str = "(in-process)", version: str = "") -> None:
        """Register an object directly (tests, embedding); checked like an entry point."""
        problems = check_plugin(obj)
        if problems:
            raise TypeError("; ".join(problems))
        self.plugins[obj.name] = Entry(obj.name, obj, distribution, version)

    def _load(self, ep: metadata.EntryPoint, into: dict[str, Entry], check: Any) -> None:
        dist = ep.dist.name if ep.dist is not None else "(unknown distribution)"
        version = ep.dist.version if ep.dist is not None else "?"
        if ep.name in into:
            first = into[ep.name]
            self.broken[ep.name] = Broken(ep.name, dist, version,
                                          f"name already registered by {first.origin}")
            return
        try:
            obj = ep.load()
        except Exception as exc:  # a third-party import may raise anything
            self.broken[ep.name] = Broken(ep.name, dist, version,
                                          f"failed to import {ep.value}: "
                                          f"{type(exc).__name__}: {exc}")
            return
        problems = check(obj)
        if getattr(obj, "name", ep.name) != ep.name:
            problems.append(f"entry point is named {ep.name!r} but the object says "
                            f"name={getattr(obj, 'name', None)!r}")
        if problems:
            self.broken[ep.name] = Broken(ep.name, dist, version, "; ".join(problems))
            return
        into[ep.name] = Entry(ep.name, obj, dist, version)


def _entry_points(group: str) -> Iterable[metadata.EntryPoint]:
    # on a name clash our built-in keeps the name, whatever the path order: a package
    # must not silently replace `openai`; the other one is reported as broken
    return sorted(metadata.entry_points(group=group),
                  key=lambda ep: (ep.name, ep.dist is None or ep.dist.name != "llmscen"))


def _is_model(obj: Any) -> bool:
    return inspect.isclass(obj) and issubclass(obj, BaseModel)


def check_plugin(obj: Any) -> list[str]:
    """Violations of the plugin contract (engine/protocol.py), as readable messages."""
    problems = []
    if not isinstance(getattr(obj, "name", None), str):
        problems.append("has no string attribute `name`")
    version = getattr(obj, "api_version", None)
    if version != PLUGIN_API_VERSION:
        problems.append(f"speaks plugin API version {version!r}; this llmscen speaks "
                        f"{PLUGIN_API_VERSION}")
    for attr in ("target_options", "request_options"):
        if not _is_model(getattr(obj, attr, None)):
            problems.append(f"`{attr}` must be a pydantic model class")
    if not callable(getattr(obj, "create_runner", None)):
        problems.append("has no callable `create_runner(target)`")
    if not isinstance(getattr(obj, "metrics", None), (set, frozenset)):
        problems.append("`metrics` must be a set of metric names")
    return problems


def check_service(obj: Any) -> list[str]:
    problems = []
    if not isinstance(getattr(obj, "name", None), str):
        problems.append("has no string attribute `name`")
    if not _is_model(getattr(obj, "options", None)):
        problems.append("`options` must be a pydantic model class")
    if not callable(getattr(obj, "launch", None)):
        problems.append("has no callable `launch(plan)`")
    return problems
