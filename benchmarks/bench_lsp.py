"""Benchmark `gpufix server`: the latency from a change to its diagnostics, against `ruff server`
measured in the same run on the same edits, with the same client.

    python benchmarks/bench_lsp.py FILE [FILE...] [--large-lines 20000] [--edits 15] [--output reports/bench-lsp.md]

For each file (and a generated large file of --large-lines lines of GPU code, in a temporary
project with the policy `visible-devices = "1"`), one server is started per tool and the file is
opened; then --edits times: a one-line change is sent (`textDocument/didChange`, the whole text) and
the time until `textDocument/publishDiagnostics` for that version arrives is measured. The edits
alternate between adding a `cuda:1` line at the end (a new finding) and removing it, so every
version changes what is published. gpufix's debounce is set to 0 here (the editor default adds
150 ms before the analysis starts). Interleaved: gpufix, then ruff, for each edit. Also reported:
the time to the first diagnostics after didOpen, and `gpufix scan --stdin-filename FILE` run as a
process on the same text (the CLI's cold path), and `python -c pass`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pygls.uris import from_fs_path

REPO = Path(__file__).resolve().parent.parent


class Client:
    """A minimal LSP client over stdio (JSON-RPC framing, no typed decoding, so that no server's
    replies are refused and both tools pay the same client cost)."""

    def __init__(self, name: str, cmd: list, root: Path, options: dict):
        self.name, self.cmd, self.root, self.options = name, cmd, root, options
        self.published: dict = {}
        self.events: dict = {}
        self.replies: dict = {}
        self.next_id = 0

    async def start(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = await asyncio.create_subprocess_exec(*self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                         stderr=subprocess.DEVNULL, env=env, cwd=str(self.root))
        self.reader = asyncio.ensure_future(self._read())
        await self.request("initialize", {"processId": os.getpid(), "rootUri": from_fs_path(str(self.root)),
                                          "capabilities": {}, "initializationOptions": self.options})
        self.notify("initialized", {})

    def _send(self, msg: dict) -> None:
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    async def request(self, method: str, params):
        self.next_id += 1
        fut = self.replies[self.next_id] = asyncio.get_running_loop().create_future()
        self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return await asyncio.wait_for(fut, 120)

    async def _read(self):
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = await out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            msg = json.loads(await out.readexactly(length))
            now = time.perf_counter()
            if "method" in msg and "id" in msg:  # a request from the server: answer it
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            elif msg.get("method") == "textDocument/publishDiagnostics":
                p = msg["params"]
                key = (p["uri"], p.get("version"))
                self.published[key] = (now, p["diagnostics"])
                ev = self.events.get(key)
                if ev is not None:
                    ev.set()
            elif "id" in msg and msg["id"] in self.replies:
                self.replies.pop(msg["id"]).set_result(msg.get("result"))

    async def stop(self):
        await self.request("shutdown", None)
        self.notify("exit", None)
        await self.proc.wait()
        self.reader.cancel()

    async def timed(self, send, uri: str, version: int) -> tuple:
        ev = self.events[(uri, version)] = asyncio.Event()
        t0 = time.perf_counter()
        send()
        await asyncio.wait_for(ev.wait(), 120)
        t1, diags = self.published[(uri, version)]
        return t1 - t0, len(diags)

    async def open(self, uri: str, text: str) -> tuple:
        return await self.timed(lambda: self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "python", "version": 1, "text": text}}), uri, 1)

    async def change(self, uri: str, version: int, text: str) -> tuple:
        return await self.timed(lambda: self.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}), uri, version)


def large_file(lines: int) -> str:
    out = ['"""A generated module with GPU code spread through it."""', "import os", "import torch", ""]
    i = 0
    while len(out) < lines:
        out += [f"def step_{i}(x, scale={i % 7}):",
                f"    y = x * scale + {i}",
                f"    if y.sum() > {i}:",
                f"        y = y.to('cuda:{(i // 25) % 2}')" if i % 25 == 0 else "        y = y + 1",
                "    return y", ""]
        i += 1
    return "\n".join(out[:lines]) + "\n"


def cli_scan(path: Path, text: str) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gpufix", "scan", "--stdin-filename", str(path), "--format", "json", "-q"],
                   input=text.encode(), capture_output=True, env=env, cwd=path.parent)
    return time.perf_counter() - t


async def bench_file(path: Path, edits: int, tools: list) -> dict:
    text = path.read_text(encoding="utf-8")
    uri = from_fs_path(str(path))
    root = path.parent
    clients = [Client(name, cmd, root, opts) for name, cmd, opts in tools]
    out = {"file": str(path), "lines": text.count("\n"), "bytes": len(text.encode()), "tools": {}}
    for c in clients:
        await c.start()
        dt, n = await c.open(uri, text)
        out["tools"][c.name] = {"open_s": dt, "open_diagnostics": n, "change_s": [], "diagnostics": []}
    extra = "\nzz = torch.zeros(1, device='cuda:1')\n"
    for k in range(edits):
        version = k + 2
        new = text + extra if k % 2 == 0 else text
        for c in clients:  # interleaved: each tool sees the same edit in turn
            dt, n = await c.change(uri, version, new)
            out["tools"][c.name]["change_s"].append(dt)
            out["tools"][c.name]["diagnostics"].append(n)
    for c in clients:
        await c.stop()
    out["cli_scan_s"] = statistics.median(cli_scan(path, text) for _ in range(3))
    return out


def python_pass() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"])
    return time.perf_counter() - t


def summarize(results: list, args, machine: str) -> str:
    lines = ["# gpufix server: latency from a change to its diagnostics", "",
             f"- machine: {machine}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M')}; {args.edits} edits per file, each tool in turn on the same edit",
             f"- reproduce: `python benchmarks/bench_lsp.py {' '.join(args.display or [])} --large-lines {args.large_lines} --edits {args.edits}`",
             "- gpufix: `gpufix server` with `debounceMs: 0` (an editor waits the 150 ms default first); "
             "ruff: `ruff server` (its default rules), the same client and edits",
             f"- python -c pass: {results[0]['python_pass_s'] * 1000:.0f} ms",
             "",
             "| file | lines | tool | open -> diagnostics ms | change -> diagnostics ms (median) | p90 | max | diagnostics | ratio to ruff | `gpufix scan --stdin-filename` ms |",
             "|---|---:|---|---:|---:|---:|---:|---|---|---:|"]
    for r in results:
        ruff = r["tools"].get("ruff")
        ruff_med = statistics.median(ruff["change_s"]) if ruff else None
        for name, t in r["tools"].items():
            ch = sorted(t["change_s"])
            med = statistics.median(ch)
            p90 = ch[min(len(ch) - 1, int(round(0.9 * (len(ch) - 1))))]
            ratio = f"{med / ruff_med:.1f} x" if (ruff_med and name != "ruff") else ""
            diags = f"{min(t['diagnostics'])}-{max(t['diagnostics'])}"
            cli = f"{r['cli_scan_s'] * 1000:.0f}" if name == "gpufix" else ""
            lines.append(f"| {r['name']} | {r['lines']} | {name} | {t['open_s'] * 1000:.0f} | {med * 1000:.0f} | "
                         f"{p90 * 1000:.0f} | {max(ch) * 1000:.0f} | {diags} | {ratio} | {cli} |")
    return "\n".join(lines) + "\n"


async def main_async(args) -> list:
    tools = [("gpufix", [sys.executable, "-m", "gpufix", "server"], {"debounceMs": 0})]
    ruff = shutil.which("ruff") or (str(Path(sys.executable).parent / "ruff") if (Path(sys.executable).parent / "ruff").exists() else None)
    if ruff and not args.no_ruff:
        tools.append(("ruff", [ruff, "server"], {}))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "large-project"
        project.mkdir()
        (project / "pyproject.toml").write_text('[tool.gpufix]\nvisible-devices = "1"\n')
        big = project / "big_module.py"
        big.write_text(large_file(args.large_lines))
        targets = [(f"generated ({args.large_lines} lines)", big)] + [(Path(f).name, Path(f).resolve()) for f in args.files]
        for name, path in targets:
            r = await bench_file(path, args.edits, tools)
            r["name"] = name
            results.append(r)
    pp = statistics.median(python_pass() for _ in range(5))
    for r in results:
        r["python_pass_s"] = pp
        r["file"] = r["name"]  # no machine paths in the report
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--large-lines", type=int, default=20000)
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--no-ruff", action="store_true")
    ap.add_argument("--output", default=None, help="markdown report; a .json with every sample is written beside it")
    ap.add_argument("--display", nargs="*", help="how to name the files in the report's reproduce line")
    args = ap.parse_args()
    results = asyncio.run(main_async(args))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    text = summarize(results, args, machine)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
        Path(args.output).with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
