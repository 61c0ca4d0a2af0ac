"""docs/ is the user's complete reference: every key of the format, of every bundled
plugin and service, and every command-line option is on its page (with its default
where the page shows defaults), the index links every page, and no link is broken."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from llmscen.cli import exitcodes
from llmscen.cli.main import cli
from llmscen.cli.reference import generated_part, render
from llmscen.engine.registry import Registry
from llmscen.spec import expect, models
from llmscen.spec.units import parse_duration, parse_percent

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ROW = re.compile(r"^\|\s*`([^`]+)`(?:\s*(?:,|or)\s*`([^`]+)`)*\s*\|(.*)$", re.M)


def section(page: str, heading: str) -> str:
    """The text under `heading` (a line starting with #) up to the next heading of its level."""
    text = (DOCS / page).read_text()
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert m, f"{page} has no heading {heading!r}"
    level = len(m.group(1))
    rest = text[m.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[:end.start()] if end else rest


def rows(text: str) -> dict[str, list[str]]:
    """First-column keys of the tables in `text` → the row's other cells."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        for key in re.findall(r"`([^`]+)`", cells[0]):
            out[key] = cells[1:]
    return out


def key_of(name: str, field: Any) -> str:
    return field.alias or name


def shown(cell: str, default: Any) -> bool:
    """Does a table's default cell say `default`?"""
    cell = cell.strip().strip("`")
    if default is None:
        return cell.startswith("none") or cell in ("null", "—")
    if isinstance(default, bool):
        return cell == str(default).lower()
    if isinstance(default, (int, float)):
        for parse in (float, parse_duration, parse_percent):
            try:
                if abs(parse(cell) - default) < 1e-12:
                    return True
            except ValueError:
                continue
        return False
    if default in ({}, [], ()):
        return cell in ("{}", "[]")
    if isinstance(default, str):
        return cell in (default, f'"{default}"') or (default == "" and cell == '""')
    return cell == str(default)


def assert_table(page: str, heading: str, model: type[BaseModel], *, defaults: bool = True,
                 skip: tuple[str, ...] = ()) -> None:
    table = rows(section(page, heading))
    for name, field in model.model_fields.items():
        key = key_of(name, field)
        assert key in table, f"{page} § {heading}: no row for `{key}` of {model.__name__}"
        if not defaults or key in skip:   # skip: a default the page says in words
            continue
        cell = table[key][0]
        if field.is_required():
            assert cell.startswith("required"), f"{page} § {heading}: `{key}` is required"
            continue
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        assert default is not PydanticUndefined
        assert shown(cell, default), \
            f"{page} § {heading}: `{key}` defaults to {default!r}, the page says {cell!r}"


REGISTRY = Registry.discover()


def plugin(name: str) -> Any:
    return REGISTRY.plugins[name].obj


@pytest.mark.parametrize("name", ["openai", "triton", "http"])
def test_targets_lists_every_target_key_with_its_default(name: str) -> None:
    assert_table("targets.md", f"`{name}`", plugin(name).target_options)


def test_targets_lists_vllms_own_keys_and_the_common_ones() -> None:
    openai = set(plugin("openai").target_options.model_fields)
    vllm = plugin("vllm").target_options
    table = rows(section("targets.md", "`vllm`"))
    assert set(vllm.model_fields) - openai <= set(table)
    assert_table("targets.md", "Keys of every target", models.TargetSpec, defaults=False)


def test_every_builtin_plugin_has_a_section() -> None:
    for name in ("openai", "vllm", "triton", "http"):
        assert name in REGISTRY.plugins
        section("targets.md", f"`{name}`")


@pytest.mark.parametrize("name,heading,page", [
    ("openai", "`openai` and `vllm`", "requests.md"),
    ("triton", "`triton`", "requests.md"),
    ("http", "The `http` plugin", "flows.md"),
])
def test_every_request_key_of_every_plugin_is_documented(name: str, heading: str,
                                                         page: str) -> None:
    assert_table(page, heading, plugin(name).request_options, defaults=False)


def test_requests_lists_every_common_key() -> None:
    assert_table("requests.md", "Keys of every request", models.RequestSpec, skip=("timeout",))


def test_data_lists_every_key() -> None:
    assert_table("data.md", "Data: rows that requests take", models.DataSpec, skip=("format",))
    orders = rows(section("data.md", "Order"))
    assert set(orders) == {"sequential", "random", "once"}


def test_services_lists_every_key_and_every_triton_sim_option() -> None:
    keys = rows(section("services.md", "Keys"))
    for name, field in models.ServiceSpec.model_fields.items():
        assert key_of(name, field) in keys, name
    assert_table("services.md", "`triton-sim`", REGISTRY.services["triton-sim"].obj.options)


def test_simulators_lists_every_openai_sim_option() -> None:
    assert_table("simulators.md", "Options", REGISTRY.services["openai-sim"].obj.options)


@pytest.mark.parametrize("model,heading", [
    (expect.Expect, "Every key"),
    (expect.ErrorExpect, "Expecting an error"),
])
def test_expect_lists_every_key(model: type[BaseModel], heading: str) -> None:
    assert_table("expect.md", heading, model, defaults=False)


def test_expect_lists_every_tensor_check() -> None:
    table = section("expect.md", "Tensors")
    for name in expect.TensorExpect.model_fields:
        assert f"`{name}`" in table, name
    similar = rows(table)["similar_to"][0]
    for name in expect.Similarity.model_fields:
        assert re.search(rf"\b{name}\b", similar), name


def test_scenario_files_lists_every_top_level_key() -> None:
    assert_table("scenario-files.md", "Top-level keys", models.Scenario,
                 skip=("name", "run", "metrics"))


def test_phases_names_every_search_key() -> None:
    text = section("phases.md", "Finding the limit: `search`")
    for name in models.SearchSpec.model_fields:
        assert re.search(rf"\b{name}\b", text), name


# --- the command line --------------------------------------------------------------------

def test_the_cli_page_is_generated_from_the_commands() -> None:
    page = (DOCS / "cli.md").read_text()
    assert generated_part(page) == render(cli), \
        "docs/cli.md is out of date: run `python -m llmscen.cli.reference`"


def test_the_cli_page_lists_every_command_and_flag() -> None:
    import click

    page = (DOCS / "cli.md").read_text()
    for name, command in cli.commands.items():
        assert f"## `llmscen {name}`" in page
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in param.opts:
                    assert re.search(rf"`[^`]*{re.escape(flag)}\b", page), f"{name} {flag}"


def test_the_exit_codes_on_the_cli_page_are_the_codes() -> None:
    page = (DOCS / "cli.md").read_text()
    table = {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", page, re.M)}
    assert table == {exitcodes.OK, exitcodes.ASSERTIONS_FAILED, exitcodes.INVALID_INPUT,
                     exitcodes.COULD_NOT_RUN, exitcodes.INVALID_MEASUREMENT,
                     exitcodes.INTERNAL_ERROR}


# --- links -----------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_the_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"
    assert "](docs/README.md)" in (ROOT / "README.md").read_text()


def test_no_link_in_the_docs_is_broken() -> None:
    broken = []
    for page in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
