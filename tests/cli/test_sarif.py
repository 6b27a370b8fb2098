"""`--format sarif`: real `gpufix scan` output validated against the official SARIF 2.1.0 schema.

fixtures/schemas/sarif-schema-2.1.0.json is the OASIS SARIF 2.1.0 (errata01, OS) JSON schema, copied
unchanged from github.com/oasis-tcs/sarif-spec, file sarif-2.1/schema/sarif-schema-2.1.0.json
(commit e0583813964ec43cea53b6b531b402866095ed1f).
"""

import ast
import json
from pathlib import Path

import jsonschema
import pytest

from conftest import FIXTURES, ROOT, run_gpufix
from gpufix.catalog import load_rule_docs

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "schemas" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _scan(fmt, *args, cwd=ROOT):
    proc = run_gpufix("scan", "--no-cache", "--format", fmt, *args, cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)  # stdout is the document and nothing else


@pytest.fixture(scope="module")
def superwhisper():
    target = FIXTURES.relative_to(ROOT) / "superwhisper"
    return _scan("sarif", str(target)), _scan("json", str(target))


def test_superwhisper_sarif_is_valid(validator, superwhisper):
    sarif, _ = superwhisper
    errors = sorted(validator.iter_errors(sarif), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    assert sarif["version"] == "2.1.0" and len(sarif["runs"]) == 1


def test_driver_lists_the_catalogue(superwhisper):
    run = superwhisper[0]["runs"][0]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("gpufix", "0.1.0")
    assert driver["informationUri"].startswith("https://")
    docs = load_rule_docs()
    assert [r["id"] for r in driver["rules"]] == list(docs)
    for rule in driver["rules"]:
        doc = docs[rule["id"]]
        assert rule["name"] == doc.name
        assert rule["shortDescription"]["text"] == doc.summary
        assert rule["fullDescription"]["text"]
        assert rule["help"] == {"text": doc.markdown(), "markdown": doc.markdown()}
        assert rule["defaultConfiguration"]["level"] == doc.severity
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["invocations"] == [{"executionSuccessful": True, "toolExecutionNotifications": []}]


def test_results_match_the_json_report(superwhisper):
    sarif, report = superwhisper
    run = sarif["runs"][0]
    results = run["results"]
    findings = report["findings"]
    assert len(results) == len(findings) == report["summary"]["findings"] == 68
    rules = run["tool"]["driver"]["rules"]
    for r, f in zip(results, findings):
        assert r["ruleId"] == f["rule"]
        assert rules[r["ruleIndex"]]["id"] == f["rule"]
        assert r["level"] == f["severity"]
        assert r["message"]["text"] == f["message"]
        (loc,) = r["locations"]
        assert loc["physicalLocation"]["artifactLocation"] == {"uri": f["path"], "uriBaseId": "%SRCROOT%"}
        assert loc["physicalLocation"]["region"] == {
            "startLine": f["line"], "startColumn": f["column"], "endLine": f["end_line"], "endColumn": f["end_column"]}
    assert {r["level"] for r in results} == {"error", "warning"}


def test_fixes_are_real_replacements(superwhisper):
    sarif, report = superwhisper
    fixed = 0
    for r, f in zip(sarif["runs"][0]["results"], report["findings"]):
        if f["fix"] is None:
            assert "fixes" not in r
            continue
        (fix,) = r["fixes"]
        assert fix["description"]["text"] == f["fix"]["title"]
        (change,) = fix["artifactChanges"]
        assert change["artifactLocation"]["uri"] == f["path"]
        (rep,) = change["replacements"]
        text = (ROOT / f["path"]).read_text(encoding="utf-8")
        start, length = rep["deletedRegion"]["charOffset"], rep["deletedRegion"]["charLength"]
        new = text[:start] + rep["insertedContent"]["text"] + text[start + length:]
        ast.parse(new)  # the fixed file still parses
        assert new != text
        fixed += 1
        if f["rule"] == "GPU001" and '"cuda:1"' in f["message"]:
            # the replacement rewrites exactly the flagged literal
            line = new.splitlines()[f["line"] - 1]
            assert line[f["column"] - 1:f["end_column"] - 1] == '"cuda:0"'
    assert fixed == report["summary"]["fixable"] + report["summary"]["unsafe_fixable"]


def test_notebook_findings_and_file_errors(tmp_path, validator):
    (tmp_path / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n')
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# title"]},
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": [
                "import os\n", 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n',
                'os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n', "import torch\n"]},
            {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": ['t = torch.ones(2).to("cuda:1")\n']},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    (tmp_path / "my notebook.ipynb").write_text(json.dumps(nb))
    (tmp_path / "broken.py").write_text("import torch\ndef broken(:\n    pass\n")
    sarif = _scan("sarif", ".", cwd=tmp_path)
    report = _scan("json", ".", cwd=tmp_path)
    assert not list(validator.iter_errors(sarif))
    run = sarif["runs"][0]
    (result,) = run["results"]
    (finding,) = report["findings"]
    assert finding["cell"] == 3
    assert result["message"]["text"] == f"cell 3, line 1, col {finding['column']}: {finding['message']}"
    assert result["properties"]["cell"] == 3 and result["properties"]["line"] == 1
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "my%20notebook.ipynb"
    # line 1 of the cell is not line 1 of the .ipynb file: no region that would point there
    assert "region" not in loc
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is True
    (note,) = invocation["toolExecutionNotifications"]
    (error,) = report["errors"]
    assert note["level"] == "error"
    assert note["descriptor"]["id"] == error["kind"] == "syntax-error"
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "broken.py"
    assert note["locations"][0]["physicalLocation"]["region"] == {"startLine": error["line"]}
    assert error["message"] in note["message"]["text"]
