"""Non-Python files through the real CLI: shell scripts, Dockerfiles, .env, compose, CI workflows,
Kubernetes manifests, YAML/JSON/TOML configs. Exact findings, exact rewritten bytes, idempotence,
suppression, every report format, the `file-kinds` policy key."""

from __future__ import annotations

import json

import pytest

from conftest import run_gpufix
from project_files import POLICY, apply, found, project, scan


# (files, expected findings [(path, line, column, rule, fixable)], expected bytes after apply)
CASES = {
    "shell": (
        {"run.sh": "#!/bin/bash\n"
                   "export CUDA_VISIBLE_DEVICES=0\n"
                   "CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES='2' python train.py --device cuda:1\n"
                   "echo CUDA_VISIBLE_DEVICES=3  # an argument of echo, not a setting\n"
                   "CUDA_VISIBLE_DEVICES= python cpu_only.py\n"
                   "CUDA_VISIBLE_DEVICES=$GPU python dyn.py\n"
                   "cat <<EOF\nCUDA_VISIBLE_DEVICES=7 ignored heredoc body\nEOF\n"
                   "docker run -e CUDA_VISIBLE_DEVICES=0 img python serve.py --device=cuda:1\n"},
        [("run.sh", 2, 29, "GPU102", True), ("run.sh", 2, 29, "GPU103", True),
         ("run.sh", 3, 51, "GPU103", True), ("run.sh", 3, 80, "GPU001", True),
         ("run.sh", 10, 36, "GPU102", True), ("run.sh", 10, 36, "GPU103", True),
         ("run.sh", 10, 67, "GPU001", True)],
        {"run.sh": "#!/bin/bash\n"
                   "export CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=1\n"
                   "CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES='1' python train.py --device cuda:0\n"
                   "echo CUDA_VISIBLE_DEVICES=3  # an argument of echo, not a setting\n"
                   "CUDA_VISIBLE_DEVICES= python cpu_only.py\n"
                   "CUDA_VISIBLE_DEVICES=$GPU python dyn.py\n"
                   "cat <<EOF\nCUDA_VISIBLE_DEVICES=7 ignored heredoc body\nEOF\n"
                   "docker run -e CUDA_DEVICE_ORDER=PCI_BUS_ID -e CUDA_VISIBLE_DEVICES=1 img python serve.py --device=cuda:0\n"},
    ),
    "dockerfile": (
        {"Dockerfile": "FROM nvidia/cuda:12.1.1-runtime-ubuntu22.04\n"
                       "ENV NVIDIA_VISIBLE_DEVICES all\n"
                       "ENV CUDA_VISIBLE_DEVICES=0 \\\n    CUDA_DEVICE_ORDER=FASTEST_FIRST\n"
                       "RUN python -c 'import torch' && CUDA_VISIBLE_DEVICES=3 python warmup.py\n"
                       'CMD ["python", "serve.py", "--device", "cuda:1"]\n',
         "docker/Dockerfile.legacy": "FROM base\nENV CUDA_VISIBLE_DEVICES 0\n"},
        [("Dockerfile", 3, 26, "GPU103", True), ("Dockerfile", 4, 23, "GPU104", True),
         ("Dockerfile", 5, 54, "GPU103", True), ("Dockerfile", 6, 41, "GPU001", True),
         ("docker/Dockerfile.legacy", 2, 26, "GPU102", True), ("docker/Dockerfile.legacy", 2, 26, "GPU103", True)],
        {"Dockerfile": "FROM nvidia/cuda:12.1.1-runtime-ubuntu22.04\n"
                       "ENV NVIDIA_VISIBLE_DEVICES all\n"
                       "ENV CUDA_VISIBLE_DEVICES=1 \\\n    CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
                       "RUN python -c 'import torch' && CUDA_VISIBLE_DEVICES=1 python warmup.py\n"
                       'CMD ["python", "serve.py", "--device", "cuda:0"]\n',
         "docker/Dockerfile.legacy": "FROM base\nENV CUDA_DEVICE_ORDER=PCI_BUS_ID\nENV CUDA_VISIBLE_DEVICES 1\n"},
    ),
    "dotenv": (
        {".env": "# local settings\nexport CUDA_VISIBLE_DEVICES=\"0\"  # the big card\nHF_HOME=/data/hf\n",
         "deploy/gpu.env": "CUDA_DEVICE_ORDER=PCI_BUS_ID\nCUDA_VISIBLE_DEVICES=1\n"},
        [(".env", 2, 29, "GPU102", True), (".env", 2, 29, "GPU103", True)],
        {".env": "# local settings\nexport CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=\"1\"  # the big card\nHF_HOME=/data/hf\n"},
    ),
    "compose": (
        {"docker-compose.yml": "services:\n"
                               "  app:\n"
                               "    image: nvidia/cuda:12.1.1-runtime  # not an ordinal\n"
                               "    environment:\n"
                               "      - CUDA_VISIBLE_DEVICES=0\n"
                               "    command: python serve.py --device cuda:1\n"
                               "    deploy:\n"
                               "      resources:\n"
                               "        reservations:\n"
                               "          devices:\n"
                               "            - driver: nvidia\n"
                               "              device_ids: ['1']\n"
                               "              capabilities: [gpu]\n"
                               "  worker:\n"
                               "    environment:\n"
                               "      CUDA_DEVICE_ORDER: PCI_BUS_ID\n"
                               "      NVIDIA_VISIBLE_DEVICES: \"0,1\"\n"
                               "      CUDA_VISIBLE_DEVICES: \"2\"\n"},
        # the worker's CUDA_DEVICE_ORDER is not in force for the app service: GPU102 there. The app
        # pins host GPU 1 (device_ids) and selects it as its GPU 0: already the policy's GPU
        # (issue 19), no GPU103 for its mask or its pin.
        [("docker-compose.yml", 5, 30, "GPU102", True),
         ("docker-compose.yml", 6, 39, "GPU001", True), ("docker-compose.yml", 18, 29, "GPU103", True)],
        {"docker-compose.yml": "services:\n"
                               "  app:\n"
                               "    image: nvidia/cuda:12.1.1-runtime  # not an ordinal\n"
                               "    environment:\n"
                               "      - CUDA_DEVICE_ORDER=PCI_BUS_ID\n"
                               "      - CUDA_VISIBLE_DEVICES=0\n"
                               "    command: python serve.py --device cuda:0\n"
                               "    deploy:\n"
                               "      resources:\n"
                               "        reservations:\n"
                               "          devices:\n"
                               "            - driver: nvidia\n"
                               "              device_ids: ['1']\n"
                               "              capabilities: [gpu]\n"
                               "  worker:\n"
                               "    environment:\n"
                               "      CUDA_DEVICE_ORDER: PCI_BUS_ID\n"
                               "      NVIDIA_VISIBLE_DEVICES: \"0,1\"\n"
                               "      CUDA_VISIBLE_DEVICES: \"1\"\n"},
    ),
    "workflow": (
        {".github/workflows/gpu.yml": "on: push\n"
                                      "env:\n"
                                      "  CUDA_VISIBLE_DEVICES: 0  # gpu runner\n"
                                      "  CUDA_DEVICE_ORDER: FASTEST_FIRST\n"
                                      "jobs:\n"
                                      "  test:\n"
                                      "    runs-on: [self-hosted, gpu]\n"
                                      "    container: {image: 'nvidia/cuda:12.1.1-devel', options: --gpus all}\n"
                                      "    steps:\n"
                                      "      - run: |\n"
                                      "          CUDA_VISIBLE_DEVICES=3 pytest tests/gpu\n"
                                      "          python bench.py --device cuda:1\n"
                                      "      - env:\n"
                                      "          CUDA_VISIBLE_DEVICES: ${{ matrix.gpu }}\n"
                                      "        run: pytest\n"},
        [(".github/workflows/gpu.yml", 3, 25, "GPU103", True), (".github/workflows/gpu.yml", 4, 22, "GPU104", True),
         (".github/workflows/gpu.yml", 11, 32, "GPU103", True), (".github/workflows/gpu.yml", 12, 36, "GPU001", True)],
        {".github/workflows/gpu.yml": "on: push\n"
                                      "env:\n"
                                      "  CUDA_VISIBLE_DEVICES: 1  # gpu runner\n"
                                      "  CUDA_DEVICE_ORDER: PCI_BUS_ID\n"
                                      "jobs:\n"
                                      "  test:\n"
                                      "    runs-on: [self-hosted, gpu]\n"
                                      "    container: {image: 'nvidia/cuda:12.1.1-devel', options: --gpus all}\n"
                                      "    steps:\n"
                                      "      - run: |\n"
                                      "          CUDA_VISIBLE_DEVICES=1 pytest tests/gpu\n"
                                      "          python bench.py --device cuda:0\n"
                                      "      - env:\n"
                                      "          CUDA_VISIBLE_DEVICES: ${{ matrix.gpu }}\n"
                                      "        run: pytest\n"},
    ),
    "kubernetes": (
        {"k8s/job.yaml": "apiVersion: batch/v1\nkind: Job\n---\nspec:\n  containers:\n    - name: train\n"
                         "      env:\n        - name: CUDA_DEVICE_ORDER\n          value: PCI_BUS_ID\n"
                         "        - name: CUDA_VISIBLE_DEVICES\n          value: 1\n"},
        [("k8s/job.yaml", 11, 18, "GPU106", True)],
        {"k8s/job.yaml": "apiVersion: batch/v1\nkind: Job\n---\nspec:\n  containers:\n    - name: train\n"
                         "      env:\n        - name: CUDA_DEVICE_ORDER\n          value: PCI_BUS_ID\n"
                         "        - name: CUDA_VISIBLE_DEVICES\n          value: \"1\"\n"},
    ),
    "hydra-lightning": (
        {"conf/trainer/gpu.yaml": "trainer:\n"
                                  "  accelerator: gpu\n"
                                  "  devices: [1]\n"
                                  "  num_nodes: 1\n"
                                  "other:\n"
                                  "  devices: \"1,\"\n"
                                  "  gpus: 2          # a count\n"
                                  "  devices_count: 3\n"
                                  "  device: 1        # a count or an index: not read\n"
                                  "model:\n"
                                  "  device: cuda:1\n"
                                  "  gpu_id: 1\n"
                                  "  gpu_ids: [0, 1]\n"
                                  "  seed: 1\n"},
        [("conf/trainer/gpu.yaml", 3, 12, "GPU002", False), ("conf/trainer/gpu.yaml", 6, 12, "GPU002", False),
         ("conf/trainer/gpu.yaml", 11, 11, "GPU001", True), ("conf/trainer/gpu.yaml", 12, 11, "GPU001", True),
         ("conf/trainer/gpu.yaml", 13, 12, "GPU002", False)],
        {"conf/trainer/gpu.yaml": "trainer:\n"
                                  "  accelerator: gpu\n"
                                  "  devices: [1]\n"
                                  "  num_nodes: 1\n"
                                  "other:\n"
                                  "  devices: \"1,\"\n"
                                  "  gpus: 2          # a count\n"
                                  "  devices_count: 3\n"
                                  "  device: 1        # a count or an index: not read\n"
                                  "model:\n"
                                  "  device: cuda:0\n"
                                  "  gpu_id: 0\n"
                                  "  gpu_ids: [0, 1]\n"
                                  "  seed: 1\n"},
    ),
    "json": (
        {".devcontainer/devcontainer.json": "{\n  // VS Code allows comments here\n  \"containerEnv\": {\n"
                                            "    \"CUDA_VISIBLE_DEVICES\": \"0\",\n  },\n  \"runArgs\": [\"--gpus\", \"all\"]\n}\n",
         "configs/infer.json": "{\"device\": \"cuda:1\", \"gpu_ids\": \"0,1\", \"num_gpus\": 2}\n"},
        [(".devcontainer/devcontainer.json", 4, 29, "GPU102", True), (".devcontainer/devcontainer.json", 4, 29, "GPU103", True),
         ("configs/infer.json", 1, 13, "GPU001", True), ("configs/infer.json", 1, 33, "GPU002", False)],
        {".devcontainer/devcontainer.json": "{\n  // VS Code allows comments here\n  \"containerEnv\": {\n"
                                            "    \"CUDA_DEVICE_ORDER\": \"PCI_BUS_ID\",\n    \"CUDA_VISIBLE_DEVICES\": \"1\",\n  },\n"
                                            "  \"runArgs\": [\"--gpus\", \"all\"]\n}\n",
         "configs/infer.json": "{\"device\": \"cuda:0\", \"gpu_ids\": \"0,1\", \"num_gpus\": 2}\n"},
    ),
    "toml": (
        {"configs/run.toml": "[trainer]\ndevices = [1]  # Lightning indices\ngpus = 2\n\n[model]\ndevice = 'cuda:1'\ngpu-id = 1\n"
                             "\n[env]\nCUDA_VISIBLE_DEVICES = \"0\"\nCUDA_DEVICE_ORDER = \"PCI_BUS_ID\"\n"},
        [("configs/run.toml", 2, 11, "GPU002", False), ("configs/run.toml", 6, 11, "GPU001", True),
         ("configs/run.toml", 7, 10, "GPU001", True), ("configs/run.toml", 10, 24, "GPU103", True)],
        {"configs/run.toml": "[trainer]\ndevices = [1]  # Lightning indices\ngpus = 2\n\n[model]\ndevice = 'cuda:0'\ngpu-id = 0\n"
                             "\n[env]\nCUDA_VISIBLE_DEVICES = \"1\"\nCUDA_DEVICE_ORDER = \"PCI_BUS_ID\"\n"},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_findings_fix_bytes_and_idempotence(tmp_path, name):
    files, expected, fixed = CASES[name]
    root = project(tmp_path, files)
    assert found(scan(root)) == expected
    proc = apply(root)
    for rel, data in files.items():
        want = fixed.get(rel, data)
        assert (root / rel).read_bytes() == want.encode(), rel
    # Idempotent: a second apply changes nothing, and only report-only findings remain.
    before = {rel: (root / rel).read_bytes() for rel in files}
    again = apply(root)
    assert {rel: (root / rel).read_bytes() for rel in files} == before
    assert all(not fixable for *_, fixable in found(scan(root)))
    assert proc.returncode == (1 if any(not fx for *_, fx in expected) else 0), proc.stdout + proc.stderr
    assert again.returncode == proc.returncode


def test_messages_name_the_value_and_the_policy(tmp_path):
    files, _, _ = CASES["compose"]
    report = scan(project(tmp_path, files))
    by_line = {(f["line"], f["rule"]): f["message"] for f in report["findings"]}
    assert by_line[(18, "GPU103")] == 'CUDA_VISIBLE_DEVICES is set to "2", but the policy requires "1"; set it to "1"'
    # the app's device_ids ['1'] with its own CUDA_VISIBLE_DEVICES=0 is host GPU 1: nothing to say
    assert (5, "GPU103") not in by_line and (12, "GPU103") not in by_line
    assert by_line[(6, "GPU001")] == 'cuda:1 means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES="1"; use cuda:0'


CLOUD_WORKFLOW = (
    "on: push\n"
    "jobs:\n"
    "  single_gpu:\n"
    "    runs-on:\n"
    "      group: aws-g6-4xlarge-plus\n"
    "    env:\n"
    "      CUDA_VISIBLE_DEVICES: \"0\"\n"
    "    steps:\n"
    "      - run: python bench.py --device cuda:1\n"
    "  local:\n"
    "    runs-on: [self-hosted, gpu]\n"
    "    env:\n"
    "      CUDA_DEVICE_ORDER: PCI_BUS_ID\n"
    "      CUDA_VISIBLE_DEVICES: \"0\"\n"
)


def test_a_ci_job_on_a_runner_that_is_not_self_hosted_gets_unsafe_fixes_only(tmp_path):
    """accelerate's run_merge_tests.yml: a job on a cloud runner group (one GPU) sets
    CUDA_VISIBLE_DEVICES "0"; the policy's "1" would hide that runner's only GPU, so the mask fix
    (and the remap read through that mask) is unsafe there. A self-hosted job's stays safe."""
    root = project(tmp_path, {".github/workflows/gpu.yml": CLOUD_WORKFLOW})
    report = scan(root)
    got = [(f["line"], f["rule"], f["fix"]["applicability"] if f["fix"] else None) for f in report["findings"]]
    assert got == [(7, "GPU102", "safe"), (7, "GPU103", "unsafe"), (9, "GPU001", "unsafe"), (14, "GPU103", "safe")]
    msg = next(f["message"] for f in report["findings"] if f["line"] == 7 and f["rule"] == "GPU103")
    assert msg == ('CUDA_VISIBLE_DEVICES is set to "0", but the policy requires "1"; set it to "1"; unsafe fix: it is in '
                   "force in a job that runs on `runs-on: group: aws-g6-4xlarge-plus`, which names no `self-hosted` "
                   "runner: its GPUs need not be this machine's, and the policy's mask may hide them there")
    proc = apply(root)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the unsafe fixes remain
    safe = CLOUD_WORKFLOW.replace('      CUDA_VISIBLE_DEVICES: "0"\n    steps:',
                                  '      CUDA_DEVICE_ORDER: PCI_BUS_ID\n      CUDA_VISIBLE_DEVICES: "0"\n    steps:')
    safe = safe[:safe.rindex('"0"')] + '"1"\n'
    assert (root / ".github/workflows/gpu.yml").read_text() == safe
    apply(root, "--unsafe-fixes")
    assert (root / ".github/workflows/gpu.yml").read_text() == safe.replace('"0"', '"1"').replace("cuda:1", "cuda:0")


def test_a_run_step_reads_its_ordinals_through_the_env_block_around_it(tmp_path):
    """A step's command that sets no mask runs under its step's `env:`, else its job's, else the
    workflow's: under the job's "1,0", cuda:1 is physical GPU 0, which the policy hides (no fix;
    remapping it to cuda:0 named physical GPU 1 while the mask stayed). A compose command runs
    under its service's environment."""
    workflow = ("on: push\n"
                "env:\n"
                "  CUDA_VISIBLE_DEVICES: \"0\"\n"
                "jobs:\n"
                "  test:\n"
                "    runs-on: [self-hosted, gpu]\n"
                "    env:\n"
                "      CUDA_DEVICE_ORDER: PCI_BUS_ID\n"
                "      CUDA_VISIBLE_DEVICES: \"1,0\"\n"
                "    steps:\n"
                "      - run: python bench.py --device cuda:1\n"
                "      - env:\n"
                "          CUDA_VISIBLE_DEVICES: ${{ matrix.gpu }}\n"
                "        run: python bench.py --device cuda:1\n")
    compose = ("services:\n"
               "  app:\n"
               "    environment:\n"
               "      CUDA_DEVICE_ORDER: PCI_BUS_ID\n"
               "      CUDA_VISIBLE_DEVICES: \"1\"\n"
               "    command: python serve.py --device cuda:1\n")
    root = project(tmp_path, {".github/workflows/gpu.yml": workflow, "compose.yaml": compose})
    report = scan(root)
    got = [(f["path"], f["line"], f["rule"], f["message"], f["fix"]["applicability"] if f["fix"] else None)
           for f in report["findings"]]
    assert got == [
        (".github/workflows/gpu.yml", 3, "GPU103", 'CUDA_VISIBLE_DEVICES is set to "0", but the policy requires "1"; '
         'set it to "1"', "safe"),
        (".github/workflows/gpu.yml", 9, "GPU103", 'CUDA_VISIBLE_DEVICES is set to "1,0", but the policy requires "1"; '
         'set it to "1"', "unsafe"),
        (".github/workflows/gpu.yml", 11, "GPU001", 'cuda:1 means physical GPU 0, which CUDA_VISIBLE_DEVICES="1" hides; '
         "choose a GPU the policy allows or change the policy", None),
        (".github/workflows/gpu.yml", 14, "GPU001", 'cuda:1 does not exist under CUDA_VISIBLE_DEVICES="1" (1 visible '
         "GPU(s)); the physical GPU it meant is unknown (the mask it runs under is computed at run time): fix it by hand",
         None),
        # under the compose service's "1", cuda:1 names no GPU: the policy's GPU is cuda:0
        ("compose.yaml", 6, "GPU001", 'cuda:1 means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES="1"; '
         "use cuda:0", "safe"),
    ]


def test_crlf_and_bom_shell_script_keeps_its_bytes(tmp_path):
    raw = b"\xef\xbb\xbf#!/bin/sh\r\nCUDA_VISIBLE_DEVICES=0 python a.py --device cuda:1\r\n"
    root = project(tmp_path, {"run.sh": raw})
    assert found(scan(root)) == [("run.sh", 2, 22, "GPU102", True), ("run.sh", 2, 22, "GPU103", True),
                                 ("run.sh", 2, 45, "GPU001", True)]
    apply(root)
    assert (root / "run.sh").read_bytes() == (
        b"\xef\xbb\xbf#!/bin/sh\r\nCUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=1 python a.py --device cuda:0\r\n")


def test_crlf_yaml_insertion_uses_the_files_newline(tmp_path):
    root = project(tmp_path, {"compose.yaml": b"services:\r\n  a:\r\n    environment:\r\n      CUDA_VISIBLE_DEVICES: '1'\r\n"})
    apply(root)
    assert (root / "compose.yaml").read_bytes() == (
        b"services:\r\n  a:\r\n    environment:\r\n      CUDA_DEVICE_ORDER: PCI_BUS_ID\r\n      CUDA_VISIBLE_DEVICES: '1'\r\n")


def test_suppression_comments(tmp_path):
    root = project(tmp_path, {
        "a.sh": "CUDA_VISIBLE_DEVICES=0 python x.py  # gpufix: ignore[GPU103]\n",
        "b.yml": "env:\n  CUDA_VISIBLE_DEVICES: '0'  # noqa: GPU103, GPU102\n  CUDA_DEVICE_ORDER: FASTEST_FIRST # gpufix: ignore\n",
        "c.toml": "# gpufix: ignore-file\ngpu_id = 3\n",
        "Dockerfile": "FROM x\n# gpufix: ignore-file[GPU102]\nENV CUDA_VISIBLE_DEVICES=0\n",
    })
    assert found(scan(root)) == [("Dockerfile", 3, 26, "GPU103", True), ("a.sh", 1, 22, "GPU102", True)]


def test_every_report_format(tmp_path):
    root = project(tmp_path, {"run.sh": "export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=0\n"})
    text = run_gpufix("scan", ".", "--no-cache", cwd=root)
    assert text.returncode == 1
    assert "run.sh:2:29: GPU103" in text.stdout
    gh = run_gpufix("scan", ".", "--no-cache", "--format", "github", cwd=root)
    assert "::error file=run.sh,line=2,col=29,endLine=2,endColumn=30,title=GPU103::" in gh.stdout
    sarif = json.loads(run_gpufix("scan", ".", "--no-cache", "--format", "sarif", cwd=root).stdout)
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "GPU103"
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 2, "startColumn": 29, "endLine": 2, "endColumn": 30}
    assert result["fixes"][0]["artifactChanges"][0]["replacements"] == [
        {"deletedRegion": {"charOffset": 64, "charLength": 1}, "insertedContent": {"text": "1"}}]
    report = scan(root)
    assert report["summary"]["by_rule"] == {"GPU103": 1}


def test_no_policy_disagreement_counts_every_kind(tmp_path):
    root = project(tmp_path, {
        "a.py": 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\nimport torch\n',
        "run.sh": "export CUDA_DEVICE_ORDER=PCI_BUS_ID\nexport CUDA_VISIBLE_DEVICES=1\n",
        "compose.yml": "x:\n  environment:\n    CUDA_DEVICE_ORDER: PCI_BUS_ID\n    CUDA_VISIBLE_DEVICES: 0\n",
    }, policy="[tool.gpufix]\n")
    report = scan(root, "--select", "GPU103")
    assert found(report) == [("a.py", 3, 38, "GPU103", False), ("compose.yml", 4, 27, "GPU103", False),
                             ("run.sh", 2, 29, "GPU103", False)]
    assert '("1" in 2 of 3 files, "0" in 1 of 3 files)' in report["findings"][1]["message"]


def test_without_a_policy_ordinals_need_the_files_own_mask(tmp_path):
    root = project(tmp_path, {
        "a.sh": "CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=1 python x.py --device cuda:1\n",
        "b.yaml": "device: cuda:1\n",
    }, policy="[tool.gpufix]\n")
    assert found(scan(root, "--select", "GPU001")) == [("a.sh", 1, 74, "GPU001", False)]


def test_file_kinds_policy_key(tmp_path):
    root = project(tmp_path, {"run.sh": "CUDA_VISIBLE_DEVICES=0 python x.py\n", "c.yaml": "gpu_id: 3\n"},
                   policy=POLICY + 'file-kinds = ["python", "notebook", "yaml"]\n')
    report = scan(root)
    assert [f[0] for f in found(report)] == ["c.yaml"]
    assert report["summary"]["files_scanned"] == 1
    # a named file of a kind the policy leaves out is skipped too (pre-commit passes every file)
    proc = run_gpufix("scan", "run.sh", "--no-cache", "--format", "json", cwd=root)
    assert proc.returncode == 0 and json.loads(proc.stdout)["summary"]["files_scanned"] == 0
    (root / "pyproject.toml").write_text(POLICY + 'file-kinds = ["python", "markdown"]\n')
    bad = run_gpufix("scan", ".", "--no-cache", cwd=root)
    assert bad.returncode == 2
    assert "`file-kinds` has 'markdown'; allowed: python, notebook, shell, dockerfile, dotenv, yaml, json, toml" in bad.stderr


def test_file_kinds_flag_overrides_the_policy(tmp_path):
    root = project(tmp_path, {"run.sh": "CUDA_VISIBLE_DEVICES=0 python x.py\n", "c.yaml": "gpu_id: 3\n", "a.py": "x = 1\n"})
    report = scan(root, "--file-kinds", "shell")
    assert sorted({f[0] for f in found(report)}) == ["run.sh"]
    assert report["summary"]["files_scanned"] == 1
    bad = run_gpufix("scan", ".", "--no-cache", "--file-kinds", "shell,markdown", cwd=root)
    assert bad.returncode == 2 and "--file-kinds" in bad.stderr and "'markdown'" in bad.stderr


def test_policy_file_and_unrelated_configs_are_quiet(tmp_path):
    root = project(tmp_path, {
        "gpufix.toml": 'visible-devices = "1"\n',
        "package.json": '{"name": "x", "devices": 3, "version": "1.0.1"}\n',
        "mkdocs.yml": "nav:\n  - cuda: 1\n  - gpu: 2\n  - image: nvidia/cuda:12.1.1\n",
        ".pre-commit-config.yaml": "repos: []\n",
        "ci.yml": "jobs:\n  t:\n    options: --gpus all\n    run: nvidia-smi --id=1\n",
    }, policy=POLICY)
    report = scan(root)
    assert report["findings"] == [] and report["errors"] == []


def test_shebang_script_without_extension_is_read_as_shell_when_named(tmp_path):
    root = project(tmp_path, {"bin/train": "#!/usr/bin/env bash\nCUDA_VISIBLE_DEVICES=0 python t.py\n"})
    proc = run_gpufix("scan", "bin/train", "--no-cache", "--format", "json", "--select", "GPU103", cwd=root)
    assert [(f["path"], f["line"], f["rule"]) for f in json.loads(proc.stdout)["findings"]] == [("bin/train", 2, "GPU103")]


# -- properties ------------------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpufix.config import Policy  # noqa: E402
from gpufix.engine import lint_source  # noqa: E402
from gpufix.fix.spans import fix_text  # noqa: E402
from gpufix.source import ReadError, read_source  # noqa: E402

PROP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_VALUES = st.sampled_from(["0", "1", "2,3", "'0'", '"2"', '""', "$GPU", "${GPU:-0}", "$(nvidia-smi -L)", "0\\ 1", "FASTEST_FIRST", "PCI_BUS_ID", "all", "GPU-1234"])
_VARS = st.sampled_from(["CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "OTHER"])
_SHELL_BITS = st.one_of(
    st.builds(lambda v, x: f"{v}={x}", _VARS, _VALUES),
    st.builds(lambda v, x: f"export {v}={x}", _VARS, _VALUES),
    st.sampled_from(["python train.py", "--device cuda:1", "--device=cuda:2", "cuda:0", "echo", "env", "-e", "docker run",
                     ";", "&&", "|", "\\\n", "\n", "\r\n", "# gpufix: ignore", "'", '"', "(", ")", "<<EOF\nCUDA_VISIBLE_DEVICES=1\nEOF\n", "`", "{", "}"]),
    st.text(max_size=8),
)
shell_scripts = st.lists(_SHELL_BITS, max_size=25).map(" ".join)
_YAML_LINES = st.one_of(
    st.builds(lambda i, v, x: f"{'  ' * i}{v}: {x}", st.integers(0, 3), _VARS, _VALUES),
    st.builds(lambda i, v, x: f"{'  ' * i}- {v}={x}", st.integers(0, 3), _VARS, _VALUES),
    st.builds(lambda i, k, x: f"{'  ' * i}{k}: {x}", st.integers(0, 3),
              st.sampled_from(["devices", "gpus", "gpu_id", "gpu_ids", "device_ids", "device", "run", "environment", "env", "name", "value"]),
              st.sampled_from(["[1]", "'1,'", "1", "cuda:1", "'cuda:2'", "[0, 1]", "", "|", "CUDA_VISIBLE_DEVICES", "{a: 1}", "&a x", "*a"])),
    st.sampled_from(["---", "- driver: nvidia", "  capabilities: [gpu]", "    CUDA_VISIBLE_DEVICES=0 python x --device cuda:1", "# noqa"]),
)
yaml_files = st.lists(_YAML_LINES, max_size=20).map("\n".join)
POLICIES = [Policy(), Policy(visible_devices="1"), Policy(visible_devices="0,2")]


def _fix_is_stable(path: str, text: str) -> None:
    try:
        read_source(path, text.encode())
    except ReadError:
        return  # NUL bytes: a `binary-file` error entry (tests/test_bad_inputs.py)
    for policy in POLICIES:
        src = read_source(path, text.encode())
        result = lint_source(src, policy)  # never raises; bad input is an error entry
        if result.errors:
            continue
        new_raw, _ = fix_text(src, lambda s, p=policy: lint_source(s, p), unsafe=False)
        again, _ = fix_text(read_source(path, new_raw), lambda s, p=policy: lint_source(s, p), unsafe=False)
        assert again == new_raw  # idempotent
        left = lint_source(read_source(path, new_raw), policy)
        assert not left.errors  # the fixed file still parses
        assert not [f for f in left.findings if f.fix and f.fix.applicability == "safe"]


@PROP
@given(shell_scripts)
def test_shell_reader_never_fails_and_fixes_are_stable(text):
    _fix_is_stable("run.sh", text)


@PROP
@given(yaml_files)
def test_yaml_reader_never_fails_and_fixes_are_stable(text):
    _fix_is_stable("conf.yaml", text)


@PROP
@given(shell_scripts)
def test_dockerfile_and_dotenv_readers_never_fail(text):
    _fix_is_stable("Dockerfile", "FROM x\nENV " + text)
    _fix_is_stable("x.env", text)


@PROP
@given(yaml_files, st.sampled_from(["conf.yaml", "conf.toml", "conf.json", "run.sh", "Dockerfile", "x.env"]))
def test_prefilter_never_skips_a_finding(text, path):
    """The byte test changes no outcome: every example gives the same findings and errors with the
    prefilter on and off (any policy), whether the byte test skips it or not."""
    from gpufix.catalog import catalog_for
    from gpufix.engine import lint_bytes

    raw = text.encode()
    for policy in POLICIES:
        catalog = catalog_for(policy)
        fast = lint_bytes(raw, "/nonexistent/" + path, path, policy, True, catalog)
        full = lint_bytes(raw, "/nonexistent/" + path, path, policy, False, catalog)
        assert fast.findings == full.findings
        assert fast.errors == full.errors


def test_a_container_pin_composes_with_the_containers_own_mask(tmp_path):
    """device_ids ["0"] with CUDA_VISIBLE_DEVICES=0 is host GPU 0: reported, and the policy's "1"
    is not written there (inside that container it names no GPU)."""
    text = ("services:\n  bad:\n    environment:\n      - CUDA_DEVICE_ORDER=PCI_BUS_ID\n      - CUDA_VISIBLE_DEVICES=0\n"
            "    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n"
            "              device_ids: ['0']\n              capabilities: [gpu]\n")
    root = project(tmp_path, {"docker-compose.yml": text})
    assert found(scan(root)) == [("docker-compose.yml", 5, 30, "GPU103", False), ("docker-compose.yml", 11, 27, "GPU103", False)]
