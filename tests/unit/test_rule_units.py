"""Rules are units: one module per code, found by discovery (gpufix.registry), checked against the catalogue when
they load (every entry has a rule, every rule an entry, message variants and placeholders agree)."""

import sys
import textwrap

import pytest

from gpufix.catalog import load_rule_docs
from gpufix.registry import discover_rules
from gpufix.registry import rules as load_rules
from gpufix.rules import ProjectRule, Rule, verify


def test_every_catalogue_entry_has_exactly_one_rule_module():
    rules = load_rules()
    assert list(rules) == sorted(load_rule_docs())
    for code, rule in rules.items():
        assert rule.code == code
        assert type(rule).__module__.startswith(f"gpufix.rules.{code.lower()}_")


def test_gpu103_is_a_project_rule():
    assert isinstance(load_rules()["GPU103"], ProjectRule)


def _fake_package(tmp_path, modules: dict):
    pkg = tmp_path / "fakerules"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in modules.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        return importlib.import_module("fakerules")
    finally:
        sys.path.remove(str(tmp_path))


def test_discovery_finds_rule_classes_in_modules(tmp_path):
    pkg = _fake_package(tmp_path, {"gpu001_x": """
        from gpufix.rules import Rule
        class X(Rule):
            code = "GPU001"
        """, "_helpers": "HELPER = 1\n"})
    found = discover_rules(pkg)
    assert list(found) == ["GPU001"] and type(found["GPU001"]).__name__ == "X"
    sys.modules.pop("fakerules", None)
    sys.modules.pop("fakerules.gpu001_x", None)


def test_two_rules_with_one_code_are_refused(tmp_path):
    pkg = _fake_package(tmp_path, {"a": """
        from gpufix.rules import Rule
        class A(Rule):
            code = "GPU001"
        class B(Rule):
            code = "GPU001"
        """})
    with pytest.raises(RuntimeError, match="two rules claim GPU001"):
        discover_rules(pkg)
    sys.modules.pop("fakerules", None)
    sys.modules.pop("fakerules.a", None)


class _Rule(Rule):
    code = "GPU001"
    messages = {"remap": ("what", "physical", "mask", "new_index", "new"),
                "remap-withheld": ("what", "physical", "mask", "new_index", "new"),
                "shadowed": ("what", "name"),
                "remap-by-hand": ("what", "physical", "mask", "new_index", "new", "reason"),
                "hidden": ("what", "physical", "mask"),
                "unknown": ("what", "mask", "count", "reason"),
                "no-policy": ("what", "mask", "count", "visible")}


def test_verify_accepts_the_real_pairing():
    verify(load_rules(), load_rule_docs())
    verify({"GPU001": _Rule()}, {"GPU001": load_rule_docs()["GPU001"]})


def test_verify_names_a_missing_rule_and_a_missing_entry():
    docs = load_rule_docs()
    with pytest.raises(RuntimeError) as err:
        verify({"GPU001": _Rule()}, {"GPU002": docs["GPU002"]})
    assert "GPU002: catalogue entry rules/GPU002.toml has no rule module" in str(err.value)
    assert "GPU001: rule _Rule has no catalogue entry rules/GPU001.toml" in str(err.value)


def test_verify_names_placeholder_and_variant_drift():
    class Drifted(_Rule):
        messages = {**_Rule.messages, "remap": ("what", "physical", "mask", "new"), "extra": ()}

    del Drifted.messages["hidden"]
    with pytest.raises(RuntimeError) as err:
        verify({"GPU001": Drifted()}, {"GPU001": load_rule_docs()["GPU001"]})
    text = str(err.value)
    assert ("GPU001: message 'remap' has placeholders ['mask', 'new', 'new_index', 'physical', 'what'] in "
            "rules/GPU001.toml, but the rule fills ['mask', 'new', 'physical', 'what']") in text
    assert "GPU001: the rule uses message 'extra', which rules/GPU001.toml lacks" in text
    assert "GPU001: rules/GPU001.toml has message 'hidden', which the rule never uses" in text


def test_gpu103_fix_that_shrinks_the_mask_is_unsafe():
    """"0,1" -> "1" leaves code written for two GPUs on one: only --unsafe-fixes rewrites it."""
    from gpufix.apply import fix_source
    from gpufix.config import policy_from_table
    from gpufix.engine import lint_source
    from gpufix.source import read_source

    text = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0,1"\nimport torch\n'
    policy = policy_from_table({"visible-devices": "1"}, "<test>", root="/nonexistent-root")
    src = read_source("app.py", text.encode())
    (finding,) = [f for f in lint_source(src, policy).findings if f.rule == "GPU103"]
    assert finding.fix.applicability == "unsafe"
    assert fix_source(src, policy, unsafe=False)[0] == text.encode()
    fixed = fix_source(src, policy, unsafe=True)[0].decode()
    assert fixed == text.replace('"0,1"', '"1"')
    one = read_source("app.py", text.replace('"0,1"', '"0"').encode())
    (same_count,) = [f for f in lint_source(one, policy).findings if f.rule == "GPU103"]
    assert same_count.fix.applicability == "safe"


def test_edit_kinds_and_applicability_are_declared_once():
    """A fix's applicability is the enum (JSON keeps the plain value); an edit names a registered
    kind, whose isolation group decides which fixes share a pass."""
    import json

    import pytest as _pytest

    from gpufix.apply import _choose_edits
    from gpufix.model import EDIT_KINDS, Applicability, Edit, Finding, Fix

    fix = Fix("unsafe", "t", (Edit("replace", 1, 0, "x"),))
    assert fix.applicability is Applicability.UNSAFE and json.dumps(fix.to_json()) == '{"applicability": "unsafe", "title": "t"}'
    with _pytest.raises(ValueError, match="unknown edit kind 'rename'"):
        Edit("rename", 1, 0)
    assert {k for k, v in EDIT_KINDS.items() if v.isolation == "header"} == {"ensure-header", "move-to-header"}

    def finding(rule, *edits):
        return Finding(rule, "x.py", 1, 1, 1, 1, "m", fix=Fix("safe", "t", edits))

    remap = finding("GPU001", Edit("replace", 5, 0, "0"))
    header = finding("GPU101", Edit("ensure-header", lines=(("CUDA_VISIBLE_DEVICES", "1"),)))
    before = finding("GPU102", Edit("insert", 3, 0, "x = 1"))
    edits, rules = _choose_edits([before, remap, header], unsafe=False)
    assert rules == ["GPU001", "GPU101"]  # the header (scheduled) group goes first; the insertion waits a pass
    edits, rules = _choose_edits([before, remap], unsafe=False)
    assert rules == ["GPU001", "GPU102"]
