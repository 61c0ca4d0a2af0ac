"""The contract suite catches broken plugins, and says which rule each one breaks.

plugins/broken-examples/broken_plugins.py holds copies of the `ollama` example
plugin with one mistake each. A generated test module subclasses
`RunnerContract` once per broken plugin (and once for the real one, which must
pass); it runs in a pytest subprocess with those folders on PYTHONPATH (nothing
is installed), and its JUnit XML says which tests failed and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow     # one pytest subprocess of ~350 contract tests, ~35 s

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"

GENERATED = '''
import pytest
from fake_ollama import FakeConfig, serve

import broken_plugins
import llmscen_ollama
from llmscen.engine.protocol import Call
from llmscen.testing.contract import RunnerContract

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def target_url():
    with serve(FakeConfig(ttft=0.005, itl=0.001, output_tokens=4)) as (url, _):
        yield url


class Contract(RunnerContract):
    def target_options(self, secret):
        return {"model": "llama3.2", "api_key": secret, "timeout": "30s"}

    def good_call(self):
        return Call("chat", {"body": {"messages": MESSAGES}})

    def streaming_call(self):
        return Call("chat", {"body": {"messages": MESSAGES}}, stream=True)

    def failing_call(self):
        return Call("chat", {"body": {"messages": MESSAGES, "fake": "error500"}})


class TestCorrect(Contract):
    @pytest.fixture
    def plugin(self):
        return llmscen_ollama.plugin
'''

CLASS = '''

class Test_{ident}(Contract):
    @pytest.fixture
    def plugin(self):
        return broken_plugins.ALL[{name!r}]
'''

# broken plugin → {test (name prefix) → words its failure message must contain}
EXPECTED: dict[str, dict[str, list[str]]] = {
    "raises-on-http-error": {
        "test_http_error_is_classified": ['rule "HTTP errors classified, not raised"',
                                          "raised RuntimeError: server answered HTTP 500",
                                          "broken_plugins.py"],
        "test_connection_refused_is_connect": ['"connection refused is `connect`"',
                                               "raised ClientConnectorError"],
        "test_misbehaving_server_never_raises[echo500": ['"never raise for server misbehaviour"',
                                                         "raised RuntimeError"],
        "test_misbehaving_server_never_raises[close": ["raised ServerDisconnectedError"],
        "test_timeout_is_classified": ['"timeouts classified"', "raised TimeoutError"],
    },
    "leaks-key": {
        "test_secret_never_in_messages_when_echoed": ['rule "secrets never in messages"',
                                                      "error_message", "Bearer <SECRET>"],
        "test_secret_not_in_the_exchange": ['"secrets never in messages"', "<SECRET>"],
        "test_misbehaving_server_never_raises[echo500": ['"secrets never in messages"'],
    },
    "swallows-cancel": {
        "test_cancel_marks_cancelled_and_reraises": [
            'rule "cancellation marked and re-raised"',
            "returned normally: it swallowed the CancelledError"],
    },
    "misses-sent-ns": {
        "test_good_call_timestamps": ['rule "timestamps on one clock"', "left sent_ns at 0"],
        "test_streaming_timings": ["left sent_ns at 0"],
        "test_misbehaving_server_never_raises": ['"never raise for server misbehaviour"',
                                                 "left sent_ns at 0"],
    },
    "wall-clock": {
        "test_good_call_timestamps": ['rule "timestamps on one clock"', "another clock?"],
    },
    "counts-first-gap": {
        "test_streaming_timings": ['rule "streaming timings"', "one itl_us gap between each two",
                                   "recorded 4 gaps"],
    },
    "ignores-call-timeout": {
        "test_timeout_is_classified": ['rule "timeouts classified"',
                                       "Call.timeout=0.5s", "had not returned after 3.5s"],
    },
    "probes-in-init": {
        "test_runner_built_from_a_pickled_plan": ['rule "built from the plan alone"',
                                                  "pickle before start()", "socket"],
    },
    "stop-needs-start": {
        "test_start_stop_and_stop_again": ['rule "start/stop lifecycle"', "stop() before start()",
                                           "raised AssertionError: stop() without a session"],
        "test_stop_after_a_failed_start[no url": ["stop() after start() against no URL"],
    },
    "lax-options": {
        "test_target_options_forbid_unknown_keys": ['rule "options forbid unknown keys"',
                                                    "extra='forbid'",
                                                    "accepted 'llmscen_contract_unknown_key'"],
    },
}


def class_name(plugin: str) -> str:
    return "Test_" + plugin.replace("-", "_")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    """class → test → None when it passed or was skipped, else its failure text."""
    folder = tmp_path_factory.mktemp("contract_broken")
    module = folder / "test_generated_contract.py"
    module.write_text(GENERATED + "".join(CLASS.format(ident=name.replace("-", "_"), name=name)
                                          for name in EXPECTED))
    xml = folder / "results.xml"
    paths = [PLUGINS / "broken-examples", PLUGINS / "llmscen-ollama",
             PLUGINS / "llmscen-ollama" / "tests", ROOT]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    proc = subprocess.run([sys.executable, "-m", "pytest", str(module), "-q", "-p",
                           "no:cacheprovider", "-o", "addopts=", f"--junitxml={xml}",
                           "--rootdir", str(folder)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    if not xml.exists():
        pytest.fail(f"the generated contract tests did not run:\n{proc.stdout}\n{proc.stderr}")
    found: dict[str, dict[str, str | None]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        text = None if failure is None else \
            f"{failure.get('message', '')}\n{failure.text or ''}"
        found.setdefault(case.get("classname", "").rsplit(".", 1)[-1], {})[case.get("name", "")] \
            = text
    return found


def test_the_real_plugin_passes_the_same_generated_suite(outcomes):
    failed = {name: text for name, text in outcomes["TestCorrect"].items() if text is not None}
    assert not failed, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())
    assert len(outcomes["TestCorrect"]) > 30


@pytest.mark.parametrize("plugin", sorted(EXPECTED))
def test_broken_plugin_fails_with_the_rule_named(outcomes, plugin):
    tests = outcomes[class_name(plugin)]
    for prefix, words in EXPECTED[plugin].items():
        matching = {name: text for name, text in tests.items() if name.startswith(prefix)}
        assert matching, f"no test named {prefix}* ran"
        for name, text in matching.items():
            assert text is not None, f"{plugin}: {name} passed, but the plugin breaks its rule"
            for word in words:
                assert word in text, f"{plugin}: {name} failed without saying {word!r}:\n{text}"


@pytest.mark.parametrize("plugin", sorted(EXPECTED))
def test_broken_plugin_passes_the_rules_it_keeps(outcomes, plugin):
    """A mistake fails its own rules, not the whole suite: the messages point at it."""
    tests = outcomes[class_name(plugin)]
    assert tests["test_plugin_object"] is None
    assert tests["test_request_options_forbid_unknown_keys"] is None
    failed = sorted(name for name, text in tests.items() if text is not None)
    assert len(failed) < len(tests) / 2, f"{plugin} failed nearly everything: {failed}"


def test_the_secret_is_masked_in_the_report(outcomes):
    """The suite's messages show where a secret leaked without printing it."""
    from llmscen.testing.contract.base import ContractBase

    planted = ContractBase().planted_secrets()
    assert len(set(planted)) == 4
    for tests in outcomes.values():
        for text in tests.values():
            assert text is None or not any(secret in text for secret in planted)
