"""A broken third-party plugin is named with its distribution and version, and a
scenario that uses it does not start.

Each plugin here is a throwaway distribution written into a temporary folder:
a module plus a `*.dist-info` with METADATA and entry_points.txt, which is all
`importlib.metadata` needs. The folder goes on PYTHONPATH of a `llmscen`
subprocess (or on sys.path for in-process checks); .venv is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmscen.engine.registry import Registry

VALID_PLUGIN = '''
from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Runner:
    def __init__(self, target):
        self.target = target

    async def start(self):
        {start}

    async def preflight(self, calls):
        return []

    async def send(self, call, exchange):
        {send}

    async def stop(self):
        pass

    async def server_metrics(self):
        return {{}}


class Plugin:
    name = {name!r}
    api_version = {api_version}
    description = "a throwaway plugin for tests"
    target_options = Options
    request_options = Options
    metrics = frozenset({{"latency"}})

    def create_runner(self, target):
        return Runner(target)


plugin = Plugin()
{extra}
'''

# entry-point name → (distribution, version, module source)
PLUGINS: dict[str, tuple[str, str, str]] = {
    "fails-import": ("llmscen-fails-import", "1.2.3",
                     "import llmscen_no_such_dependency  # noqa\n"),
    "wrong-api": ("llmscen-wrong-api", "2.0.0",
                  VALID_PLUGIN.format(name="wrong-api", api_version=2, start="pass",
                                      send="pass", extra="")),
    "no-runner": ("llmscen-no-runner", "0.0.1",
                  VALID_PLUGIN.format(name="no-runner", api_version=1, start="pass",
                                      send="pass", extra="del Plugin.create_runner")),
    "misnamed": ("llmscen-misnamed", "0.3.0",
                 VALID_PLUGIN.format(name="other-name", api_version=1, start="pass",
                                     send="pass", extra="")),
    "fails-start": ("llmscen-fails-start", "0.9.0",
                    VALID_PLUGIN.format(name="fails-start", api_version=1,
                                        start='raise RuntimeError("license server unreachable")',
                                        send="pass", extra="")),
    "raises-send": ("llmscen-raises-send", "0.4.0",
                    VALID_PLUGIN.format(name="raises-send", api_version=1, start="pass",
                                        send='raise RuntimeError("boom in send")', extra="")),
}

# what `llmscen plugins` and `llmscen run` must say about each unusable plugin
REASONS = {
    "fails-import": "failed to import llmscen_fails_import:plugin: ModuleNotFoundError: "
                    "No module named 'llmscen_no_such_dependency'",
    "wrong-api": "speaks plugin API version 2; this llmscen speaks 1",
    "no-runner": "has no callable `create_runner(target)`",
    "misnamed": "entry point is named 'misnamed' but the object says name='other-name'",
}

SCENARIO = """\
version: 1
name: uses-{name}
targets:
  t:
    url: http://127.0.0.1:9
    plugin: {name}
phases:
  - {{name: p, duration: 1s, arrival_rate: 1}}
requests:
  - {{name: r, target: t}}
