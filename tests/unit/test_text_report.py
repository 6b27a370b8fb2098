"""The text report's two writers: a pipe gets, without rich, exactly the bytes rich prints
without colour; a terminal gets rich. What a user sees in both: the same text."""

import io
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufix.report.text import write_plain, write_rich

ROOT = Path(__file__).resolve().parents[2]

# parts as a repository's values reach the writer (already safe for a terminal): markup-like
# brackets, backslashes (a trailing one), framed tabs, wide and combining characters, emoji codes
_PIECES = st.sampled_from(["[red]", "[/red]", "[*]", "\\", "\\[", "\t", "界", "é", "e\u0301", "👍", "👨\u200d👩",
                           ":warning:", " ", "x", "GPU001", "|", "^"])
_TEXT = st.lists(_PIECES, max_size=12).map("".join)
_LINE = st.lists(st.tuples(_TEXT, st.sampled_from([None, "bold", "red", "dim", "cyan"])), min_size=1, max_size=5).map(tuple)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=6))
def test_plain_writer_prints_what_rich_prints_without_colour(lines):
    plain, rich = io.StringIO(), io.StringIO()
    write_plain(lines, plain)
    write_rich(lines, rich, False)
    assert plain.getvalue() == rich.getvalue()


def test_tabs_are_expanded_to_the_next_multiple_of_eight_cells():
    out = io.StringIO()
    write_plain([(("7 |", "dim"), (" \tx = 1\t# 界\tend", None))], out)
    assert out.getvalue() == "7 |     x = 1   # 界    end\n"


def _scan(tmp_path, env_extra, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env.update(PYTHONPATH=str(ROOT), GPUFIX_CACHE_DIR=str(tmp_path / "cache"), **env_extra)
    return subprocess.run([sys.executable, *args, "-m", "gpufix", "scan", "--visible-devices", "1", "--no-cache", "."],
                          cwd=tmp_path / "p", env=env, capture_output=True, text=True)


def test_a_piped_report_shows_the_source_line_as_written_and_imports_no_rich(tmp_path):
    # a code frame of a line that ends with a backslash: printed once (rich's markup escape of a
    # trailing backslash used to show two)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "train.py").write_text('import torch\nx = torch.device("cuda:1") if True else \\\n    None\n')
    got = _scan(tmp_path, {}, "-X", "importtime")
    assert got.returncode == 1, got.stderr
    assert got.stdout.splitlines()[6:9] == [
        'train.py:2:18: GPU001 "cuda:1" means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES="1"; use "cuda:0" [*]',
        '2 | x = torch.device("cuda:1") if True else \\',
        '  |                  ^^^^^^^^',
    ]
    imported = {line.split("|")[-1].strip() for line in got.stderr.splitlines() if line.startswith("import time:")}
    assert "gpufix.report.text" in imported and not any(m == "rich" or m.startswith("rich.") for m in imported)


def test_force_color_on_a_pipe_still_colours_through_rich(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "train.py").write_text('import torch\nx = torch.device("cuda:1")\n')
    coloured = _scan(tmp_path, {"FORCE_COLOR": "1"}).stdout
    plain = _scan(tmp_path, {}).stdout
    assert "\x1b[" in coloured and "\x1b[" not in plain
    assert plain == _strip_ansi(coloured)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
