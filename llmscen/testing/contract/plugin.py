"""Contract tests of the plugin object and its options: no server, no event loop.

`RunnerContract` (contract.py) inherits them; see there for how to use the suite.
"""

from __future__ import annotations

import contextlib
import inspect
import pickle
import socket
from importlib import metadata
from typing import Any

import pytest
from pydantic import ValidationError

from llmscen.engine.registry import PLUGIN_GROUP, Registry, check_plugin
from llmscen.spec.metrics import CATALOG
from llmscen.testing.contract import violations as rules
from llmscen.testing.contract.base import SECRET_HEADER, ContractBase
from llmscen.testing.contract.hostile import free_port
from llmscen.testing.contract.violations import raised

UNKNOWN_KEY = "llmscen_contract_unknown_key"
RUNNER_METHODS = ("start", "preflight", "send", "stop", "server_metrics")


class PluginContract(ContractBase):
    """The rules about the plugin object, its options and building its runner."""

    # -- the plugin object ------------------------------------------------------------------

    def test_plugin_object(self, plugin: Any) -> None:
        report = self.reporter(plugin)
        problems = check_plugin(plugin)
        if problems:
            report.broke(rules.PLUGIN_OBJECT, "an object with name, api_version, description, "
                         "target_options, request_options, metrics and create_runner(target)",
                         "; ".join(problems))
        if not plugin.name or plugin.name != plugin.name.strip() or " " in plugin.name:
            report.broke(rules.PLUGIN_OBJECT, "a name a scenario can write after `plugin:`",
                         f"is named {plugin.name!r}")
        if not isinstance(plugin.description, str) or not plugin.description.strip():
            report.broke(rules.PLUGIN_OBJECT, "a one-line description for `llmscen plugins`",
                         f"has description={getattr(plugin, 'description', None)!r}")
        unknown = sorted(set(plugin.metrics) - set(CATALOG))
        if unknown:
            report.broke(rules.PLUGIN_OBJECT, f"metrics named from the catalog "
                         f"({', '.join(CATALOG)})", f"lists unknown metrics {unknown}")

    def test_registered_under_its_name(self, plugin: Any) -> None:
        report = self.reporter(plugin)
        points = [ep for ep in metadata.entry_points(group=PLUGIN_GROUP) if ep.name == plugin.name]
        if not points:
            pytest.skip(f"no entry point {plugin.name!r} in {PLUGIN_GROUP!r}: install the "
                        "package (pip install -e .) to check how llmscen finds it")
        registry = Registry.discover()
        if plugin.name in registry.broken:
            report.broke(rules.REGISTERED, f"`llmscen plugins` to load entry point "
                         f"{plugin.name!r}", str(registry.broken[plugin.name]))
        entry = registry.plugins[plugin.name]
        if entry.obj is not plugin:
            report.broke(rules.REGISTERED, f"entry point {plugin.name!r} to resolve to this "
                         "plugin object", f"resolves to {entry.obj!r} from {entry.origin}")

    def test_target_options_forbid_unknown_keys(self, plugin: Any) -> None:
        self.options(plugin)
        self.check_strict(plugin, "target_options", self.target_options(self.secret))

    def test_request_options_forbid_unknown_keys(self, plugin: Any) -> None:
        for factory in (self.good_call, self.streaming_call, self.failing_call):
            call = factory()
            if call is None:
                continue
            try:
                plugin.request_options.model_validate(call.payload)
            except ValidationError as exc:
                pytest.fail(f"{factory.__name__}() has a payload the plugin's own "
                            f"request_options model rejects (a problem of the test):\n{exc}",
                            pytrace=False)
        self.check_strict(plugin, "request_options", self.good_call().payload)

    def check_strict(self, plugin: Any, attr: str, valid: dict[str, Any]) -> None:
        model = getattr(plugin, attr)
        try:
            model.model_validate({**valid, UNKNOWN_KEY: 1})
        except ValidationError as exc:
            if UNKNOWN_KEY not in str(exc):
                self.reporter(plugin).broke(rules.OPTIONS_STRICT, f"the error to name the "
                                            f"unknown key {UNKNOWN_KEY!r}", str(exc))
            return
        self.reporter(plugin).broke(
            rules.OPTIONS_STRICT, f"{attr} to reject an unknown key, so a typo in a scenario "
            "is reported at its line (model_config = ConfigDict(extra='forbid'))",
            f"accepted {UNKNOWN_KEY!r}")

    def test_options_hide_the_secret(self, plugin: Any) -> None:
        report = self.reporter(plugin)
        target = self.plan(plugin, "http://127.0.0.1:1")
        shown = {"repr(options)": repr(target.options), "str(options)": str(target.options),
                 "the plan's JSON (llmscen plan --json)": target.model_dump_json()}
        for where, text in shown.items():
            if self.secret in text:
                report.broke(rules.SECRETS_HIDDEN, f"the secret hidden in {where}: declare it "
                             "as pydantic.SecretStr", f"shows it: {text[:300]!r}")
            if self.header_secret in text:
                report.broke(rules.SECRETS_HIDDEN, f"a secret header ({SECRET_HEADER}) hidden "
                             f"in {where}: declare `headers` as llmscen.runners.secrets.Headers",
                             f"shows it: {text[:300]!r}")

    # -- building and lifecycle -------------------------------------------------------------

    def test_runner_built_from_a_pickled_plan(self, plugin: Any) -> None:
        report = self.reporter(plugin)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            try:
                target = pickle.loads(pickle.dumps(self.plan(plugin, url)))
            except Exception as exc:
                report.broke(rules.BUILT_FROM_PLAN, "a TargetPlan with these options to pickle "
                             "(worker processes receive it pickled)", raised(exc))
            try:
                runner = plugin.create_runner(target)
            except Exception as exc:
                report.broke(rules.BUILT_FROM_PLAN, "create_runner(target) to build a runner "
                             "from the plan alone, outside any event loop", raised(exc))
            try:
                pickle.loads(pickle.dumps(runner))
            except Exception as exc:
                report.broke(rules.BUILT_FROM_PLAN, "the runner to pickle before start(): open "
                             "sessions and connections in start(), not in create_runner",
                             raised(exc))
            listener.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                listener.accept()[0].close()
                report.broke(rules.BUILT_FROM_PLAN, "nothing opened before start()",
                             f"connected to {url} while building the runner")

    def test_runner_has_the_protocol_methods(self, plugin: Any) -> None:
        runner = plugin.create_runner(self.plan(plugin, f"http://127.0.0.1:{free_port()}"))
        for name in RUNNER_METHODS:
            method = getattr(runner, name, None)
            if not inspect.iscoroutinefunction(method):
                self.reporter(plugin).broke(
                    rules.LIFECYCLE, f"the runner to have `async def {name}`",
                    f"has {name}={method!r}" if method is not None else f"has no {name}")
