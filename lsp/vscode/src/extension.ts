// The VS Code client of `codesearch lsp`: starts the server, and adds two commands on top of
// what the language client gives for free (workspace symbols, code lenses, diagnostics):
// "Search code", a live QuickPick over codesearch/search, and "Find similar code", a QuickPick
// over codesearch/similar for the function under the cursor.

import * as vscode from "vscode";
import {
  LanguageClient,
  LanguageClientOptions,
  Position,
  Range,
  ServerOptions,
  TransportKind,
} from "vscode-languageclient/node";

/** One result of codesearch/search or codesearch/similar, as the server sends it. */
interface Hit {
  uri: string;
  range: Range;
  name: string;
  kind: string;
  score: number;
  snippet?: string;
  language?: string;
}

interface HitsResult {
  hits: Hit[];
}

/** A hit to open, or (without `hit`) a line that says why there are none. */
interface HitItem extends vscode.QuickPickItem {
  hit?: Hit;
}

/** The languages the server chunks; documents of other languages are not sent to it. */
const LANGUAGES = [
  "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "java",
  "ruby", "php", "rust", "c", "cpp", "csharp",
];

/** How long "Search code" waits after the last keystroke before asking the server. */
const SEARCH_DEBOUNCE_MS = 200;

/** Settings the server reads at start: changing one restarts it. */
const SERVER_SETTINGS = [
  "server.command", "server.args", "model", "codeLens", "duplicateDiagnostics", "similarityThreshold", "debounceMs",
];

let client: LanguageClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
    vscode.commands.registerCommand("codesearch.searchCode", () => searchCode()),
    vscode.commands.registerCommand("codesearch.findSimilar", () => findSimilar()),
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (SERVER_SETTINGS.some((key) => event.affectsConfiguration(`codesearch.${key}`))) {
        await restartClient();
      }
    }),
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}

async function startClient(): Promise<void> {
  const config = vscode.workspace.getConfiguration("codesearch");
  const serverOptions: ServerOptions = {
    command: config.get<string>("server.command", "codesearch"),
    args: config.get<string[]>("server.args", ["lsp"]),
    transport: TransportKind.stdio,
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: LANGUAGES.map((language) => ({ scheme: "file", language })),
    initializationOptions: initializationOptions(config),
    middleware: {
      // Code lenses from the server run codesearch.similar; show its hits instead of dropping them.
      executeCommand: async (command, args, next) => {
        const result = await next(command, args);
        if (command === "codesearch.similar" && isHitsResult(result)) {
          await showHits(result.hits, "Similar code");
        }
        return result;
      },
    },
  };
  client = new LanguageClient("codesearch", "codesearch", serverOptions, clientOptions);
  try {
    await client.start();
  } catch (error) {
    const command = [serverOptions.command, ...(serverOptions.args ?? [])].join(" ");
    void vscode.window.showErrorMessage(
      `codesearch: could not start \`${command}\` (${String(error)}). ` +
        "Install codesearch or set codesearch.server.command.",
    );
  }
}

async function stopClient(): Promise<void> {
  const running = client;
  client = undefined;
  if (running?.isRunning()) {
    await running.stop();
  }
}

async function restartClient(): Promise<void> {
  await stopClient();
  await startClient();
}

/** Settings the server reads once, at initialize; empty values are left out so its defaults apply. */
function initializationOptions(config: vscode.WorkspaceConfiguration): Record<string, unknown> {
  const options: Record<string, unknown> = {
    codeLens: config.get<boolean>("codeLens", true),
    duplicateDiagnostics: config.get<boolean>("duplicateDiagnostics", false),
    similarityThreshold: config.get<number>("similarityThreshold", 0.95),
    debounceMs: config.get<number>("debounceMs", 300),
  };
  const model = config.get<string>("model", "");
  if (model) {
    options.model = model;
  }
  return options;
}

/** The running client, or undefined after telling the user why there is none. */
function runningClient(): LanguageClient | undefined {
  if (client?.isRunning()) {
    return client;
  }
  void vscode.window.showErrorMessage("codesearch: the language server is not running (see the codesearch output).");
  return undefined;
}

function resultCount(): number {
  return vscode.workspace.getConfiguration("codesearch").get<number>("results", 20);
}

