#!/usr/bin/env node
// A task-capable MCP upstream (MCP 2025-11-25 "tasks") for the mcp-warden test harness.
//
// Built with the official TypeScript SDK (@modelcontextprotocol/sdk 1.32.2): McpServer, its
// experimental `server.experimental.tasks.registerToolTask` and the SDK's InMemoryTaskStore. The
// SDK itself answers tasks/get, tasks/result (blocks until the task is terminal), tasks/list and
// tasks/cancel, and sends notifications/tasks/status when a task's result is stored.
//
// Usage:   node tasks-server.mjs            (stdio only; ends with stdin, SIGINT or SIGTERM)
//
// Tools:
//   transfer_funds(amount: int, to: string, confirmation_token?: string)   taskSupport "optional"
//     Without a token: the (task's) CallToolResult is a consent envelope
//       {"ok":false,"requires_confirmation":true,"action_id":"<32 hex>","summary":"Transfer N to X",
//        "expires_in_seconds":60}
//     as structuredContent and as one text block (the same JSON). The action id is remembered
//     (single use, 60 s) and appended to $ENVELOPE_LOG (one per line) if that is set.
//     With a valid token (issued, same amount/to, unused, unexpired): performs the transfer,
//       {"ok":true,"transferred":N,"to":X}. Otherwise {"ok":false,"error":"..."}.
//   transfers()              plain tool: how many transfers were performed (text "N",
//                            structuredContent {"result":N}).
//   slow_echo(message)       taskSupport "optional": completes after $SLOW_ECHO_MS (default 200)
//                            with one text block `message`.
//
// Task-augmented call (params.task present): the answer is a CreateTaskResult
// {"task":{"taskId","status":"working",...}}; the work finishes in the background (transfer_funds
// after $TRANSFER_WORK_MS, default 50), then the task is "completed" with the CallToolResult.
// Plain call of a task-capable tool: the SDK creates a task internally anyway, polls it every
// pollInterval and answers with the CallToolResult (so that task shows up in tasks/list, and a
// notifications/tasks/status for it is sent).
//
// Env: ENVELOPE_LOG (file), SLOW_ECHO_MS, TRANSFER_WORK_MS, TASK_POLL_MS (pollInterval the server
// suggests, also the SDK's internal polling period; default 100), TASK_TTL_MS (ttl when the
// client asks for none; default 300000). Diagnostics go to stderr only.

import { appendFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { InMemoryTaskStore } from '@modelcontextprotocol/sdk/experimental/tasks';
import { z } from 'zod';

const log = (...args) => console.error('[tasks-server]', ...args);
const envInt = (name, dflt) => {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(v) && v >= 0 ? v : dflt;
};
const SLOW_ECHO_MS = envInt('SLOW_ECHO_MS', 200);
const TRANSFER_WORK_MS = envInt('TRANSFER_WORK_MS', 50);
const TASK_POLL_MS = envInt('TASK_POLL_MS', 100) || 100;
const TASK_TTL_MS = envInt('TASK_TTL_MS', 300000);

// ------------------------------------------------------------------ consent-envelope logic

const ISSUED = new Map(); // action_id -> { amount, to, expiresAt }
let transfersDone = 0;

const jsonResult = (obj) => ({
  content: [{ type: 'text', text: JSON.stringify(obj) }],
  structuredContent: obj,
});

function transferFunds({ amount, to, confirmation_token }) {
  if (confirmation_token === undefined || confirmation_token === null) {
    const action = randomBytes(16).toString('hex');
    ISSUED.set(action, { amount, to, expiresAt: Date.now() + 60_000 });
    if (process.env.ENVELOPE_LOG) appendFileSync(process.env.ENVELOPE_LOG, action + '\n');
    return jsonResult({
      ok: false,
      requires_confirmation: true,
      action_id: action,
      summary: `Transfer ${amount} to ${to}`,
      expires_in_seconds: 60,
    });
  }
  const issued = ISSUED.get(confirmation_token);
  ISSUED.delete(confirmation_token);
  if (!issued || issued.amount !== amount || issued.to !== to || issued.expiresAt < Date.now()) {
    return jsonResult({ ok: false, error: 'invalid, used or expired confirmation_token' });
  }
  transfersDone += 1;
  return jsonResult({ ok: true, transferred: amount, to });
}

// ------------------------------------------------------------------ task plumbing

// A ToolTaskHandler whose work `run(args)` (sync or async, returns a CallToolResult) is done
// `delayMs` after the task was created. A task cancelled meanwhile is left alone (no side effect).
function backgroundTask(delayMs, run) {
  return {
    createTask: async (args, extra) => {
      const store = extra.taskStore;
      const task = await store.createTask({ ttl: extra.taskRequestedTtl ?? TASK_TTL_MS, pollInterval: TASK_POLL_MS });
      setTimeout(async () => {
        try {
          const current = await store.getTask(task.taskId);
          if (current.status !== 'working') return; // cancelled (or otherwise finished)
          let result;
          let status = 'completed';
          try {
            result = await run(args);
          } catch (err) {
            status = 'failed';
            result = { content: [{ type: 'text', text: String(err?.message ?? err) }], isError: true };
          }
          await store.storeTaskResult(task.taskId, status, result);
        } catch (err) {
          log(`task ${task.taskId}:`, err?.message ?? err); // e.g. cancelled in between, or expired
        }
      }, delayMs);
      return { task };
    },
    getTask: async (_args, extra) => extra.taskStore.getTask(extra.taskId),
    getTaskResult: async (_args, extra) => extra.taskStore.getTaskResult(extra.taskId),
  };
}

// ------------------------------------------------------------------ server

function createServer() {
  const taskStore = new InMemoryTaskStore();
  const server = new McpServer(
    { name: 'mcp-warden-tasks-upstream', version: '1.0.0' },
    {
      capabilities: {
        tools: {},
        tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } },
      },
      taskStore,
    },
  );

  server.experimental.tasks.registerToolTask(
    'transfer_funds',
    {
      description: 'Transfer money. Needs a human\'s confirmation first.',
      inputSchema: {
        amount: z.number().int(),
        to: z.string(),
        confirmation_token: z.string().optional(),
      },
      execution: { taskSupport: 'optional' },
    },
    backgroundTask(TRANSFER_WORK_MS, transferFunds),
  );

  server.registerTool(
    'transfers',
    { description: 'How many transfers were performed.' },
    async () => ({
      content: [{ type: 'text', text: String(transfersDone) }],
      structuredContent: { result: transfersDone },
    }),
  );

  server.experimental.tasks.registerToolTask(
    'slow_echo',
    {
      description: `Echo the message back, after ${SLOW_ECHO_MS} ms.`,
      inputSchema: { message: z.string() },
      execution: { taskSupport: 'optional' },
    },
    backgroundTask(SLOW_ECHO_MS, ({ message }) => ({ content: [{ type: 'text', text: message }] })),
  );

  return { server, dispose: () => taskStore.cleanup() };
}

async function runStdio() {
  const { server, dispose } = createServer();
  const transport = new StdioServerTransport();
  const shutdown = async () => {
    dispose();
    await server.close().catch(() => {});
    process.exit(0);
  };
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  await server.connect(transport);
  log('serving on stdio');
}

runStdio().catch((err) => {
  log('fatal:', err);
  process.exit(1);
});
