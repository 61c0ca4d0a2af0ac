"""`before:` and `after:` flows run once around the phases (issue 16.7): log in once, use the
token everywhere, on every worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from servers.api_server import serve

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.results import RunResults

pytestmark = pytest.mark.slow

SCENARIO = """
version: 1
targets:
  api: {{plugin: http, url: "{url}", timeout: 10s}}
before: [login]
after: [goodbye]
phases:
  - {{name: steady, duration: 2s, arrival_rate: 10}}
requests:
  - name: login
    target: api
    steps:
      - post: /api/auth/login
        json: {{email: alice@example.com, password: alice-pass-1}}
        capture: {{token: $.access_token}}
        expect: {{status: 200}}
  - name: models
    target: api
    get: /api/ai-models/available
    headers: {{Authorization: "Bearer {{{{ token }}}}"}}
    expect: {{status: 200}}
  - {{name: goodbye, target: api, get: /health, expect: {{status: 200}}}}
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_before_logs_in_once_and_every_call_uses_the_token(tmp_path: Path, workers: str) -> None:
    with serve() as (url, state):
        scenario = tmp_path / "s.yaml"
        scenario.write_text(SCENARIO.format(url=url))
        result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(tmp_path / "o"),
                                          "--quiet", "--workers", workers])
        assert result.exit_code == exitcodes.OK, result.output
        assert state.logins == 1                     # once per run, whatever the workers
        assert state.authorized == 20 and state.unauthorized == 0
        assert state.health == 1
    results = RunResults.load(tmp_path / "o" / "results.json")
    assert [p.name for p in results.phases] == ["before", "steady", "after"]
    steady = {s.request for s in results.scopes if s.phase == "steady"}
    assert steady == {"models"}                      # setup flows stay out of the mix


def test_a_template_may_use_what_before_captures_and_nothing_else(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(url="http://127.0.0.1:9").replace(
        "Bearer {{ token }}", "Bearer {{ tokn }}"))
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == exitcodes.INVALID_INPUT
    assert "unknown variable 'tokn'; did you mean 'token'?" in result.output
