#!/usr/bin/env bash
# CI for the VS Code client: a clean install from package-lock.json, a type-checked compile, and a
# .vsix (vsce bundles src/ with esbuild first, through the vscode:prepublish script).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run compile
npm run package
