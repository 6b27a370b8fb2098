"""`gpufix apply --diff`: the file names in the diff header are git's, whatever form the paths
were given in, so that `git apply` at the project root takes the patch as it is."""

import subprocess

from project_files import project

from conftest import gpufix_in_process, run_gpufix

MODULE = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n' \
         'import torch\n\nx = torch.device("cuda:1")\n'
HUNK = '@@ -3,4 +3,4 @@\n os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n import torch\n \n' \
       '-x = torch.device("cuda:1")\n+x = torch.device("cuda:0")\n'


def test_diff_header_names_the_file_from_the_project_root(tmp_path):
    (tmp_path / "proj").mkdir()
    root = project(tmp_path / "proj", {"pkg/train.py": MODULE})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    header = "--- a/pkg/train.py\n+++ b/pkg/train.py\n"
    # an absolute path, run from outside the project; `../` from a subfolder; stdin with an absolute name
    absolute = run_gpufix("apply", "--diff", "--no-cache", root / "pkg" / "train.py", cwd=elsewhere)
    # (the other forms in this process: one interpreter start is most of such a run)
    climbing = gpufix_in_process("apply", "--diff", "--no-cache", "../pkg/train.py", cwd=root / "pkg")
    piped = gpufix_in_process("apply", "-", "--diff", "--stdin-filename", root / "pkg" / "train.py", cwd=elsewhere,
                              input=MODULE)
    # a relative path from a subfolder: git's name too
    plain = gpufix_in_process("apply", "--diff", "--no-cache", "train.py", cwd=root / "pkg")
    for proc in (absolute, climbing, piped, plain):
        assert proc.returncode == 1, proc.stderr
        assert proc.stdout == header + HUNK
    check = subprocess.run(["git", "apply", "--check", "-"], cwd=root, input=absolute.stdout, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_a_file_outside_the_project_keeps_its_name_without_a_leading_slash(tmp_path):
    from gpufix.apply import diff_path

    assert diff_path(str(tmp_path / "proj" / "a.py"), str(tmp_path / "proj")) == "a.py"
    assert diff_path("/srv/loose/a.py", str(tmp_path / "proj")) == "srv/loose/a.py"
    assert diff_path("loose/a.py", None) == "loose/a.py"
