"""A process that picks its GPU from its rank (`torchrun --nproc_per_node=8 train.py`: `cuda:{local_rank}`)
needs as many visible GPUs as the launch has processes: the header that puts a one-GPU policy in
force makes every rank above 0 fail with "invalid device ordinal", so it is an unsafe fix, and the
message says why and what to do (found on karpathy/nanoGPT's train.py)."""

import json
import textwrap
from pathlib import Path

from conftest import gpufix_in_process

POLICY = '[tool.gpufix]\nvisible-devices = "1"\n'

HEADER = (
    'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
    'if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):  # keep an explicit CPU run\n'
    '    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
)

NANOGPT = """
import os
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

ddp = int(os.environ.get('RANK', -1)) != -1
if ddp:
    ddp_rank = int(os.environ['RANK'])
    ddp_local_rank = int(os.environ['LOCAL_RANK'])
    device = f'cuda:{ddp_local_rank}'
    torch.cuda.set_device(device)
    master_process = ddp_rank == 0
    seed_offset = ddp_rank
else:
    device = 'cuda'
model = torch.nn.Linear(2, 2).to(device)
if ddp:
    model = DDP(model, device_ids=[ddp_local_rank])
"""

LAUNCH = """
import argparse
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--local_rank", type=int, default=0)
args = parser.parse_args()
torch.cuda.set_device(args.local_rank)
"""

DIST = """
import torch
import torch.distributed as dist

if __name__ == "__main__":
    dist.init_process_group("nccl")
    rank = dist.get_rank()
    model = torch.nn.Linear(2, 2).cuda(rank % torch.cuda.device_count())
"""


def _note(path: str, line: int, use: str, mask: str = "1", n: int = 1) -> str:
    sees, launch = ("one GPU", "one process per node") if n == 1 else (f"{n} GPUs", f"at most {n} processes per node")
    return (f"; `{path}` picks its GPU from its process rank (line {line}: `{use}`): under "
            f'CUDA_VISIBLE_DEVICES="{mask}" each process sees {sees}, so a launch of more processes per node '
            f"fails on every local rank from {n} on (invalid device ordinal); the fix is unsafe: launch {launch} "
            f"(`torchrun --nproc_per_node={n}`), or apply it with --unsafe-fixes")


GPU101 = ('A file outside any package never sets CUDA_VISIBLE_DEVICES before its process reaches a GPU framework; '
          'insert os.environ["CUDA_VISIBLE_DEVICES"] = "{mask}" before the first import')
GPU101_MAIN = GPU101.replace("A file outside any package", "A script (`__main__` guard)")


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def scan(root: Path, *args) -> list:
    proc = gpufix_in_process("scan", "--format", "json", "--no-cache", *args, cwd=root)
    assert proc.returncode in (0, 1), proc.stderr
    return [(f["path"], f["rule"], f["line"], f["message"], (f["fix"] or {}).get("applicability"))
            for f in json.loads(proc.stdout)["findings"]]


def test_a_nanogpt_like_script_gets_an_unsafe_header(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "train.py", NANOGPT)
    note = _note("train.py", 9, "f'cuda:{ddp_local_rank}'")
    assert scan(tmp_path) == [
        ("train.py", "GPU101", 2, GPU101.format(mask="1") + note, "unsafe"),
        # the order line alone would renumber the GPUs (cuda:0: the fastest, then the one on PCI
        # bus 0, which the policy forbids on its workstation): set with the mask or not at all
        ("train.py", "GPU102", 2, 'CUDA_DEVICE_ORDER is never set, so GPU indices follow CUDA\'s FASTEST_FIRST order; '
                                  'set os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID" before the mask; the device order '
                                  "alone renumbers every GPU without hiding any (`cuda:0` becomes the GPU on PCI bus 0, "
                                  "which need not be the policy's), so it is set with the mask or not at all" + note, "unsafe"),
    ]


