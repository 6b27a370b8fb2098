"""Every rule's VALID/INVALID examples from its catalogue file (rules/<CODE>.toml) run as tests:
valid code has no finding of the rule; invalid code has exactly the listed findings; where an
expected output is given, the fix produces it, leaves no finding of the rule, and is idempotent."""

import textwrap

import pytest

from gpufix.apply import fix_source
from gpufix.catalog import load_rule_docs
from gpufix.config import Policy, policy_from_table
from gpufix.engine import lint_source
from gpufix.registry import fixed_together
from gpufix.source import read_source

DEFAULT_POLICY = {"visible-devices": "1"}


def _cases(kind):
    for code, doc in load_rule_docs().items():
        for n, ex in enumerate(getattr(doc, kind), 1):
            yield pytest.param(code, ex, id=f"{code}-{kind}-{n}")


def _policy(example, code=None) -> Policy:
    table = dict(example.get("policy", DEFAULT_POLICY))
    if code:
        table["select"] = [code]  # an example shows one rule: fix only that rule
    return policy_from_table(table, "<example>", root="/nonexistent-root")


def _source(example, text=None):
    code = text if text is not None else example["code"]
    code = textwrap.dedent(code).lstrip("\n")
    return read_source(example.get("path", "example.py"), code.encode("utf-8"))


def _findings(src, policy, code):
    result = lint_source(src, policy)
    assert not result.errors, result.errors
    return [f for f in result.findings if f.rule == code]


def test_every_rule_has_examples():
    docs = load_rule_docs()
    assert docs, "the catalogue is empty"
    for code, doc in docs.items():
        assert doc.valid and doc.invalid, code
        if doc.fix in ("safe", "unsafe", "sometimes"):
            assert any("output" in ex for ex in doc.invalid), f"{code} has a fix but no example of its output"


@pytest.mark.parametrize("code,example", list(_cases("valid")))
def test_valid_example(code, example):
    assert _findings(_source(example), _policy(example), code) == []


@pytest.mark.parametrize("code,example", list(_cases("invalid")))
def test_invalid_example(code, example):
    policy = _policy(example, code)
    src = _source(example)
    found = _findings(src, policy, code)
    assert [[f.line, f.column] for f in found] == example["expect"]
    for f in found:
        assert f.message and f.path == src.path
    if "output" not in example:
        return
    # `unsafe = true`: the example's fix is unsafe (a rule that is sometimes safe): `apply` leaves
    # the file as it is, `apply --unsafe-fixes` writes the output
    unsafe = load_rule_docs()[code].fix == "unsafe" or bool(example.get("unsafe"))
    remap_codes, mask_codes = fixed_together()
    if code in remap_codes:
        # a remap is made only with the header or mask value it is right under (withhold_split_fixes):
        # the example's output shows both
        policy = _policy({**example, "policy": {**example.get("policy", DEFAULT_POLICY),
                                                "select": [code, *sorted(mask_codes)]}})
    if example.get("unsafe"):
        assert [f.fix.applicability for f in found if f.fix] == ["unsafe"] * len(found)
        assert fix_source(src, policy, unsafe=False)[0] == src.text.encode("utf-8")
    fixed, rules = fix_source(src, policy, unsafe=unsafe)
    expected = textwrap.dedent(example["output"]).lstrip("\n")
    assert fixed.decode("utf-8") == expected
    assert code in rules
    # lint(fix(x)) has no finding of that code, and fix(fix(x)) == fix(x)
    again = read_source(src.path, fixed)
    assert _findings(again, policy, code) == []
    assert fix_source(again, policy, unsafe=unsafe)[0] == fixed
