"""docs/plugins.md lists every rule and test of the contract suite, by the names its
failure messages use, so a plugin author can look a failure up."""

from __future__ import annotations

from pathlib import Path

from llmscen.testing.contract import RunnerContract, violations

DOC = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()


def rules_section() -> str:
    return DOC.split("### Contract rules", 1)[1].split("\n## ", 1)[0]


def test_every_rule_is_in_the_table():
    rules = [v for k, v in vars(violations).items() if k.isupper() and isinstance(v, str)
             and not k.startswith("_")]
    assert len(rules) >= 15
    table = rules_section()
    missing = [rule for rule in rules if f"| {rule} |" not in table]
    assert not missing, f"rules missing from docs/plugins.md: {missing}"


def test_every_contract_test_is_named():
    tests = sorted(name for name in dir(RunnerContract) if name.startswith("test_"))
    table = rules_section()
    table = table.replace("`test_*_options_forbid_unknown_keys`",
                          "`test_target_options_forbid_unknown_keys` "
                          "`test_request_options_forbid_unknown_keys`")
    missing = [name for name in tests if f"`{name}`" not in table]
    assert not missing, f"contract tests missing from docs/plugins.md: {missing}"


def test_the_entry_point_group_is_the_registrys():
    from llmscen.engine.registry import PLUGIN_GROUP

    assert f'[project.entry-points."{PLUGIN_GROUP}"]' in DOC
