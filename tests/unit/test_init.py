"""`gpufix init`: only the keys init sets change; the rest of the file is kept byte for byte."""

import codecs

import pytest
from click.testing import CliRunner

from gpufix.config import load_policy
from gpufix.hardware.commands import init_command
from gpufix.hardware.model import ProbeUnavailable
from gpufix.hardware.testing import UUID_3090, UUID_5060, FakeProbe

PROBE = {"probe": None}

TABLE_3090 = (
    '[tool.gpufix]\n'
    'visible-devices = "1"\n'
    'device-order = "PCI_BUS_ID"\n'
    'min-memory-gib = 23  # NVML total of the NVIDIA GeForce RTX 3090 (24.00 GiB) in whole GiB less a 1 GiB margin; '
    'gpufix check compares NVML\'s total too\n'
    'expect-name = "NVIDIA GeForce RTX 3090"\n'
    f'expect-uuid = "{UUID_3090}"\n'
)


def make_probe():
    return PROBE["probe"]


@pytest.fixture
def init(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUFIX_PROBE", f"{__name__}:make_probe")
    PROBE["probe"] = FakeProbe()

    def invoke(*args, probe=None):
        if probe is not None:
            PROBE["probe"] = probe
        return CliRunner().invoke(init_command, list(args))

    return invoke


def test_flags_into_existing_pyproject_keep_the_rest(init, tmp_path):
    before = b'[project]\nname = "demo"  # keep   this\n\n[tool.ruff]\nline-length = 100\n'
    (tmp_path / "pyproject.toml").write_bytes(before)
    res = init("--visible-devices", "1", "--min-memory-gib", "20", "--expect-name", "RTX 3090")
    assert res.exit_code == 0, res.stderr
    table = b'[tool.gpufix]\nvisible-devices = "1"\ndevice-order = "PCI_BUS_ID"\nmin-memory-gib = 20\nexpect-name = "RTX 3090"\n'
    assert (tmp_path / "pyproject.toml").read_bytes() == before + b"\n" + table
    assert res.stdout == table.decode()
    policy = load_policy(["."])
    assert (policy.visible_devices, policy.min_memory_gib, policy.expect_name) == ("1", 20.0, "RTX 3090")


def test_crlf_file_keeps_crlf_and_a_missing_final_newline_is_added(init, tmp_path):
    before = b'[project]\r\nname = "demo"\r\n\r\n[tool.black]\r\nline-length = 88'
    (tmp_path / "pyproject.toml").write_bytes(before)
    res = init("--visible-devices", "GPU-3b9e2d4f", "--device-order", "PCI_BUS_ID")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "pyproject.toml").read_bytes() == before + (
        b'\r\n\r\n[tool.gpufix]\r\nvisible-devices = "GPU-3b9e2d4f"\r\ndevice-order = "PCI_BUS_ID"\r\n')


def test_bom_is_kept(init, tmp_path):
    before = codecs.BOM_UTF8 + b'[project]\nname = "d\xc3\xa9mo"\n'
    (tmp_path / "pyproject.toml").write_bytes(before)
    assert init("--visible-devices", "0").exit_code == 0
    assert (tmp_path / "pyproject.toml").read_bytes() == (
        before + b'\n[tool.gpufix]\nvisible-devices = "0"\ndevice-order = "PCI_BUS_ID"\n')


def test_new_file_is_created(init, tmp_path):
    res = init("--path", "sub.toml", "--visible-devices", "1", "--min-memory-gib", "12.5")
    assert res.exit_code == 0
    # a file other than pyproject.toml is a gpufix.toml: keys at the top level, as --config reads it
    assert (tmp_path / "sub.toml").read_bytes() == (
        b'visible-devices = "1"\ndevice-order = "PCI_BUS_ID"\nmin-memory-gib = 12.5\n')
    assert load_policy(["."], config_file="sub.toml").min_memory_gib == 12.5


def test_refuses_when_the_table_exists(init, tmp_path):
    before = b'[project]\nname = "demo"\n\n[tool.gpufix]\nvisible-devices = "0"\n'
    (tmp_path / "pyproject.toml").write_bytes(before)
    res = init("--visible-devices", "1")
    assert res.exit_code == 2
    assert "the policy already sets visible-devices = '0'; pass --force to replace that value" in res.stderr
    assert (tmp_path / "pyproject.toml").read_bytes() == before


