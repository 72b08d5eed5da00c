#!/usr/bin/env node
// Benchmark runner for aws-local-stepfunctions (comparison baseline for our engine).
//
// Usage:
//   node run.mjs --definition FILE (--input JSON | --input @FILE | --items N) [--handler counter] [--no-events]
//
// Prints exactly one JSON line on stdout:
//   {"status":"SUCCEEDED"|"FAILED"|"TIMED_OUT"|"ABORTED","seconds":<execution wall time>,
//    "peakRssBytes":<maxRSS>,"transitions":<StateEntered events or null>,"output":<output or null>, ...}
//
// "seconds" covers only StateMachine#run() until the result settles (module load,
// file reading and definition validation in the constructor are excluded).
// Every Wait state is overridden to 0 ms and every Retry interval to 0 ms.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

// aws-local-stepfunctions 3.x declares engines.node >= 22; the only newer builtin it
// uses is Promise.withResolvers (Task states). Polyfill it for older Node versions.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const { StateMachine, ExecutionError, ExecutionTimeoutError, ExecutionAbortedError } = await import(
  'aws-local-stepfunctions'
);

function usage(msg) {
  if (msg) process.stderr.write(`error: ${msg}\n`);
  process.stderr.write(
    'usage: node run.mjs --definition FILE (--input JSON | --input @FILE | --items N) [--handler counter] [--no-events]\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { events: true };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    const val = () => {
      if (k + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++k];
    };
    switch (a) {
      case '--definition': opts.definition = val(); break;
      case '--input': opts.input = val(); break;
      case '--items': opts.items = val(); break;
      case '--handler': opts.handler = val(); break;
      case '--no-events': opts.events = false; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!opts.definition) usage('--definition is required');
  if (opts.input !== undefined && opts.items !== undefined) usage('--input and --items are mutually exclusive');
  if (opts.handler !== undefined && opts.handler !== 'counter') usage(`unknown handler ${opts.handler}`);
  return opts;
}

// Collect state names by type, recursing into Map iterators and Parallel branches
// (overrides are keyed by state name and are passed down to nested executions).
function collectStates(def, acc = { Task: new Set(), Wait: new Set(), Retry: new Set() }) {
  for (const [name, st] of Object.entries(def.States ?? {})) {
    if (st.Type === 'Task') acc.Task.add(name);
    if (st.Type === 'Wait') acc.Wait.add(name);
    if (Array.isArray(st.Retry)) acc.Retry.add(name);
    if (st.Type === 'Map') {
      const sub = st.ItemProcessor ?? st.Iterator;
      if (sub) collectStates(sub, acc);
    }
    if (st.Type === 'Parallel') for (const b of st.Branches ?? []) collectStates(b, acc);
  }
  return acc;
}

const counter = (input) => ({ ...input, i: input.i + 1 });

const opts = parseArgs(process.argv.slice(2));
const definition = JSON.parse(readFileSync(opts.definition, 'utf8'));

let input;
if (opts.items !== undefined) {
  const n = Number(opts.items);
  if (!Number.isInteger(n) || n < 0) usage('--items must be a non-negative integer');
  input = { items: Array.from({ length: n }, (_, i) => i) };
} else if (opts.input === undefined) {
  input = {};
} else if (opts.input.startsWith('@')) {
  input = JSON.parse(readFileSync(opts.input.slice(1), 'utf8'));
} else {
  input = JSON.parse(opts.input);
}

const states = collectStates(definition);
const overrides = {
  waitTimeOverrides: Object.fromEntries([...states.Wait].map((n) => [n, 0])),
  retryIntervalOverrides: Object.fromEntries([...states.Retry].map((n) => [n, 0])),
};
if (opts.handler === 'counter') {
  overrides.taskResourceLocalHandlers = Object.fromEntries([...states.Task].map((n) => [n, counter]));
}

// Constructor validates the definition (asl-validator); this throws on an invalid definition.
let machine;
try {
  machine = new StateMachine(definition);
} catch (e) {
  process.stdout.write(
    JSON.stringify({
      status: 'INVALID_DEFINITION',
      seconds: 0,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      transitions: null,
      output: null,
      error: String(e?.message ?? e),
    }) + '\n',
  );
  process.exit(1);
}

const t0 = performance.now();
const execution = machine.run(input, { overrides });

// The library queues every event in memory whether or not it is consumed; draining
// the queue (default) keeps memory bounded and lets us count states entered.
let transitions = null;
let drained = Promise.resolve();
if (opts.events) {
  transitions = 0;
  drained = (async () => {
    for await (const ev of execution.eventLogs) {
      if (ev.type === 'StateEntered') transitions++;
    }
  })();
}

let status;
let output = null;
let error;
try {
  output = await execution.result;
  status = 'SUCCEEDED';
} catch (e) {
  if (e instanceof ExecutionTimeoutError) status = 'TIMED_OUT';
  else if (e instanceof ExecutionAbortedError) status = 'ABORTED';
  else status = 'FAILED';
  const cause = e instanceof ExecutionError ? e.cause : e;
  error = { error: cause?.name ?? String(cause), cause: cause?.message ?? null };
}
const seconds = (performance.now() - t0) / 1000;
// Events are dispatched synchronously before the result settles; let the consumer catch up.
await drained;

const line = {
  status,
  seconds,
  peakRssBytes: process.resourceUsage().maxRSS * 1024,
  transitions,
  output,
};
if (error) Object.assign(line, error);
process.stdout.write(JSON.stringify(line) + '\n');
process.exitCode = status === 'SUCCEEDED' ? 0 : 1;
