// ESLint's flat config for the browser code in static/ (`make lint`, .ci/run). ESLint and its packages
// are installed with the browser tests' tools (`npm ci --prefix tests/e2e`), so they are resolved there.
"use strict";

const path = require("node:path");

const tools = path.join(__dirname, "tests", "e2e");
const js = require(require.resolve("@eslint/js", { paths: [tools] }));
const globals = require(require.resolve("globals", { paths: [tools] }));

module.exports = [
  {
    files: ["static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser },
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      ...js.configs.recommended.rules,
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { args: "after-used", argsIgnorePattern: "^_", caughtErrors: "none" }],
    },
  },
  {
    // This file itself runs in Node (CommonJS).
    files: ["eslint.config.js"],
    languageOptions: { sourceType: "commonjs", globals: { ...globals.node } },
    rules: js.configs.recommended.rules,
  },
];
