"""docs/check-report.schema.json against real `gpufix check --format json` output, and docs/check.md
against the schema."""

import json
import re

import pytest
from click.testing import CliRunner

from conftest import ROOT, run_gpufix
from gpufix.hardware.commands import check_command

jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("torch")

import realstack  # noqa: E402

SCHEMA = json.loads((ROOT / "docs" / "check-report.schema.json").read_text(encoding="utf-8"))
DOC = (ROOT / "docs" / "check.md").read_text(encoding="utf-8")
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def current_probe():
    return realstack.RealStackProbe(realstack.CURRENT)


def _lost_gpu0():
    m = realstack.user_machine()
    m.gpus[0].nvml_errors = {"nvmlDeviceGetHandleByIndex": realstack.NO_PERMISSION}
    return m


CASES = {
    "pass": (realstack.user_machine, ["--visible-devices", "1"], 0),
    "fail-memory": (realstack.user_machine, ["--visible-devices", "0"], 1),
    "unavailable-index": (realstack.user_machine, ["--visible-devices", "5"], 3),
    "gb10-memory-na": (realstack.dgx_spark, ["--visible-devices", "0"], 0),
    "inaccessible-gpu": (_lost_gpu0, ["--visible-devices", "0"], 0),
    "mig": (lambda: realstack.a100_80gb(mig=True), ["--visible-devices", "MIG-bbbb"], 0),
    "driver-too-old": (lambda: realstack.a100_80gb(driver="470.256.02", driver_cuda=11040),
                       ["--visible-devices", "0"], 1),
    "torch-without-uuid": (lambda: realstack.user_machine(torch_has_uuid=False), ["--visible-devices", "1"], 0),
    "cpu-only-torch": (lambda: realstack.user_machine(torch_cuda=None), ["--visible-devices", "1"], 3),
    "orin-no-kernel": (realstack.jetson_orin, ["--visible-devices", "0"], 1),
    "no-nvml": (lambda: realstack.Machine(gpus=[], nvml_library=False), ["--visible-devices", "0"], 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_reports_validate(case, tmp_path, monkeypatch):
    machine, args, code = CASES[case]
    monkeypatch.setattr(realstack, "CURRENT", machine(), raising=False)
    monkeypatch.setenv("GPUFIX_PROBE", f"{__name__}:current_probe")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.gpufix]\nmin-memory-gib = 20\n', encoding="utf-8")
    res = CliRunner().invoke(check_command, [*args, "--format", "json", "-q"])
    assert res.exit_code == code, res.stdout
    report = json.loads(res.stdout)
    errors = sorted(VALIDATOR.iter_errors(report), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert report["status"] == {0: "pass", 1: "fail", 3: "unavailable"}[code]


def test_the_real_probe_on_this_machine_validates(tmp_path):
    # no GPU here: the real NVML / torch path gives an `unavailable` report, which must validate too
    res = run_gpufix("check", "--visible-devices", "1", "--format", "json", "-q", cwd=tmp_path)
    report = json.loads(res.stdout)
    assert res.returncode == {"pass": 0, "fail": 1, "unavailable": 3}[report["status"]]
    assert not list(VALIDATOR.iter_errors(report))


def test_the_schema_is_a_schema_and_rejects_drift():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    good = _report()
    assert not list(VALIDATOR.iter_errors(good))
    for broken in (dict(good, status="ok"), {k: v for k, v in good.items() if k != "cuda"},
                   dict(good, extra=1), dict(good, gpus=[dict(good["gpus"][0], state="gone")])):
        assert list(VALIDATOR.iter_errors(broken))


def _report():
    from gpufix.config import Policy
    from gpufix.hardware.checks import collect
    from gpufix.hardware.render import report_json

    return json.loads(json.dumps(report_json(collect(Policy(visible_devices="1"),
                                                      realstack.RealStackProbe(realstack.user_machine()), 30)),
                                 default=str))


def test_the_doc_describes_every_field_and_check():
    for key in SCHEMA["properties"]:
        assert f"`{key}`" in DOC, key
    for section in ("gpu", "cuda", "mask"):
        for key in SCHEMA["$defs"][section]["properties"]:
            assert f"`{key}`" in DOC, (section, key)
    for name in SCHEMA["$defs"]["check"]["properties"]["name"]["enum"]:
        assert re.search(rf"^\| `{re.escape(name)}` \|", DOC, re.M), name


@pytest.mark.parametrize("mask,code", [("1", 0), ("0", 1), ("5", 3)])  # "0": 15.93 GiB < the default 20
def test_the_first_doubles_reports_validate(mask, code, tmp_path):
    res = run_gpufix("check", "--visible-devices", mask, "--format", "json", "-q", cwd=tmp_path,
                     env={"GPUFIX_PROBE": "gpufix.hardware.testing:user_machine"})
    assert res.returncode == code, res.stderr
    assert not list(VALIDATOR.iter_errors(json.loads(res.stdout)))
