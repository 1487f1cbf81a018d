"""The VS Code client: its manifest agrees with its code, and `lsp/vscode/ci.sh` builds a .vsix."""

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

EXTENSION = Path(__file__).parents[1] / "lsp" / "vscode"


def test_manifest_contributes_what_the_extension_uses():
    manifest = json.loads((EXTENSION / "package.json").read_text())
    source = (EXTENSION / "src" / "extension.ts").read_text()
    commands = {c["command"]: c["title"] for c in manifest["contributes"]["commands"]}
    assert commands == {"codesearch.searchCode": "Search code", "codesearch.findSimilar": "Find similar code"}
    assert set(re.findall(r'registerCommand\("([\w.]+)"', source)) == set(commands)
    settings = manifest["contributes"]["configuration"]["properties"]
    assert settings["codesearch.server.command"]["default"] == "codesearch"
    assert settings["codesearch.server.args"]["default"] == ["lsp"]
    used = {"codesearch." + key for key in re.findall(r'\.get<[\w\[\]]+>\("([\w.]+)"', source)}
    assert used and used <= set(settings), used - set(settings)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (Node 20 or newer is needed)")
def test_ci_script_compiles_and_packages_a_vsix(tmp_path):
    # A copy, so that `npm ci` neither needs nor wipes a developer's node_modules.
    build = tmp_path / "vscode"
    shutil.copytree(EXTENSION, build, ignore=shutil.ignore_patterns("node_modules", "out", "*.vsix"))
    result = subprocess.run(["bash", "ci.sh"], cwd=build, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = json.loads((build / "package.json").read_text())["version"]
    vsix = build / f"codesearch-{version}.vsix"
    assert (build / "out" / "extension.js").is_file() and vsix.is_file()
    names = set(zipfile.ZipFile(vsix).namelist())
    # Bundled by esbuild: the language client is inside extension.js, no node_modules ship.
    assert {"extension/package.json", "extension/out/extension.js"} <= names
    assert not any("node_modules" in name or name.startswith("extension/src/") for name in names)
