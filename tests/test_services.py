"""Services start, become ready, and stop with nothing left behind."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.metrics.query import aggregate
from llmscen.metrics.results import RunResults
from llmscen.services.process import spawn

pytestmark = pytest.mark.slow


def processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def scenario(tmp_path: Path, command: str) -> Path:
    path = tmp_path / "command.yaml"
    path.write_text(f"""
version: 1
services:
  api:
    command: {json.dumps(command)}
    ready: {{http: /health}}
    startup_timeout: 30s
targets:
  chat: {{plugin: openai, service: api, model: MODEL}}
phases:
  - {{duration: 1s, arrival_rate: 5}}
requests:
  - {{name: ask, target: chat, body: {{messages: [{{role: user, content: hi}}], max_tokens: 3}}}}
""")
    return path


def test_command_service_runs_and_leaves_no_process(tmp_path: Path) -> None:
    marker = f"orphan-check-{uuid.uuid4().hex[:8]}"
    # a shell that starts the server as its child: both must go at the end
    inner = (f'{sys.executable} -m llmscen.services.openai_sim --port {{port}} '
             f'--options "{{\\"model\\": \\"{marker}\\"}}"')
    command = f"sh -c '{inner}'"
    path = scenario(tmp_path, command)
    path.write_text(path.read_text().replace("MODEL", marker))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out"),
                                      "--quiet", "--workers", "1"])
    assert result.exit_code == exitcodes.OK, result.output
    results = RunResults.load(tmp_path / "out" / "results.json")
    assert aggregate(results).counters.ok == 5
    assert processes_with(marker) == []


def test_service_that_never_gets_ready_is_reported_with_its_log(tmp_path: Path) -> None:
    path = scenario(tmp_path, "sh -c 'echo starting up; echo oops >&2; sleep 30'")
    path.write_text(path.read_text().replace("startup_timeout: 30s", "startup_timeout: 2s"))
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "out"),
                                      "--quiet", "--workers", "1"])
    assert result.exit_code == exitcodes.COULD_NOT_RUN
    assert "service 'api' was not ready within 2s" in result.output
    assert "oops" in result.output          # the log's last lines are quoted
    assert processes_with("echo oops") == []



def in_group(pgid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:       # the field after state and ppid
            found.append(int(proc.name))
    return found


def test_a_child_whose_leader_already_exited_leaves_nothing_behind(tmp_path: Path) -> None:
    async def go() -> int:
        # the leader starts a long sleep in its own group and exits at once
        async with spawn("gone", ["sleep 300 & exit 0"], log_dir=str(tmp_path),
                         shell=True) as child:
            await child.proc.wait()
            assert in_group(child.proc.pid), "the sleep should outlive its leader"
        return child.proc.pid

    leader = asyncio.run(go())
    for _ in range(50):
        if not in_group(leader):
            break
        time.sleep(0.05)
    assert in_group(leader) == []
