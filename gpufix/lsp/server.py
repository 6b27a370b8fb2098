"""`gpufix server`: the Language Server Protocol over stdio (pygls).

Diagnostics are pushed for every open document (text files and notebooks) from its text in the
editor, on open, on change (debounced) and on save. Each document has one analysis in flight at a
time, run off the event loop on the analysis thread; a newer version supersedes it (a pending one
is cancelled before it starts, a running one has its result dropped), so the editor never waits on
gpufix. Code actions (one quick fix per fix, `source.fixAll.gpufix`, a suppression comment) and
hover read the analysis of the version the editor holds.

Settings (initializationOptions, or `workspace/didChangeConfiguration` with a `gpufix` section):
`unsafeFixes` (offer unsafe fixes, labelled, and let "fix all" apply them; default false),
`debounceMs` (default 150), `select` / `extendSelect` / `ignore` (as the CLI's options),
`rulesDocsUrl` (a template for the rule links, `{code}` and `{anchor}` filled in).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
from typing import Optional
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from gpufix import __version__
from gpufix.lsp.analysis import (
    CONFIG_NAMES,
    Analysis,
    Analyzer,
    encode_document,
    fix_all_edits,
    ignore_edit,
    notebook_bytes,
    quick_fix_edits,
)

log = logging.getLogger("gpufix.lsp")

SOURCE = "gpufix"
FIX_ALL_KIND = "source.fixAll.gpufix"
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}
# A file the editor names by a language only (an unsaved buffer) is judged as a file of that kind
# in the workspace folder.
UNTITLED_NAMES = {"python": "untitled.py", "shellscript": "untitled.sh", "dockerfile": "Dockerfile",
                  "yaml": "untitled.yaml", "toml": "untitled.toml", "json": "untitled.json", "dotenv": ".env"}


@dataclasses.dataclass
class Settings:
    unsafe_fixes: bool = False
    debounce_ms: int = 150
    select: tuple = ()
    extend_select: tuple = ()
    ignore: tuple = ()
    rules_docs_url: Optional[str] = None

    @classmethod
    def from_options(cls, options) -> "Settings":
        if not isinstance(options, dict):
            return cls()
        if isinstance(options.get("settings"), dict):  # ruff-style {"settings": {...}}
            options = options["settings"]
        if isinstance(options.get("gpufix"), dict):
            options = options["gpufix"]

        def codes(key):
            value = options.get(key) or ()
            return tuple(value.split(",")) if isinstance(value, str) else tuple(str(c) for c in value)

        debounce = options.get("debounceMs", 150)
        return cls(
            unsafe_fixes=bool(options.get("unsafeFixes", False)),
            debounce_ms=int(debounce) if isinstance(debounce, (int, float)) and debounce >= 0 else 150,
            select=codes("select"), extend_select=codes("extendSelect"), ignore=codes("ignore"),
            rules_docs_url=options.get("rulesDocsUrl") if isinstance(options.get("rulesDocsUrl"), str) else None,
        )

    def overrides(self) -> dict:
        return {"select": self.select or None, "extend_select": self.extend_select, "ignore": self.ignore}


@dataclasses.dataclass
class DocState:
    """What the server knows of one open document (a text file, or a notebook and its cells)."""

    key: str  # the document's URI (a notebook's URI for its cells)
    path: str
    version: Optional[int] = None
    task: Optional[asyncio.Task] = None
    analysis: Optional[Analysis] = None
    published: tuple = ()  # the URIs diagnostics were last published for
    raw: Optional[bytes] = None  # the text the analysis judged
    notebook: bool = False


class GpufixServer(LanguageServer):
    def __init__(self):
        super().__init__(
            "gpufix", __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            notebook_document_sync=types.NotebookDocumentSyncOptions(
                notebook_selector=[types.NotebookDocumentFilterWithCells(
                    cells=[types.NotebookCellLanguage(language="python")], notebook="*")],
                save=True,
            ),
        )
        self.settings = Settings()
        self.analyzer: Optional[Analyzer] = None
        self.docs: dict = {}
        # One analysis thread: the engine is not thread-safe, and one core judging the document
        # being typed is what an editor needs; the event loop stays free for the protocol.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpufix-analysis")
        self.config_error: Optional[str] = None

    # -- documents ---------------------------------------------------------------------------
    def configure(self, options) -> None:
        from gpufix.config import ConfigError

        self.settings = Settings.from_options(options)
        try:
            self.analyzer = Analyzer(self.settings.overrides())
            self.config_error = None
        except ConfigError as exc:  # an unknown rule code in the settings
            self.config_error = str(exc)
            self.settings = dataclasses.replace(self.settings, select=(), extend_select=(), ignore=())
            self.analyzer = Analyzer()
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"gpufix: {exc}"))

    def _path_of(self, uri: str, language: str = "python") -> str:
        if urlparse(uri).scheme == "file":
            return os.path.abspath(to_fs_path(uri))
        root = self.workspace.root_path or os.getcwd()
        name = unquote(urlparse(uri).path.rsplit("/", 1)[-1]) or "untitled"
        if "." not in name and not name.startswith("."):
            name = UNTITLED_NAMES.get(language, "untitled.py")
        return os.path.join(root, name)

    def snapshot(self, state: DocState):
        """(version, bytes) of the document as the editor holds it now (read on the event loop)."""
        if state.notebook:
            nb = self.workspace.get_notebook_document(notebook_uri=state.key)
            if nb is None:
                return None
            cells = []
            for cell in nb.cells:
                doc = self.workspace.get_text_document(cell.document)
                kind = "code" if cell.kind == types.NotebookCellKind.Code and doc.language_id in (None, "python") else "markdown"
                cells.append((kind, doc.source))
            return nb.version, notebook_bytes(cells)
        doc = self.workspace.text_documents.get(unquote(state.key)) or self.workspace.text_documents.get(state.key)
        if doc is None:
            return None
        return doc.version, encode_document(doc.source)

    def open_document(self, key: str, path: str, version, notebook: bool = False) -> None:
        state = self.docs.get(key)
        if state is None:
            state = self.docs[key] = DocState(key, path, notebook=notebook)
        state.version = version
        self.schedule(state, 0)

    def schedule(self, state: DocState, delay_ms: int) -> None:
        """Analyse `state` after `delay_ms`; a newer call supersedes this one."""
        if state.task is not None and not state.task.done():
            state.task.cancel()
        state.task = asyncio.ensure_future(self._analyse_later(state, delay_ms))

    async def _analyse_later(self, state: DocState, delay_ms: int) -> None:
        try:
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            await self.analyse_now(state)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - a bug in gpufix must not take the server down
            log.exception("gpufix: analysis of %s failed", state.path)
            self.window_log_message(types.LogMessageParams(types.MessageType.Error,
                                                           f"gpufix: analysis of {state.path} failed: {type(exc).__name__}: {exc}"))

    async def analyse_now(self, state: DocState) -> Optional[Analysis]:
        snap = self.snapshot(state)
        if snap is None:
            return None
        version, raw = snap
        if state.analysis is not None and state.raw == raw:
            # the same text again (a save, an undo back to it): the same findings
            state.analysis = dataclasses.replace(state.analysis, version=version)
            self.publish(state)
            return state.analysis
        loop = asyncio.get_running_loop()

        def job():
            # superseded while it waited for the thread: skip the work
            current = self.docs.get(state.key)
            if current is not state or (state.version is not None and version is not None and state.version != version):
                return None
            return self.analyzer.analyse(raw, state.path, version)

        analysis = await loop.run_in_executor(self.pool, job)
        if analysis is None or self.docs.get(state.key) is not state:
            return None
        now = self.snapshot(state)
        if now is None or now[0] != version:
            return None  # a newer version arrived meanwhile: its own analysis publishes
        state.analysis, state.raw = analysis, raw
        self.publish(state)
        return analysis

    async def current_analysis(self, state: DocState) -> Optional[Analysis]:
        """The analysis of the version the editor holds (made now when the last one is older)."""
        snap = self.snapshot(state)
        if snap is None:
            return None
        if state.analysis is not None and state.analysis.version == snap[0]:
            return state.analysis
        if state.task is not None and not state.task.done():
            state.task.cancel()
        return await self.analyse_now(state)

    def close_document(self, key: str) -> None:
        state = self.docs.pop(key, None)
        if state is None:
            return
        if state.task is not None and not state.task.done():
            state.task.cancel()
        for uri in state.published:
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    def reanalyse_all(self) -> None:
        """The config changed: every open document is judged again (and until then, a code action
        or hover judges it afresh rather than use findings made under the old config)."""
        for state in list(self.docs.values()):
            state.analysis = None
            self.schedule(state, 0)

    # -- positions ---------------------------------------------------------------------------
    def cell_uris(self, state: DocState) -> list:
        nb = self.workspace.get_notebook_document(notebook_uri=state.key)
        return [c.document for c in nb.cells] if nb is not None else []

    def uri_of(self, state: DocState, cell: Optional[int]) -> Optional[str]:
        if not state.notebook:
            return state.key
        uris = self.cell_uris(state)
        return uris[cell - 1] if cell and 0 < cell <= len(uris) else None

    def _lines(self, uri: str) -> list:
        doc = self.workspace.get_text_document(uri)
        return list(doc.lines)

    def lsp_range(self, uri: str, line: int, col: int, end_line: int, end_col: int) -> types.Range:
        """gpufix's 1-based lines and code-point columns -> the client's position encoding."""
        lines = self._lines(uri)
        codec = self.workspace.position_codec
        start = types.Position(max(line - 1, 0), max(col, 0))
        end = types.Position(max(end_line - 1, 0), max(end_col, 0))
        if not lines:
            return types.Range(types.Position(0, 0), types.Position(0, 0))
        return types.Range(codec.position_to_client_units(lines, start), codec.position_to_client_units(lines, end))

    def finding_range(self, uri: str, f) -> types.Range:
        return self.lsp_range(uri, f.line, f.column - 1, f.end_line or f.line, max((f.end_column or f.column) - 1, f.column - 1))

    # -- diagnostics -------------------------------------------------------------------------
    def docs_url(self, code: str) -> Optional[str]:
        from gpufix.catalog import catalog_dir, load_rule_docs

        doc = load_rule_docs().get(code)
        anchor = f"{code.lower()}-{doc.name}" if doc else code.lower()
        if self.settings.rules_docs_url:
            return self.settings.rules_docs_url.format(code=code, anchor=anchor)
        catalog = catalog_dir()
        rules_md = catalog.parent / "docs" / "rules.md"  # a source checkout: the rendered docs
        if rules_md.is_file():
            return from_fs_path(str(rules_md)) + "#" + anchor
        toml = catalog / f"{code}.toml"  # an installed wheel: the rule's catalogue entry
        return from_fs_path(str(toml)) if toml.is_file() else None

    def diagnostic(self, uri: str, f, state: Optional[DocState] = None) -> types.Diagnostic:
        href = self.docs_url(f.rule)
        related = None
        for line, col, end_line, end_col, message, cell in f.related:
            # a notebook's related place may be in another cell
            where = self.uri_of(state, cell) if (state is not None and state.notebook) else uri
            if where is None:
                continue
            related = (related or []) + [types.DiagnosticRelatedInformation(
                location=types.Location(uri=where, range=self.lsp_range(where, line, col - 1, end_line, end_col - 1)),
                message=message)]
        return types.Diagnostic(
            range=self.finding_range(uri, f),
            message=f.message,
            severity=SEVERITY.get(f.severity, types.DiagnosticSeverity.Warning),
            code=f.rule,
            code_description=types.CodeDescription(href=href) if href else None,
            source=SOURCE,
            related_information=related,
            data={"rule": f.rule, "fix": f.fix.title if f.fix else None},
        )

    def error_diagnostic(self, uri: str, e) -> types.Diagnostic:
        line = (e.line or 1)
        return types.Diagnostic(
            range=self.lsp_range(uri, line, 0, line, 0),
            message=f"gpufix cannot check this file: {e.message}",
            severity=types.DiagnosticSeverity.Warning,
            code=e.kind,
            source=SOURCE,
        )

    def publish(self, state: DocState) -> None:
        analysis = state.analysis
        by_uri: dict = {}
        if state.notebook:
            for uri in self.cell_uris(state):
                by_uri[uri] = []
        else:
            by_uri[state.key] = []
        for f in analysis.findings:
            uri = self.uri_of(state, f.cell)
            if uri is not None:
                by_uri.setdefault(uri, []).append(self.diagnostic(uri, f, state))
        for e in analysis.errors:
            uri = self.uri_of(state, getattr(e, "cell", None) or 1) if state.notebook else state.key
            if uri is not None:
                by_uri.setdefault(uri, []).append(self.error_diagnostic(uri, e))
        for uri in set(state.published) - set(by_uri):
            by_uri[uri] = []
        for uri, diagnostics in by_uri.items():
            version = None if state.notebook else analysis.version
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version))
        state.published = tuple(u for u, d in by_uri.items() if d)

    # -- code actions ------------------------------------------------------------------------
    def state_for(self, uri: str) -> tuple:
        """(DocState, cell index or None) of a text document or notebook cell URI."""
        nb = self.workspace.get_notebook_document(cell_uri=uri)
        if nb is not None:
            state = self.docs.get(nb.uri)
            cells = [c.document for c in nb.cells]
            return state, (cells.index(uri) + 1 if uri in cells else None)
        return self.docs.get(uri), None

    def workspace_edit(self, state: DocState, edits) -> types.WorkspaceEdit:
        by_uri: dict = {}
        for e in edits:
            uri = self.uri_of(state, e.cell)
            if uri is None:
                continue
            by_uri.setdefault(uri, []).append(types.TextEdit(range=self.lsp_range(uri, e.line, e.col, e.end_line, e.end_col),
                                                             new_text=e.content))
        caps = self.client_capabilities.workspace
        versioned = bool(caps and caps.workspace_edit and caps.workspace_edit.document_changes)
        if versioned:
            changes = []
            for uri, text_edits in by_uri.items():
                doc = self.workspace.get_text_document(uri)
                changes.append(types.TextDocumentEdit(
                    text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=doc.version),
                    edits=text_edits))
            return types.WorkspaceEdit(document_changes=changes)
        return types.WorkspaceEdit(changes=by_uri)

    @staticmethod
    def _overlaps(rng: types.Range, other: types.Range) -> bool:
        def key(p):
            return (p.line, p.character)

        return not (key(other.end) < key(rng.start) or key(rng.end) < key(other.start))

    def plan_actions(self, analysis: Analysis, findings: list, fix_all: bool) -> tuple:
        """On the analysis thread: each finding's (quick-fix edits or None, ignore edit or None),
        and the fix-all edits (gpufix positions; the LSP objects are built on the event loop)."""
        per = []
        for f in findings:
            quick = None
            if f.fix is not None and (f.fix.applicability == "safe" or self.settings.unsafe_fixes):
                quick = quick_fix_edits(analysis, f)
            per.append((f, quick, ignore_edit(analysis, f)))
        return per, (fix_all_edits(analysis, unsafe=self.settings.unsafe_fixes) if fix_all else [])

    def findings_at(self, state: DocState, analysis: Analysis, uri: str, cell: Optional[int], rng: types.Range) -> list:
        return [f for f in analysis.findings if (f.cell if state.notebook else None) == cell
                and self._overlaps(rng, self.finding_range(uri, f))]

    def code_actions(self, state: DocState, uri: str, per: list, fix_all: list) -> list:
        actions = []
        for f, quick, ignore in per:
            diag = [self.diagnostic(uri, f, state)]
            if quick:
                unsafe = f.fix.applicability != "safe"
                actions.append(types.CodeAction(
                    title=f"gpufix ({f.rule}): {f.fix.title}" + (" (unsafe fix)" if unsafe else ""),
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=diag,
                    is_preferred=not unsafe,
                    edit=self.workspace_edit(state, quick),
                ))
            if ignore is not None:
                actions.append(types.CodeAction(
                    title=f"gpufix: ignore {f.rule} on this line",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=diag,
                    edit=self.workspace_edit(state, [ignore]),
                ))
        if fix_all:
            actions.append(types.CodeAction(
                title="gpufix: fix all" + (" (including unsafe fixes)" if self.settings.unsafe_fixes else ""),
                kind=FIX_ALL_KIND,
                edit=self.workspace_edit(state, fix_all),
            ))
        return actions

    # -- hover -------------------------------------------------------------------------------
    def hover(self, state: DocState, analysis: Analysis, uri: str, cell: Optional[int], position: types.Position):
        from gpufix.catalog import load_rule_docs

        found = self.findings_at(state, analysis, uri, cell, types.Range(position, position))
        if not found:
            return None
        docs = load_rule_docs()
        parts = []
        for f in found:
            doc = docs.get(f.rule)
            head = f"**{f.rule}** `{doc.name}`" if doc else f"**{f.rule}**"
            parts.append(f"{head}: {f.message}")
            if f.fix is not None:
                parts.append(f"Fix ({f.fix.applicability}): {f.fix.title}")
            if doc is not None:
                text = doc.markdown().split("\n", 1)[1].lstrip("\n")  # the title is the head above
                parts.append(text.replace("\n## ", "\n#### "))
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value="\n\n".join(parts)),
            range=self.finding_range(uri, found[0]),
        )


server = GpufixServer()


@server.feature(types.INITIALIZE)
def _initialize(ls: GpufixServer, params: types.InitializeParams):
    ls.configure(params.initialization_options)


@server.feature(types.INITIALIZED)
async def _initialized(ls: GpufixServer, params: types.InitializedParams):
    caps = ls.client_capabilities.workspace
    if caps and caps.did_change_watched_files and caps.did_change_watched_files.dynamic_registration:
        watchers = [types.FileSystemWatcher(glob_pattern=f"**/{name}") for name in CONFIG_NAMES]
        try:
            await ls.client_register_capability_async(types.RegistrationParams(registrations=[types.Registration(
                id="gpufix-config-files", method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers))]))
        except Exception:  # noqa: BLE001 - a client that refuses: config changes are seen on save
            log.info("gpufix: the client did not register the config file watchers")


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def _did_change_configuration(ls: GpufixServer, params: types.DidChangeConfigurationParams):
    settings = params.settings
    if isinstance(settings, dict) and isinstance(settings.get("settings", settings).get("gpufix"), dict):
        ls.configure(settings)
        ls.reanalyse_all()


@server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
def _did_change_watched_files(ls: GpufixServer, params: types.DidChangeWatchedFilesParams):
    names = {unquote(urlparse(c.uri).path).rsplit("/", 1)[-1] for c in params.changes}
    if names & set(CONFIG_NAMES):
        reload_config(ls)


def reload_config(ls: GpufixServer) -> None:
    # on the analysis thread: an analysis never sees half of a reload
    ls.pool.submit(ls.analyzer.reload)
    ls.reanalyse_all()


def _edited(ls: GpufixServer, uri: str, version) -> None:
    """A text or notebook document changed: its new version is judged after the debounce."""
    state = ls.docs.get(uri)
    if state is not None:
        state.version = version
        ls.schedule(state, ls.settings.debounce_ms)


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def _did_open(ls: GpufixServer, params: types.DidOpenTextDocumentParams):
    doc = params.text_document
    ls.open_document(doc.uri, ls._path_of(doc.uri, doc.language_id), doc.version)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def _did_change(ls: GpufixServer, params: types.DidChangeTextDocumentParams):
    _edited(ls, params.text_document.uri, params.text_document.version)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def _did_save(ls: GpufixServer, params: types.DidSaveTextDocumentParams):
    uri = params.text_document.uri
    name = unquote(urlparse(uri).path).rsplit("/", 1)[-1]
    ls.pool.submit(ls.analyzer.forget_projects)  # another file's imports may have changed
    if name in CONFIG_NAMES:
        reload_config(ls)
        return
    state = ls.docs.get(uri)
    if state is not None:
        state.raw = None  # judged again with the project index of the saved files
        ls.schedule(state, 0)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def _did_close(ls: GpufixServer, params: types.DidCloseTextDocumentParams):
    ls.close_document(params.text_document.uri)


@server.feature(types.NOTEBOOK_DOCUMENT_DID_OPEN)
def _nb_open(ls: GpufixServer, params: types.DidOpenNotebookDocumentParams):
    nb = params.notebook_document
    path = ls._path_of(nb.uri)
    if not path.endswith(".ipynb"):
        path += ".ipynb"
    ls.open_document(nb.uri, path, nb.version, notebook=True)


@server.feature(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
def _nb_change(ls: GpufixServer, params: types.DidChangeNotebookDocumentParams):
    _edited(ls, params.notebook_document.uri, params.notebook_document.version)


@server.feature(types.NOTEBOOK_DOCUMENT_DID_SAVE)
def _nb_save(ls: GpufixServer, params: types.DidSaveNotebookDocumentParams):
    state = ls.docs.get(params.notebook_document.uri)
    if state is not None:
        ls.schedule(state, 0)


@server.feature(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
def _nb_close(ls: GpufixServer, params: types.DidCloseNotebookDocumentParams):
    state = ls.docs.get(params.notebook_document.uri)
    if state is not None:
        # the cells' URIs are gone from the workspace now: clear what was published for them
        for uri in state.published:
            ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        state.published = ()
    ls.close_document(params.notebook_document.uri)


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix, FIX_ALL_KIND], resolve_provider=False),
)
async def _code_action(ls: GpufixServer, params: types.CodeActionParams):
    uri = params.text_document.uri
    state, cell = ls.state_for(uri)
    if state is None:
        return None
    analysis = await ls.current_analysis(state)
    if analysis is None:
        return None
    only = params.context.only

    def wants(kind: str) -> bool:
        return not only or any(kind == k or kind.startswith(k + ".") for k in only)

    findings = ls.findings_at(state, analysis, uri, cell, params.range) if wants(types.CodeActionKind.QuickFix) else []
    fix_all = wants(FIX_ALL_KIND) and any(f.fix for f in analysis.findings)
    if not findings and not fix_all:
        return None
    loop = asyncio.get_running_loop()
    # the fixes run the fixer (libcst): on the analysis thread, not the event loop
    per, all_edits = await loop.run_in_executor(ls.pool, ls.plan_actions, analysis, findings, fix_all)
    if ls.snapshot(state) is None or ls.snapshot(state)[0] != analysis.version:
        return None  # the document changed meanwhile: these edits are for an older text
    return ls.code_actions(state, uri, per, all_edits) or None


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def _hover(ls: GpufixServer, params: types.HoverParams):
    state, cell = ls.state_for(params.text_document.uri)
    if state is None:
        return None
    analysis = await ls.current_analysis(state)
    if analysis is None:
        return None
    return ls.hover(state, analysis, params.text_document.uri, cell, params.position)


def main() -> None:
    server.start_io()
