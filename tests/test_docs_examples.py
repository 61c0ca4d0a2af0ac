"""Every ```yaml block of docs/ and the README compiles with the real `llmscen validate`,
so the reference cannot drift from the format.

A block that is a whole scenario (it has `targets:`, `phases:` and `requests:`) is validated as it
is. Any other block is a fragment: it is merged into BASE below — a scenario that
has what the pages' fragments refer to (a `chat` target on the simulator, an `api`
target, a Triton `flux`, phases `peak` and `load`, ...) — and the merge is validated.
A fragment that is not a top-level part of a scenario says where it goes with a
comment on the line before its fence:

    <!-- fragment at requests.login-then-models.steps -->

(dotted keys, list items by `name` or index). A block that is no scenario at all says
`<!-- not a scenario: WHY -->`. Merging: mappings merge key by key, a list item with
the `name` of a base item replaces it, other items are appended.

Every block validated is also checked against `llmscen schema`, as an editor would.
"""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from llmscen.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```ya?ml[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.M | re.S)
MARK = re.compile(r"<!--\s*(fragment at (?P<at>[^\s]+)|not a scenario: (?P<why>.+?))\s*-->")

BASE = """
version: 1
services:
  sim: {builtin: openai-sim}
targets:
  chat: {plugin: vllm, service: sim, model: sim-model}
  api: {plugin: http, url: "http://127.0.0.1:8080"}
  flux: {plugin: triton, url: "127.0.0.1:8001", model: flux}
  shop: {plugin: http, url: "http://127.0.0.1:8080"}
data:
  prompts: {file: data/prompts.jsonl}
  users: {file: data/users.csv}
phases:
  - {name: base, duration: 1s, arrival_rate: 1}
  - {name: peak, duration: 1s, arrival_rate: 1}
  - {name: load, duration: 1s, arrival_rate: 1}
before: [login-then-models]        # its `token` is every request's
requests:
  - {name: chat, target: chat, body: {messages: [{role: user, content: hi}]}}
  - {name: codegen, target: chat, stream: true, body: {messages: [{role: user, content: hi}]}}
  - {name: models, target: chat, api: models}
  - {name: health, target: api, get: /health}
  - {name: a, target: chat, body: {messages: [{role: user, content: a}]}}
  - {name: b, target: chat, body: {messages: [{role: user, content: b}]}}
  - {name: c, target: chat, body: {messages: [{role: user, content: c}]}}
  - {name: single-prompt, target: chat, body: {messages: [{role: user, content: one}]}}
  - {name: batch-of-three, target: chat, body: {messages: [{role: user, content: three}]}}
  - {name: bad-inputs, target: chat, body: {messages: [{role: user, content: bad}]}}
  - name: login-then-models
    target: api
    data: users
    steps:
      - name: login
        post: /api/auth/login
        json: {email: "{{ row.email }}", password: "{{ row.password }}"}
        capture: {token: $.access_token}
      - name: models
        get: /api/ai-models/available
        headers: {Authorization: "Bearer {{ token }}"}
  - {name: view cart, target: shop, get: /api/cart, record: {cart_size: $.count}}
  - name: cat-sign
    target: flux
    inputs:
      prompt: {datatype: BYTES, shape: [1], data: ["A cat"]}
      num_inference_steps: {datatype: INT32, shape: [1], data: [4]}
      guidance_scale: {datatype: FP32, shape: [1], data: [0.0]}
"""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    text: str
    at: str | None           # where a fragment goes; None: the top level
    not_scenario: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARK.search(before)
            indent = len(m.group("indent"))
            body = "".join(line[indent:] if line[:indent].isspace() else line
                           for line in m.group("body").splitlines(keepends=True))
            out.append(Block(page, text[:m.start()].count("\n") + 1, body,
                             mark.group("at") if mark else None,
                             mark.group("why") if mark else None))
    return out


BLOCKS = blocks()


def load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def merge(base: Any, part: Any) -> Any:
    if isinstance(base, dict) and isinstance(part, dict):
        for key, value in part.items():
            base[key] = merge(base[key], value) if key in base else value
        return base
    if isinstance(base, list) and isinstance(part, list):
        names = {item.get("name"): i for i, item in enumerate(base) if isinstance(item, dict)}
        for item in part:
            name = item.get("name") if isinstance(item, dict) else None
            if name is not None and name in names:
                base[names[name]] = item
            else:
                base.append(item)
        return base
    return part


def node_at(doc: Any, path: str) -> Any:
    node = doc
    for key in path.split("."):
        if isinstance(node, list):
            named = [item for item in node if isinstance(item, dict) and item.get("name") == key]
            node = named[0] if named else node[int(key)]
        else:
            node = node.setdefault(key, {})
    return node


def scenario_of(block: Block) -> Any:
    """The whole scenario a block stands for."""
    data = load(block.text)
    if block.at is None and isinstance(data, dict) and {"targets", "phases", "requests"} <= set(data):
        return data
    assert block.at is not None or isinstance(data, dict), (
        f"{block.id}: this fragment is not a mapping of top-level keys: mark where it goes "
        "with <!-- fragment at PATH --> on the line before its fence")
    doc = load(BASE)
    if block.at is None:
        return merge(doc, data)
    merge(node_at(doc, block.at), data)
    return doc


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scenario folder with the files the examples name."""
    path = tmp_path_factory.mktemp("docs") / "scenarios"
    shutil.copytree(ROOT / "scenarios" / "data", path / "data")
    shutil.copy(path / "data" / "flux-cat-128.npy", path / "data" / "ref.npy")
    (path / "baselines").mkdir()
    (path / "baselines" / "release-1.4.json").write_text("{}\n")   # validate: it exists
    return path


@pytest.fixture(scope="module")
def schema() -> jsonschema.Draft202012Validator:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0, result.output
    return jsonschema.Draft202012Validator(json.loads(result.output))


def test_the_pages_have_examples() -> None:
    pages = {b.page.name for b in BLOCKS}
    for page in ("targets.md", "requests.md", "data.md", "expect.md", "services.md",
                 "phases.md", "slo.md", "flows.md", "README.md"):
        assert page in pages
    assert len(BLOCKS) > 50


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_scenario is None],
                         ids=lambda b: b.id)
def test_example_validates(block: Block, folder: Path, schema: jsonschema.Draft202012Validator,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    # a variable without a default is one the reader must set: set it, as they would
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block.text):
        monkeypatch.setenv(name, f"example-{name.lower()}")
    doc = scenario_of(block)
    errors = sorted(schema.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, f"{block.id}: the schema refuses it at " \
        f"{'.'.join(map(str, errors[0].absolute_path))}: {errors[0].message[:300]}"
    out = io.StringIO()
    YAML().dump(copy.deepcopy(doc), out)
    path = folder / "example.yaml"
    path.write_text(out.getvalue())
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, f"{block.id}:\n{result.output}\n--- as validated:\n" \
        f"{out.getvalue()}"
    assert result.output.startswith("ok ")


def test_a_broken_example_is_caught(folder: Path) -> None:
    """The check above can fail: a fragment with a typo does not validate."""
    block = Block(ROOT / "docs" / "phases.md", 1, "phases:\n  - {duration: 1s, arival_rate: 2}\n",
                  None, None)
    path = folder / "broken.yaml"
    YAML().dump(scenario_of(block), path)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "arival_rate" in result.output