def test_apply_inserts_the_mask_only_with_unsafe_fixes(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    original = textwrap.dedent(NANOGPT).lstrip("\n")
    train = write(tmp_path, "train.py", NANOGPT)
    proc = gpufix_in_process("apply", "--no-backup", "--no-tag", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # the unsafe header remains
    assert train.read_text() == original  # not even the order line: alone it renumbers the GPUs
    proc = gpufix_in_process("apply", "--unsafe-fixes", "--no-backup", "--no-tag", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert train.read_text() == original.replace("import os\n", "import os\n\n" + HEADER + "\n", 1)


def test_the_torch_distributed_launch_option(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "launch.py", LAUNCH)
    found = scan(tmp_path, "--select", "GPU101")
    assert found == [("launch.py", "GPU101", 2, GPU101.format(mask="1")
                      + _note("launch.py", 7, "torch.cuda.set_device(args.local_rank)"), "unsafe")]


def test_dist_get_rank_under_a_two_gpu_policy(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.gpufix]\nvisible-devices = "0,1"\n')
    write(tmp_path, "ddp.py", DIST)
    found = scan(tmp_path, "--select", "GPU101")
    assert found == [("ddp.py", "GPU101", 1, GPU101_MAIN.format(mask="0,1")
                      + _note("ddp.py", 7, "torch.nn.Linear(2, 2).cuda(rank % torch.cuda.device_count())", "0,1", 2),
                      "unsafe")]


def test_a_mask_that_shrinks_says_why(tmp_path):
    # GPU103's fix of "0,1" was unsafe already (fewer GPUs); the message now says what breaks
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "ddp.py", 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0,1"\n'
          + textwrap.dedent(DIST).lstrip("\n"))
    assert scan(tmp_path, "--select", "GPU103") == [
        ("ddp.py", "GPU103", 3, 'CUDA_VISIBLE_DEVICES is set to "0,1", but the policy requires "1"; set it to "1"'
         + _note("ddp.py", 10, "torch.nn.Linear(2, 2).cuda(rank % torch.cuda.device_count())"), "unsafe")]
    # a value with as many GPUs as the policy's keeps every launch that worked: safe, no note
    write(tmp_path, "ddp.py", 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "0"\n'
          + textwrap.dedent(DIST).lstrip("\n"))
    assert scan(tmp_path, "--select", "GPU103") == [
        ("ddp.py", "GPU103", 3, 'CUDA_VISIBLE_DEVICES is set to "0", but the policy requires "1"; set it to "1"', "safe")]


def test_a_rank_used_only_for_logging_and_seeding_is_no_device_choice(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "log.py", """
        import os
        import torch
        import torch.distributed as dist

        rank = int(os.environ.get("RANK", 0))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.manual_seed(1337 + rank)
        if rank == 0:
            print(f"rank {rank} of {dist.get_world_size()}, local rank {local_rank}")
        sampler = torch.utils.data.DistributedSampler([], rank=dist.get_rank())
        model = torch.nn.Linear(2, 2).to("cuda")
    """)
    write(tmp_path, "single.py", """
        import torch

        device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        model = torch.nn.Linear(2, 2).to(device)
    """)
    found = scan(tmp_path, "--select", "GPU101")
    assert found == [("log.py", "GPU101", 2, GPU101.format(mask="1"), "safe"),
                     ("single.py", "GPU101", 1, GPU101.format(mask="1"), "safe")]


def test_gpu102s_complete_header_is_unsafe_too(tmp_path):
    # the mask is set only in a function: GPU102 inserts the complete header (the mask with it)
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "train.py", """
        import os
        import torch


        def pin():
            os.environ["CUDA_VISIBLE_DEVICES"] = "1"


        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    """)
    note = _note("train.py", 9, 'torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))')
    assert [(rule, how, message.endswith(note)) for _, rule, _, message, how in scan(tmp_path, "--select", "GPU101,GPU102")] == [
        ("GPU101", "unsafe", True), ("GPU102", "unsafe", True)]


def test_a_module_the_process_runs_picks_the_gpu(tmp_path):
    # DETR's util/misc.py: init_distributed_mode(args) sets args.gpu from LOCAL_RANK and set_device(args.gpu)
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "util/__init__.py", "")
    write(tmp_path, "util/misc.py", """
        import os
        import torch


        def init_distributed_mode(args):
            args.gpu = int(os.environ["LOCAL_RANK"])
            torch.cuda.set_device(args.gpu)


        def accuracy(output, target):
            return (output == target).float().mean()
    """)
    # imports the module for another function: its process never picks a GPU from the rank
    write(tmp_path, "evaluate.py", """
        import torch
        from util.misc import accuracy

        if __name__ == "__main__":
            print(accuracy(torch.zeros(1).cuda(), torch.zeros(1).cuda()))
    """)
    write(tmp_path, "main.py", """
        import torch
        from util import misc

        if __name__ == "__main__":
            misc.init_distributed_mode(object())
    """)
    write(tmp_path, "demo.py", """
        import torch

        if __name__ == "__main__":
            print(torch.zeros(1).cuda())
    """)
    note = _note("util/misc.py", 7, "torch.cuda.set_device(args.gpu)").replace(
        "`util/misc.py` picks", "its process runs `util/misc.py`, which picks")
    assert scan(tmp_path, "--select", "GPU101") == [
        ("demo.py", "GPU101", 1, GPU101_MAIN.format(mask="1"), "safe"),
        ("evaluate.py", "GPU101", 1, GPU101_MAIN.format(mask="1"), "safe"),
        ("main.py", "GPU101", 1, GPU101_MAIN.format(mask="1") + note, "unsafe"),
    ]
    # a warm run (the kept project index) says the same
    proc = gpufix_in_process("scan", "--format", "json", "--select", "GPU101", cwd=tmp_path)
    assert proc.returncode == 1
    proc = gpufix_in_process("scan", "--format", "json", "--select", "GPU101", cwd=tmp_path)
    assert [(f["path"], f["fix"]["applicability"]) for f in json.loads(proc.stdout)["findings"]] == [
        ("demo.py", "safe"), ("evaluate.py", "safe"), ("main.py", "unsafe")]
    # and once the module stops picking its GPU from the rank, the header is safe again
    write(tmp_path, "util/misc.py", """
        import os
        import torch


        def init_distributed_mode(args):
            args.gpu = 0
            torch.cuda.set_device(args.gpu)
    """)
    proc = gpufix_in_process("scan", "--format", "json", "--select", "GPU101", cwd=tmp_path)
    assert [(f["path"], f["fix"]["applicability"]) for f in json.loads(proc.stdout)["findings"]] == [
        ("demo.py", "safe"), ("evaluate.py", "safe"), ("main.py", "safe")]


