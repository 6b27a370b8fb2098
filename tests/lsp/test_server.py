"""`gpufix server` end to end: a real LSP client (pytest-lsp) talks to `python -m gpufix server`
over stdio, in a project on disk, and sees what an editor would: the diagnostics, the edits of each
code action applied to the text, the diagnostics following edits and config changes, notebooks
(cell by cell) and a shell script."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.uris import from_fs_path
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from conftest import ROOT, run_gpufix


POLICY = '[tool.gpufix]\nvisible-devices = "1"\n'
SCRIPT = 'import torch\nx = torch.zeros(3, device="cuda:1")\ntorch.cuda.set_device(1)\n'
HEADER = ('import os\n\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
          'if os.environ.get("CUDA_VISIBLE_DEVICES") not in ("", "-1"):  # keep an explicit CPU run\n'
          '    os.environ["CUDA_VISIBLE_DEVICES"] = "1"\n\n')
TIMEOUT = 90  # generous: CI machines are small and shared


@contextlib.asynccontextmanager
async def session(root: Path, options: dict = None, capabilities: str = "visual-studio-code"):
    client = LanguageClient(converter_factory=default_converter)
    client.versions = {}
    client.registrations = []

    def publish(client: LanguageClient, params: types.PublishDiagnosticsParams):
        client.diagnostics[params.uri] = params.diagnostics
        client.versions[params.uri] = params.version

    def register(client: LanguageClient, params: types.RegistrationParams):
        client.registrations.extend(params.registrations)

    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: publish,
                                   types.CLIENT_REGISTER_CAPABILITY: register})

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["GPUFIX_CACHE_DIR"] = str(root / ".cache-gpufix")
    await client.start_io(sys.executable, "-m", "gpufix", "server", env=env)
    try:
        await client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities(capabilities), root_uri=from_fs_path(str(root)),
            initialization_options={"debounceMs": 20, **(options or {})}))
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()


async def diagnostics_for(client, uri: str, version=None, settle: float = 0.0) -> list:
    """The diagnostics last published for `uri` (for `version`, when given)."""
    async def wait():
        while True:
            got = client.diagnostics.get(uri)
            if got is not None and (version is None or client.versions.get(uri) == version):
                return got
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    result = await asyncio.wait_for(wait(), TIMEOUT)
    if settle:
        await asyncio.sleep(settle)
        result = client.diagnostics[uri]
    return list(result)


def summary(diags) -> list:
    return [(d.code, d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character,
             d.severity.name) for d in diags]


def offset(text: str, pos: types.Position) -> int:
    lines = text.splitlines(keepends=True)
    return sum(len(ln) for ln in lines[:pos.line]) + pos.character


def apply_edits(text: str, edits) -> str:
    """What an editor does with a TextEdit list (ASCII texts: UTF-16 units are characters)."""
    spans = sorted(((offset(text, e.range.start), offset(text, e.range.end), e.new_text) for e in edits), reverse=True)
    for a, b, new in spans:
        text = text[:a] + new + text[b:]
    return text


def edits_of(action: types.CodeAction) -> dict:
    out = {}
    for change in action.edit.document_changes:
        out.setdefault(change.text_document.uri, []).extend(change.edits)
    return out


def open_text(client, uri: str, text: str, language: str = "python", version: int = 1) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=version, text=text)))


def change_text(client, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def actions_at(client, uri: str, rng: types.Range, only=None) -> list:
    got = await asyncio.wait_for(client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri), range=rng,
        context=types.CodeActionContext(diagnostics=[], only=only))), TIMEOUT)
    return list(got or [])


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text(POLICY)
    (root / "train.py").write_text(SCRIPT)
    return root


@pytest.mark.asyncio
async def test_diagnostics_on_open_match_the_cli(project):
    uri = from_fs_path(str(project / "train.py"))
    async with session(project) as client:
        open_text(client, uri, SCRIPT)
        diags = await diagnostics_for(client, uri, version=1)
    assert summary(diags) == [
        ("GPU101", 0, 0, 0, 12, "Error"),
        ("GPU102", 0, 0, 0, 12, "Error"),
        ("GPU001", 1, 26, 1, 34, "Error"),
        ("GPU001", 2, 22, 2, 23, "Error"),
    ]
    assert all(d.source == "gpufix" for d in diags)
    assert diags[2].message == '"cuda:1" means physical GPU 1, which is cuda:0 under CUDA_VISIBLE_DEVICES="1"; use "cuda:0"'
    assert diags[2].code_description.href.endswith("#gpu001-invalid-device-ordinal")
    # the same findings as `gpufix scan FILE` on that file
    cli = json.loads(run_gpufix("scan", "train.py", "--format", "json", "--no-cache", cwd=project).stdout)
    assert [(f["rule"], f["line"] - 1, f["column"] - 1, f["message"]) for f in cli["findings"]] == [
        (d.code, d.range.start.line, d.range.start.character, d.message) for d in diags]


@pytest.mark.asyncio
async def test_code_actions_apply_each_fix_fix_all_and_ignore(project):
    uri = from_fs_path(str(project / "train.py"))
    async with session(project) as client:
        open_text(client, uri, SCRIPT)
        diags = await diagnostics_for(client, uri, version=1)
        cuda1 = diags[2]
        actions = await actions_at(client, uri, cuda1.range, only=[types.CodeActionKind.QuickFix])
        assert [a.title for a in actions] == ['gpufix (GPU001): use "cuda:0"', "gpufix: ignore GPU001 on this line"]
        assert actions[0].is_preferred and actions[0].diagnostics[0].code == "GPU001"
        assert apply_edits(SCRIPT, edits_of(actions[0])[uri]) == SCRIPT.replace('"cuda:1"', '"cuda:0"')
        ignored = apply_edits(SCRIPT, edits_of(actions[1])[uri])
        assert ignored.splitlines()[1] == 'x = torch.zeros(3, device="cuda:1")  # gpufix: ignore[GPU001]'

        header = await actions_at(client, uri, diags[0].range, only=[types.CodeActionKind.QuickFix])
        titles = [a.title for a in header]
        assert titles == ["gpufix (GPU101): insert the CUDA_VISIBLE_DEVICES header", "gpufix: ignore GPU101 on this line",
                          "gpufix (GPU102): insert the CUDA_DEVICE_ORDER header", "gpufix: ignore GPU102 on this line"]
        assert apply_edits(SCRIPT, edits_of(header[0])[uri]) == HEADER + SCRIPT

        fix_all = await actions_at(client, uri, diags[0].range, only=["source.fixAll"])
        assert [(a.title, a.kind) for a in fix_all] == [("gpufix: fix all", "source.fixAll.gpufix")]
        fixed = apply_edits(SCRIPT, edits_of(fix_all[0])[uri])
        assert fixed == HEADER + SCRIPT.replace('"cuda:1"', '"cuda:0"').replace("set_device(1)", "set_device(0)")
        # exactly what `gpufix apply -` writes for this text
        assert fixed == run_gpufix("apply", "-", "--stdin-filename", "train.py", cwd=project, input=SCRIPT).stdout

        # the editor applies the ignore comment: that diagnostic goes, the others stay
        change_text(client, uri, 2, ignored)
        after = await diagnostics_for(client, uri, version=2)
        assert [d.code for d in after] == ["GPU101", "GPU102", "GPU001"]
        # and the fixed text has none left
        change_text(client, uri, 3, fixed)
        assert await diagnostics_for(client, uri, version=3) == []
        # nothing was written to disk
        assert (project / "train.py").read_text() == SCRIPT


@pytest.mark.asyncio
async def test_diagnostics_follow_edits_and_the_latest_version_wins(project):
    uri = from_fs_path(str(project / "train.py"))
    async with session(project, {"debounceMs": 50}) as client:
        open_text(client, uri, SCRIPT)
        await diagnostics_for(client, uri, version=1)
        # an incremental edit: "cuda:1" -> "cuda:0" removes that finding
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(1, 32), types.Position(1, 33)), text="0")]))
        diags = await diagnostics_for(client, uri, version=2)
        assert [(d.code, d.range.start.line) for d in diags] == [("GPU101", 0), ("GPU102", 0), ("GPU001", 2)]
        # a burst of versions: only the last one's diagnostics are published
        text = SCRIPT
        for v in range(3, 13):
            text = text + f'y{v} = torch.ones(1, device="cuda:{v % 2}")\n'
            change_text(client, uri, v, text)
        diags = await diagnostics_for(client, uri, version=12, settle=0.5)
        assert client.versions[uri] == 12
        assert [d.range.start.line for d in diags if d.code == "GPU001"] == [1, 2, 3, 5, 7, 9, 11]


@pytest.mark.asyncio
async def test_config_change_is_followed(project):
    uri = from_fs_path(str(project / "train.py"))
    async with session(project) as client:
        open_text(client, uri, SCRIPT)
        assert len(await diagnostics_for(client, uri, version=1)) == 4
        # the policy now ignores GPU001 and allows GPU 0 only: cuda:1 is still wrong, but ignored
        (project / "pyproject.toml").write_text(POLICY + 'ignore = ["GPU001"]\n')
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=from_fs_path(str(project / "pyproject.toml")), type=types.FileChangeType.Changed)]))
        for _ in range(100):
            await asyncio.sleep(0.1)
            if [d.code for d in client.diagnostics[uri]] == ["GPU101", "GPU102"]:
                break
        assert [d.code for d in client.diagnostics[uri]] == ["GPU101", "GPU102"]
        # now the config excludes the file: no diagnostics for it (as --force-exclude)
        (project / "pyproject.toml").write_text(POLICY + 'exclude = ["train.py"]\n')
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=from_fs_path(str(project / "pyproject.toml")), type=types.FileChangeType.Changed)]))
        for _ in range(100):
            await asyncio.sleep(0.1)
            if not client.diagnostics[uri]:
                break
        assert list(client.diagnostics[uri]) == []
        # the server asked the editor to watch the config files
        assert [r.method for r in client.registrations] == ["workspace/didChangeWatchedFiles"]
        watchers = client.registrations[0].register_options["watchers"]
        assert [w["globPattern"] for w in watchers] == ["**/pyproject.toml", "**/gpufix.toml"]


@pytest.mark.asyncio
async def test_hover_explains_the_rule(project):
    uri = from_fs_path(str(project / "train.py"))
    async with session(project) as client:
        open_text(client, uri, SCRIPT)
        await diagnostics_for(client, uri, version=1)
        hover = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(1, 30)))
        nothing = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(1, 2)))
    assert hover.contents.value.startswith('**GPU001** `invalid-device-ordinal`: "cuda:1" means physical GPU 1')
    assert "#### Why is this bad?" in hover.contents.value and "Fix (safe): use \"cuda:0\"" in hover.contents.value
    assert (hover.range.start.line, hover.range.start.character, hover.range.end.character) == (1, 26, 34)
    assert nothing is None


@pytest.mark.asyncio
async def test_shell_script(project):
    path = project / "run.sh"
    text = "#!/bin/sh\nexport CUDA_VISIBLE_DEVICES=0\npython train.py\n"
    path.write_text(text)
    uri = from_fs_path(str(path))
    async with session(project) as client:
        open_text(client, uri, text, language="shellscript")
        diags = await diagnostics_for(client, uri, version=1)
        assert summary(diags) == [("GPU102", 1, 28, 1, 29, "Error"), ("GPU103", 1, 28, 1, 29, "Error")]
        actions = await actions_at(client, uri, diags[1].range, only=[types.CodeActionKind.QuickFix])
        by_title = {a.title: a for a in actions}
        fixed = apply_edits(text, edits_of(by_title['gpufix (GPU103): set CUDA_VISIBLE_DEVICES="1"'])[uri])
        assert fixed == text.replace("DEVICES=0", "DEVICES=1")
        ignored = apply_edits(text, edits_of(by_title["gpufix: ignore GPU103 on this line"])[uri])
        assert ignored.splitlines()[1] == "export CUDA_VISIBLE_DEVICES=0  # gpufix: ignore[GPU103]"
        fix_all = await actions_at(client, uri, diags[0].range, only=["source.fixAll.gpufix"])
        all_fixed = apply_edits(text, edits_of(fix_all[0])[uri])
        assert all_fixed == "#!/bin/sh\nexport CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=1\npython train.py\n"
        change_text(client, uri, 2, ignored)
        assert [d.code for d in await diagnostics_for(client, uri, version=2)] == ["GPU102"]
        # a second code on the same line joins the existing ignore list
        again = await actions_at(client, uri, diags[0].range, only=[types.CodeActionKind.QuickFix])
        joined = [a for a in again if a.title == "gpufix: ignore GPU102 on this line"][0]
        assert apply_edits(ignored, edits_of(joined)[uri]).splitlines()[1] == \
            "export CUDA_VISIBLE_DEVICES=0  # gpufix: ignore[GPU103, GPU102]"


@pytest.mark.asyncio
async def test_notebook_cells(project):
    nb_path = project / "explore.ipynb"
    nb_uri = from_fs_path(str(nb_path))
    cells = ["import torch\n", "%pip install x\nmodel = torch.nn.Linear(2, 2).to('cuda:1')\n"]
    cell_uris = [f"vscode-notebook-cell:{nb_path}#cell{i}" for i in range(len(cells))]
    async with session(project) as client:
        client.notebook_document_did_open(types.DidOpenNotebookDocumentParams(
            notebook_document=types.NotebookDocument(uri=nb_uri, notebook_type="jupyter-notebook", version=1, cells=[
                types.NotebookCell(kind=types.NotebookCellKind.Code, document=u) for u in cell_uris]),
            cell_text_documents=[types.TextDocumentItem(uri=u, language_id="python", version=1, text=t)
                                 for u, t in zip(cell_uris, cells)]))
        second = await diagnostics_for(client, cell_uris[1])
        first = await diagnostics_for(client, cell_uris[0])
        assert summary(first) == [("GPU101", 0, 0, 0, 12, "Error"), ("GPU102", 0, 0, 0, 12, "Error")]
        assert summary(second) == [("GPU001", 1, 33, 1, 41, "Error")]  # the line in its cell, after the magic
        actions = await actions_at(client, cell_uris[1], second[0].range, only=[types.CodeActionKind.QuickFix])
        quick = edits_of(actions[0])
        assert list(quick) == [cell_uris[1]]
        assert apply_edits(cells[1], quick[cell_uris[1]]) == cells[1].replace("cuda:1", "cuda:0")
        fix_all = await actions_at(client, cell_uris[0], first[0].range, only=["source.fixAll"])
        edits = edits_of(fix_all[0])
        assert apply_edits(cells[0], edits[cell_uris[0]]) == HEADER + cells[0]
        assert apply_edits(cells[1], edits[cell_uris[1]]) == cells[1].replace("cuda:1", "cuda:0")
        # the user fixes the second cell: its diagnostic goes
        client.notebook_document_did_change(types.DidChangeNotebookDocumentParams(
            notebook_document=types.VersionedNotebookDocumentIdentifier(uri=nb_uri, version=2),
            change=types.NotebookDocumentChangeEvent(cells=types.NotebookDocumentCellChanges(text_content=[
                types.NotebookDocumentCellContentChanges(
                    document=types.VersionedTextDocumentIdentifier(uri=cell_uris[1], version=2),
                    changes=[types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(1, 39), types.Position(1, 40)), text="0")])]))))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not client.diagnostics[cell_uris[1]]:
                break
        assert list(client.diagnostics[cell_uris[1]]) == []
        assert [d.code for d in client.diagnostics[cell_uris[0]]] == ["GPU101", "GPU102"]


@pytest.mark.asyncio
async def test_unsafe_fixes_only_when_asked(project):
    text = 'import os\nos.environ.setdefault("CUDA_VISIBLE_DEVICES", "1")\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
    path = project / "setenv.py"
    path.write_text(text)
    uri = from_fs_path(str(path))
    for unsafe in (False, True):
        async with session(project, {"unsafeFixes": unsafe}) as client:
            open_text(client, uri, text)
            diags = [d for d in await diagnostics_for(client, uri, version=1) if d.code == "GPU107"]
            assert len(diags) == 1
            actions = await actions_at(client, uri, diags[0].range, only=[types.CodeActionKind.QuickFix])
            titles = [a.title for a in actions]
            fixes = [t for t in titles if t.startswith("gpufix (GPU107)")]
            assert (fixes and fixes[0].endswith("(unsafe fix)")) if unsafe else not fixes


def test_server_without_the_extra_says_how_to_install():
    code = ("import sys; sys.modules['pygls'] = None; sys.argv = ['gpufix', 'server']; "
            "from gpufix.cli import main; main()")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('gpufix: error: `gpufix server` needs the language-server extra: '
                                   'pip install "gpufix[lsp]" (pygls and lsprotocol)')


@pytest.mark.asyncio
async def test_related_information_and_the_project_context(tmp_path):
    root = tmp_path / "noconfig"
    root.mkdir()
    (root / "pyproject.toml").write_text("")  # a project without a policy
    setter = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "{}"\nimport torch\n'
    for name, value in (("a.py", "1"), ("b.py", "1"), ("c.py", "1")):
        (root / name).write_text(setter.format(value))
    late = 'import torch\nimport os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\n'
    uri_c, uri_late = from_fs_path(str(root / "c.py")), from_fs_path(str(root / "late.py"))
    async with session(root) as client:
        # in the editor c.py now sets "0", unlike the project's other files (GPU103 judges across files)
        open_text(client, uri_c, setter.format("0"))
        diags = await diagnostics_for(client, uri_c, version=1)
        assert [(d.code, d.range.start.line) for d in diags] == [("GPU103", 2)]
        assert diags[0].message.startswith('CUDA_VISIBLE_DEVICES is set to "0" here, but the project\'s files disagree '
                                           '("1" in 2 of 3 files, "0" in 1 of 3 files)')
        open_text(client, uri_late, late)
        diags = [d for d in await diagnostics_for(client, uri_late, version=1) if d.code == "GPU105"]
    assert len(diags) == 1 and diags[0].range.start.line == 2
    (related,) = diags[0].related_information
    assert (related.location.uri, related.location.range.start.line, related.location.range.start.character,
            related.location.range.end.character) == (uri_late, 0, 0, 12)
    assert related.message == "import of torch: before the mask"


@pytest.mark.asyncio
async def test_saving_the_config_in_the_editor_reloads_it(project):
    """For an editor that watches no files: saving pyproject.toml (open in the editor) reloads it."""
    uri = from_fs_path(str(project / "train.py"))
    cfg_uri = from_fs_path(str(project / "pyproject.toml"))
    async with session(project) as client:
        open_text(client, uri, SCRIPT)
        assert len(await diagnostics_for(client, uri, version=1)) == 4
        open_text(client, cfg_uri, POLICY, language="toml")
        new_policy = POLICY + 'ignore = ["GPU10"]\n'
        change_text(client, cfg_uri, 2, new_policy)
        (project / "pyproject.toml").write_text(new_policy)
        client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(cfg_uri)))
        for _ in range(100):
            await asyncio.sleep(0.1)
            if [d.code for d in client.diagnostics[uri]] == ["GPU001", "GPU001"]:
                break
        assert [d.code for d in client.diagnostics[uri]] == ["GPU001", "GPU001"]


@pytest.mark.asyncio
async def test_a_long_analysis_does_not_block_the_protocol(project):
    """While a big document is being judged (on the analysis thread), the server still answers:
    a hover on a document already judged comes back before the big one's diagnostics."""
    big = project / "big.py"
    body = "import torch\n" + "".join(f"def f{i}(x):\n    return x.to('cuda:{i % 2}') if x else x + {i}\n\n"
                                      for i in range(3500))
    big.write_text(body)
    uri, big_uri = from_fs_path(str(project / "train.py")), from_fs_path(str(big))
    async with session(project) as client:
        open_text(client, uri, SCRIPT)
        await diagnostics_for(client, uri, version=1)
        open_text(client, big_uri, body)
        hover = await asyncio.wait_for(client.text_document_hover_async(
            types.HoverParams(types.TextDocumentIdentifier(uri), types.Position(1, 30))), TIMEOUT)
        answered_first = big_uri not in client.diagnostics
        big_diags = await diagnostics_for(client, big_uri, version=1)
    assert hover is not None and hover.contents.value.startswith("**GPU001**")
    assert answered_first
    assert sum(d.code == "GPU001" for d in big_diags) == 1750
