"""docs/rules.md, `gpufix rules` and `gpufix explain` all come from the rule catalogue (rules/*.toml);
these tests fail when the generated page drifts from it (fix: python scripts/gen_rules_doc.py)."""

import importlib.util
import json
import subprocess
import sys
import textwrap

from conftest import ROOT, run_gpufix
from gpufix.catalog import load_rule_docs

SCRIPT = ROOT / "scripts" / "gen_rules_doc.py"
DOC = ROOT / "docs" / "rules.md"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_rules_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rules_doc_is_up_to_date():
    expected = _generator().render(load_rule_docs())
    assert DOC.read_text(encoding="utf-8") == expected, "docs/rules.md is out of date: run python scripts/gen_rules_doc.py"


def test_readme_rule_table_is_generated_from_the_catalogue():
    gen = _generator()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == gen.update_readme(readme, load_rule_docs()), "README rule table is out of date: run python scripts/gen_rules_doc.py"
    table = readme.split(gen.TABLE_START, 1)[1].split(gen.TABLE_END, 1)[0]
    listed = [line.split("[", 1)[1].split("]", 1)[0] for line in table.splitlines() if line.startswith("| [")]
    assert listed == list(load_rule_docs())


def test_generator_check_mode(tmp_path):
    ok = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "rules.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("GPU001", "GPU00X", 1), encoding="utf-8")
    drift = subprocess.run([sys.executable, str(SCRIPT), "--check", "--output", str(stale)], capture_output=True, text=True)
    assert drift.returncode == 1 and "out of date" in drift.stderr


def test_every_rule_is_documented_with_its_sections_and_examples():
    text = DOC.read_text(encoding="utf-8")
    for code, doc in load_rule_docs().items():
        heading = f"## {code} {doc.name}\n"
        assert heading in text, code
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for title in ("### What it does", "### Why is this bad?", "### Example", "### Fix safety", "### Examples"):
            assert title + "\n" in section, (code, title)
        assert doc.what_it_does.strip() in section
        assert doc.fix_safety.strip() in section
        for ex in doc.valid + doc.invalid:
            assert textwrap.dedent(ex["code"]).strip("\n") in section, (code, ex["code"])
            if "output" in ex:
                assert textwrap.dedent(ex["output"]).strip("\n") in section, (code, ex["output"])
        if doc.valid:
            assert "#### Valid" in section
        if doc.invalid:
            assert "#### Invalid" in section
        assert f"| [{code}](#{code.lower()}-{doc.name}) |" in text  # the index table links the section


def test_gpufix_rules_lists_every_catalogue_code():
    docs = load_rule_docs()
    text = run_gpufix("rules")
    assert text.returncode == 0, text.stderr
    listed = [line.split()[0] for line in text.stdout.splitlines() if line.strip()]
    assert listed == list(docs)
    as_json = run_gpufix("rules", "--format", "json")
    assert [r["code"] for r in json.loads(as_json.stdout)] == list(docs)
    for r in json.loads(as_json.stdout):
        d = docs[r["code"]]
        assert (r["name"], r["severity"], r["fix"], r["summary"]) == (d.name, d.severity, d.fix, d.summary)


def test_explain_prints_the_catalogue_doc():
    for code, doc in load_rule_docs().items():
        out = run_gpufix("explain", code.lower())
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == doc.markdown().strip()
    unknown = run_gpufix("explain", "GPU999")
    assert unknown.returncode == 2 and "unknown rule" in unknown.stderr


def test_the_parsed_catalogue_is_up_to_date():
    """rules/catalogue.json (what a run reads instead of parsing the TOML) holds every catalogue
    file as it parses now (fix: python scripts/gen_catalogue.py)."""
    spec = importlib.util.spec_from_file_location("gen_catalogue", ROOT / "scripts" / "gen_catalogue.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "rules" / "catalogue.json").read_text(encoding="utf-8") == gen.render(), \
        "rules/catalogue.json is out of date: run python scripts/gen_catalogue.py"