def test_a_remap_goes_with_the_unsafe_header(tmp_path):
    # `cuda:{args.gpu}` -> 0 is right only under the header, which the rank makes unsafe: so is the remap
    write(tmp_path, "pyproject.toml", POLICY)
    script = write(tmp_path, "launch.py", LAUNCH.replace("args = ", 'parser.add_argument("--gpu", type=int, default=1)\nargs = ')
                   + 'x = torch.zeros(1).to(f"cuda:{args.gpu}")\n')
    before = script.read_text()
    found = [f for f in scan(tmp_path) if f[1] == "GPU001"]
    assert found == [("launch.py", "GPU001", 6, "device index 1 (option --gpu read as args.gpu, in a f'cuda:{...}' string "
                      "on line 9) means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES=\"1\"; use 0; the fix "
                      "is unsafe, as the mask fix it holds under is: `launch.py` picks its GPU from its process rank (line 8)",
                      "unsafe")]
    proc = gpufix_in_process("apply", "--no-backup", "--no-tag", "--no-cache", "--select", "GPU001,GPU101", cwd=tmp_path)
    assert proc.returncode == 1 and script.read_text() == before  # GPU102 unselected: not even the order line
    proc = gpufix_in_process("apply", "--unsafe-fixes", "--no-backup", "--no-tag", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert script.read_text() == "import os\n\n" + HEADER + "\n" + before.replace('"--gpu", type=int, default=1)', '"--gpu", type=int, default=0)')


SPAWN = """
import torch
import torch.multiprocessing as mp


def main_worker(gpu, world_size):
    torch.cuda.set_device(gpu)


if __name__ == "__main__":
    world_size = 2
    mp.spawn(main_worker, args=(world_size,), nprocs=world_size)
"""


def test_mp_spawn_hands_each_process_its_index(tmp_path):
    write(tmp_path, "pyproject.toml", POLICY)
    write(tmp_path, "fixed.py", SPAWN)
    # one process per visible GPU: under the policy's mask it spawns one, which finds its GPU
    write(tmp_path, "counted.py", SPAWN.replace("world_size = 2", "world_size = torch.cuda.device_count()"))
    assert scan(tmp_path, "--select", "GPU101") == [
        ("counted.py", "GPU101", 1, GPU101_MAIN.format(mask="1"), "safe"),
        ("fixed.py", "GPU101", 1, GPU101_MAIN.format(mask="1") + _note("fixed.py", 6, "torch.cuda.set_device(gpu)"), "unsafe"),
    ]