/** "Search code": results refresh as the user types; accepting one opens it. */
async function searchCode(): Promise<void> {
  const lsp = runningClient();
  if (!lsp) {
    return;
  }
  const pick = vscode.window.createQuickPick<HitItem>();
  pick.title = "codesearch";
  pick.placeholder = "Describe the code you are looking for";
  pick.matchOnDescription = true;
  let timer: NodeJS.Timeout | undefined;
  let pending: vscode.CancellationTokenSource | undefined;

  const search = async (query: string): Promise<void> => {
    pending?.cancel();
    if (!query.trim()) {
      pick.items = [];
      pick.busy = false;
      return;
    }
    const cancel = new vscode.CancellationTokenSource();
    pending = cancel;
    pick.busy = true;
    try {
      const result = await lsp.sendRequest<HitsResult>(
        "codesearch/search",
        { query, k: resultCount() },
        cancel.token,
      );
      if (!cancel.token.isCancellationRequested) {
        pick.items = result.hits.length > 0 ? result.hits.map(toItem) : [notice("No results")];
      }
    } catch (error) {
      if (!cancel.token.isCancellationRequested) {
        // e.g. "no index of ... yet: codesearch is building it", while the first index is built
        pick.items = [notice(errorMessage(error))];
      }
    } finally {
      if (pending === cancel) {
        pick.busy = false;
      }
    }
  };

  pick.onDidChangeValue((value) => {
    clearTimeout(timer);
    timer = setTimeout(() => void search(value), SEARCH_DEBOUNCE_MS);
  });
  pick.onDidAccept(() => {
    const chosen = pick.selectedItems[0];
    if (chosen?.hit) {
      pick.hide();
      void openHit(chosen.hit);
    }
  });
  pick.onDidHide(() => {
    clearTimeout(timer);
    pending?.cancel();
    pick.dispose();
  });
  pick.show();
}

/** "Find similar code": the function under the cursor against the index. */
async function findSimilar(): Promise<void> {
  const lsp = runningClient();
  const editor = vscode.window.activeTextEditor;
  if (!lsp) {
    return;
  }
  if (!editor) {
    void vscode.window.showInformationMessage("codesearch: open a file and put the cursor in a function first.");
    return;
  }
  const params = {
    uri: editor.document.uri.toString(),
    position: Position.create(editor.selection.active.line, editor.selection.active.character),
    k: resultCount(),
  };
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: "codesearch: finding similar code" },
      (_progress, token) => lsp.sendRequest<HitsResult>("codesearch/similar", params, token),
    );
    await showHits(result.hits, "Similar code");
  } catch (error) {
    void vscode.window.showErrorMessage(`codesearch: ${errorMessage(error)}`);
  }
}

/** A one-shot QuickPick over a fixed list of hits. */
async function showHits(hits: Hit[], title: string): Promise<void> {
  if (hits.length === 0) {
    void vscode.window.showInformationMessage(`codesearch: ${title.toLowerCase()}: nothing found.`);
    return;
  }
  const chosen = await vscode.window.showQuickPick(hits.map(toItem), {
    title: `codesearch: ${title}`,
    matchOnDescription: true,
  });
  if (chosen?.hit) {
    await openHit(chosen.hit);
  }
}

/** name, then `path:line  score`, then the first line of the snippet. */
function toItem(hit: Hit): HitItem {
  const uri = vscode.Uri.parse(hit.uri);
  const path = vscode.workspace.asRelativePath(uri, false);
  return {
    label: `$(symbol-${symbolIcon(hit.kind)}) ${hit.name}`,
    description: `${path}:${hit.range.start.line + 1}  ${hit.score.toFixed(3)}`,
    detail: firstLine(hit.snippet),
    // The server has already ranked these by meaning: VS Code's own label filter must not hide them.
    // (It still lifts hits whose name matches the typed text to the top; the stable API cannot stop that.)
    alwaysShow: true,
    hit,
  };
}

function notice(message: string): HitItem {
  return { label: `$(info) ${message}`, alwaysShow: true };
}

function symbolIcon(kind: string): string {
  switch (kind) {
    case "class":
    case "method":
      return kind;
    default:
      return "function";
  }
}

function firstLine(snippet: string | undefined): string | undefined {
  const line = snippet?.split("\n").find((text) => text.trim() !== "");
  return line?.trim();
}

async function openHit(hit: Hit): Promise<void> {
  const start = new vscode.Position(hit.range.start.line, hit.range.start.character);
  const document = await vscode.workspace.openTextDocument(vscode.Uri.parse(hit.uri));
  const editor = await vscode.window.showTextDocument(document);
  editor.selection = new vscode.Selection(start, start);
  editor.revealRange(new vscode.Range(start, start), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
}

function isHitsResult(value: unknown): value is HitsResult {
  return typeof value === "object" && value !== null && Array.isArray((value as HitsResult).hits);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