"""
PLUGIN_LINE, PLUGIN_COL = 6, 13     # where `{name}` stands after `plugin: `


def module_name(entry: str) -> str:
    return "llmscen_" + entry.replace("-", "_")


def install(site: Path, entry: str, spec: tuple[str, str, str] | None = None) -> None:
    """Write one distribution the way pip would leave it, minus the RECORD."""
    dist, version, source = spec or PLUGINS[entry]
    module = module_name(entry)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[llmscen.plugins]\n{entry} = {module}:plugin\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    for entry in PLUGINS:
        install(folder, entry)
    return folder


def llmscen(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "llmscen.cli.main", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                          text=True, timeout=120)


def test_registry_records_distribution_version_and_reason(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    registry = Registry.discover()
    for entry, reason in REASONS.items():
        dist, version, _ = PLUGINS[entry]
        broken = registry.broken[entry]
        assert (broken.distribution, broken.version) == (dist, version)
        assert str(broken) == f"plugin {entry!r} from {dist} {version}: {reason}"
        assert entry not in registry.plugins
    assert registry.plugins["fails-start"].origin == "llmscen-fails-start 0.9.0"
    assert "openai" in registry.plugins     # one bad plugin does not hide the others


def test_llmscen_plugins_lists_the_broken_with_their_origin(site, tmp_path):
    done = llmscen(site, tmp_path, "plugins")
    assert done.returncode == 0, done.stderr
    for entry, reason in REASONS.items():
        dist, version, _ = PLUGINS[entry]
        assert f"BROKEN plugin {entry!r} from {dist} {version}: {reason}" in done.stderr
    assert "fails-start" in done.stdout and "llmscen-fails-start 0.9.0" in done.stdout


@pytest.mark.parametrize("entry", sorted(REASONS))
def test_a_scenario_using_a_broken_plugin_does_not_start(site, tmp_path, entry):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.format(name=entry))
    done = llmscen(site, tmp_path, "run", "scenario.yaml", "--out", "out", "-q")
    dist, version, _ = PLUGINS[entry]
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"scenario.yaml:{PLUGIN_LINE}:{PLUGIN_COL}: plugin {entry!r} is installed but "
            f"unusable: plugin {entry!r} from {dist} {version}: {REASONS[entry]}") in done.stderr
    assert "nothing was sent" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_plugin_that_fails_to_start_is_named_with_its_version(site, tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.format(name="fails-start"))
    done = llmscen(site, tmp_path, "run", "scenario.yaml", "--out", "out", "-q",
                   "--workers", "1")
    said = done.stdout + done.stderr
    assert done.returncode == 3, said
    assert ("plugin 'fails-start' (llmscen-fails-start 0.9.0) could not start: RuntimeError: "
            "license server unreachable") in said


def test_validate_reports_every_broken_plugin_at_once(site, tmp_path):
    for entry in REASONS:
        (tmp_path / f"{entry}.yaml").write_text(SCENARIO.format(name=entry))
    done = llmscen(site, tmp_path, "validate", *(f"{e}.yaml" for e in sorted(REASONS)))
    assert done.returncode == 2
    for entry in REASONS:
        assert f"{entry}.yaml:{PLUGIN_LINE}:{PLUGIN_COL}: plugin {entry!r} is installed but " \
               "unusable" in done.stderr
    assert f"{len(REASONS)} problems found" in done.stderr


def test_a_plugin_that_raises_from_send_is_named_and_its_requests_count(site, tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.format(name="raises-send"))
    done = llmscen(site, tmp_path, "run", "scenario.yaml", "--out", "out", "-q",
                   "--workers", "1")
    said = done.stdout + done.stderr
    assert "Task exception was never retrieved" not in said
    assert "Traceback" not in said
    assert "boom in send" in said, said       # the console names it too, not only results
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    errors = [e for e in results["errors"] if e["request"] == "r"]
    assert errors and errors[0]["count"] >= 1, results["errors"]
    assert "plugin 'raises-send' (llmscen-raises-send 0.4.0)" in json.dumps(errors)
    assert "boom in send" in json.dumps(errors)


def test_a_name_clash_names_both_distributions(tmp_path):
    """Two distributions registering one name: `llmscen plugins` says which two.

    The built-in keeps its name whatever the path order (the site holding the shadow
    comes first on the path here), and the newcomer is the one reported broken."""
    site = tmp_path / "site"
    site.mkdir()
    install(site, "openai", ("llmscen-shadow", "6.6.6",
                             VALID_PLUGIN.format(name="openai", api_version=1, start="pass",
                                                 send="pass", extra="")))
    done = llmscen(site, tmp_path, "plugins")
    broken = [ln for ln in done.stderr.splitlines() if "BROKEN plugin 'openai'" in ln]
    assert len(broken) == 1, done.stderr
    assert "llmscen-shadow 6.6.6: name already registered by llmscen 0.1.0" in broken[0]