def test_force_replaces_values_and_keeps_every_other_key_table_and_comment(init, tmp_path):
    head = b'# top comment\n[project]\nname = "demo"\n\n'
    old = (b'[tool.gpufix]   # old policy\nvisible-devices = "0"\nselect = [\n  "GPU",\n]\n# a note\n\n'
           b'[[tool.gpufix.api]]\nname = "utils.gpu.pick"\n')
    tail = b'\n# about ruff\n[tool.ruff]\nline-length = 100\n'
    (tmp_path / "pyproject.toml").write_bytes(head + old + tail)
    res = init("--visible-devices", "1", "--expect-name", "3090", "--force")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "pyproject.toml").read_bytes() == head + (
        b'[tool.gpufix]   # old policy\nvisible-devices = "1"\nselect = [\n  "GPU",\n]\n'
        b'device-order = "PCI_BUS_ID"\nexpect-name = "3090"\n# a note\n\n'
        b'[[tool.gpufix.api]]\nname = "utils.gpu.pick"\n') + tail
    assert "set visible-devices, device-order, expect-name in [tool.gpufix] of pyproject.toml" in res.stderr
    assert "other keys kept" in res.stderr


def test_force_edits_a_dotted_key_policy_in_place(init, tmp_path):
    (tmp_path / "pyproject.toml").write_bytes(b'[tool]\ngpufix.visible-devices = "0"\n')
    res = init("--visible-devices", "1", "--force")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "pyproject.toml").read_bytes() == (
        b'[tool]\ngpufix.visible-devices = "1"\ngpufix.device-order = "PCI_BUS_ID"\n')


def test_bad_flag_value_writes_nothing(init, tmp_path):
    res = init("--visible-devices", "one")
    assert res.exit_code == 2 and "visible-devices" in res.stderr
    assert not (tmp_path / "pyproject.toml").exists()


@pytest.mark.parametrize("selector", ["3090", "rtx 3090", UUID_3090, "GPU-3b9e", "01:00.0", "00000000:01:00.0"])
def test_gpu_from_nvml_by_name_uuid_or_bus_id(init, tmp_path, selector):
    res = init("--gpu", selector)
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "pyproject.toml").read_bytes() == TABLE_3090.encode()
    assert "GPU 1 (PCI order 1): NVIDIA GeForce RTX 3090" in res.stdout and "<- pinned" in res.stdout


def test_gpu_flags_override_what_nvml_gives(init, tmp_path):
    res = init("--gpu", "5060", "--min-memory-gib", "8")
    assert res.exit_code == 0
    text = (tmp_path / "pyproject.toml").read_text()
    assert 'visible-devices = "0"\n' in text and "min-memory-gib = 8\n" in text
    assert f'expect-uuid = "{UUID_5060}"\n' in text and 'expect-name = "NVIDIA GeForce RTX 5060 Ti"\n' in text


def test_gpu_under_fastest_first_pins_the_uuid(init, tmp_path):
    assert init("--gpu", "3090", "--device-order", "FASTEST_FIRST").exit_code == 0
    assert f'visible-devices = "{UUID_3090}"\n' in (tmp_path / "pyproject.toml").read_text()


@pytest.mark.parametrize("selector,word", [("RTX", "ambiguous"), ("A100", "matches no GPU"),
                                           ("07:00.0", "matches no GPU")])
def test_ambiguous_or_unmatched_gpu_lists_the_gpus(init, tmp_path, selector, word):
    res = init("--gpu", selector)
    assert res.exit_code == 2 and word in res.stderr
    assert f"NVIDIA GeForce RTX 5060 Ti  {UUID_5060}  00000000:00:00.0" in res.stderr
    assert f"NVIDIA GeForce RTX 3090  {UUID_3090}  00000000:01:00.0" in res.stderr
    assert not (tmp_path / "pyproject.toml").exists()


def test_no_flags_two_gpus_asks_for_gpu(init, tmp_path):
    res = init()
    assert res.exit_code == 2 and "NVML sees 2 GPUs; choose the policy GPU with --gpu" in res.stderr
    assert not (tmp_path / "pyproject.toml").exists()


def test_no_flags_and_no_nvml_says_which_flags_to_pass(init, tmp_path):
    res = init(probe=FakeProbe(ProbeUnavailable("no NVIDIA driver: the NVML library was not found")))
    assert res.exit_code == 2
    assert "no NVIDIA driver" in res.stderr and "pass --visible-devices VALUE" in res.stderr
    assert "--min-memory-gib" in res.stderr and "--expect-name" in res.stderr
    res = init("--gpu", "3090")
    assert res.exit_code == 2 and "--gpu needs the NVML inventory" in res.stderr
    assert not (tmp_path / "pyproject.toml").exists()


def test_real_probe_without_a_driver_asks_for_flags(tmp_path, monkeypatch):
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPUFIX_PROBE", raising=False)
    res = CliRunner().invoke(init_command, [])
    assert res.exit_code == 2 and "no NVIDIA driver" in res.stderr and "--visible-devices" in res.stderr
    assert not (tmp_path / "pyproject.toml").exists()
