"""The first user's own workflow (seed 004: SuperWhisper V6 on Windows, PowerShell and batch
launchers, CRLF files, a VS Code launch.json) as a project, scanned and applied end to end: the
findings before, the bytes of the launchers after, the one finding left on purpose (a benchmark's
argparse default that two launchers override), and nothing left once the launchers are changed."""

from __future__ import annotations

import json
from collections import Counter

from conftest import init_git_repo, run_gpufix

HDR_OK = "import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '1'\nos.environ['CUDA_DEVICE_ORDER'] = 'PCI_BUS_ID'\nimport torch\n"
HDR_NO_ORDER = "import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '1'\nimport torch\n"
HDR_ZERO = "import os\nos.environ['CUDA_VISIBLE_DEVICES'] = '0'\nos.environ['CUDA_DEVICE_ORDER'] = 'PCI_BUS_ID'\nimport torch\n"
NONE = "import torch\n"
MAIN = "\n\nif __name__ == '__main__':\n    main()\n"
FILES = {
  # modules core (manque variables)
  "benchmarks/benchmark_stt_realistic.py": NONE + "import argparse\n\ndef main():\n    p = argparse.ArgumentParser()\n    p.add_argument('--gpu', type=int, default=1)\n    a = p.parse_args()\n    torch.cuda.set_device(a.gpu)\n" + MAIN,
  "LLM/llm_manager_enhanced.py": NONE + "\nclass LLMManager:\n    def load(self):\n        return torch.zeros(1).cuda()\n",
  "LUXA_TTS/tts_handler_coqui.py": HDR_NO_ORDER + "\ndef main():\n    return torch.zeros(1, device='cuda:0')\n" + MAIN,
  "Orchestrator/fallback_manager.py": NONE + "\ndef pick():\n    return torch.device('cuda:0')\n",
  "STT/vad_manager_optimized.py": NONE + "\ndef main():\n    dev = torch.device('cuda:1')\n    torch.cuda.set_device(1)\n    return dev\n" + MAIN,
  "STT/stt_manager_robust.py": NONE + "from faster_whisper import WhisperModel\n\ndef main():\n    return WhisperModel('large-v3', device='cuda', device_index=1)\n" + MAIN,
  "STT/vad_manager.py": NONE + "\ndef main():\n    return torch.zeros(1).to('cuda:1')\n" + MAIN,
  "utils/gpu_manager.py": NONE + "\ndef get_device():\n    return torch.device('cuda:1')\n",
  "TTS/tts_handler_piper_espeak.py": HDR_OK + "\ndef main():\n    return torch.zeros(1, device='cuda:0')\n" + MAIN,
  "test_cuda.py": HDR_OK + "\ndef test_cuda():\n    assert torch.zeros(1, device='cuda:0') is not None\n",
  "tests/test_double_check_corrections.py": NONE + "\ndef test_x():\n    torch.cuda.set_device(1)\n",
  "tests/test_double_check_validation_simple.py": NONE + "from faster_whisper import WhisperModel\n\ndef test_a():\n    WhisperModel('tiny', device='cuda', device_index=1)\n\ndef test_b():\n    WhisperModel('base', device='cuda', device_index=1)\n",
  "test_cuda_debug.py": HDR_NO_ORDER + "print(torch.cuda.device_count())\n",
  "test_correction_validation_1.py": HDR_ZERO + "print(torch.cuda.get_device_name(0))\n",
  "test_correction_validation_2.py": HDR_ZERO + "print(torch.cuda.get_device_name(0))\n",
  "test_correction_validation_3.py": HDR_ZERO + "from faster_whisper import WhisperModel\nWhisperModel('tiny', device='cuda', device_index=1)\n",
  "test_rtx3090_detection.py": HDR_ZERO + "print(torch.cuda.get_device_name(0))\n",
  "validate_gpu_config.py": HDR_OK + "\ndef main():\n" + "".join(f"    x{i} = torch.zeros(1, device=torch.device('cuda', 1))\n" for i in range(5)) + MAIN,
}
LAUNCHERS = {
  "run_all.ps1": '$env:CUDA_VISIBLE_DEVICES = "0"\npython benchmarks\\benchmark_stt_realistic.py --gpu 1\npython STT\\vad_manager_optimized.py --device cuda:1\n',
  "run_all.bat": "@echo off\nREM lance le benchmark STT\nset CUDA_VISIBLE_DEVICES=0\npython benchmarks\\benchmark_stt_realistic.py --gpu 1\n",
  "docs/gpu-correction/backup_script.ps1": '$files = @("benchmarks\\benchmark_stt_realistic.py", "STT\\vad_manager.py")\nforeach ($f in $files) { Copy-Item $f "docs\\gpu-correction\\backups\\" -Force }\nWrite-Host "RESUME SAUVEGARDE"\n',
  "start_stt.cmd": '@echo off\r\nsetx CUDA_VISIBLE_DEVICES 1\r\nset "CUDA_VISIBLE_DEVICES=1"\r\npython STT\\stt_manager_robust.py\r\n',
}
LAUNCH_JSON = ('{\n  // configurations de debug\n  "version": "0.2.0",\n  "configurations": [\n    {\n      "name": "STT",\n'
               '      "program": "${workspaceFolder}/STT/stt_manager_robust.py",\n'
               '      "env": {"CUDA_VISIBLE_DEVICES": "1"}\n    },\n  ]\n}\n')


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def build(root):
    for rel, text in {**FILES, **LAUNCHERS}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(crlf(text))  # Windows line endings, as on the user's machine
    (root / ".vscode").mkdir()
    (root / ".vscode/launch.json").write_text(LAUNCH_JSON)
    (root / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\ndevice-order = "PCI_BUS_ID"\n')
    init_git_repo(root)
    return root


def scan(root):
    proc = run_gpufix("scan", ".", "--format", "json", "--no-cache", cwd=root)
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def test_seed_004_project_scanned_and_applied(tmp_path):
    root = build(tmp_path)
    before = scan(root)
    assert before["errors"] == []
    assert Counter(f["rule"] for f in before["findings"]) == {"GPU001": 16, "GPU102": 13, "GPU101": 6, "GPU103": 6}
    assert {f["path"] for f in before["findings"]} >= {"run_all.ps1", "run_all.bat", "start_stt.cmd", ".vscode/launch.json"}

    proc = run_gpufix("apply", ".", "--no-cache", cwd=root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (root / "run_all.ps1").read_bytes() == crlf(
        '$env:CUDA_DEVICE_ORDER = "PCI_BUS_ID"\n$env:CUDA_VISIBLE_DEVICES = "1"\n'
        "python benchmarks\\benchmark_stt_realistic.py --gpu 1\npython STT\\vad_manager_optimized.py --device cuda:0\n")
    assert (root / "run_all.bat").read_bytes() == crlf(
        "@echo off\nREM lance le benchmark STT\nset CUDA_DEVICE_ORDER=PCI_BUS_ID\nset CUDA_VISIBLE_DEVICES=1\n"
        "python benchmarks\\benchmark_stt_realistic.py --gpu 1\n")
    assert (root / "start_stt.cmd").read_bytes() == crlf(
        '@echo off\nsetx CUDA_DEVICE_ORDER PCI_BUS_ID\nsetx CUDA_VISIBLE_DEVICES 1\nset "CUDA_DEVICE_ORDER=PCI_BUS_ID"\n'
        'set "CUDA_VISIBLE_DEVICES=1"\npython STT\\stt_manager_robust.py\n')
    assert '"env": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1"}' in (root / ".vscode/launch.json").read_text()
    for rel in FILES:
        data = (root / rel).read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n"), rel  # CRLF everywhere, inserted lines too

    [left] = scan(root)["findings"]
    assert (left["path"], left["rule"], left["fix"]) == ("benchmarks/benchmark_stt_realistic.py", "GPU001", None)
    assert "run_all.bat (line 5: --gpu 1), run_all.ps1 (line 3: --gpu 1) pass it to this script" in left["message"]

    # the user changes the launchers' --gpu: the default is fixed with them, nothing is left
    for name in ("run_all.bat", "run_all.ps1"):
        p = root / name
        p.write_bytes(p.read_bytes().replace(b"--gpu 1", b"--gpu 0"))
    proc = run_gpufix("apply", ".", "--no-cache", "--no-backup", "--no-tag", "--allow-dirty", cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"default=0)" in (root / "benchmarks/benchmark_stt_realistic.py").read_bytes()
    assert scan(root)["findings"] == []
