'use strict';
// Harness for the kafkajs suite: starts the real `sluice` binary on loopback ports with a
// fresh data dir, waits for /health, stops it by its own pid (SIGTERM, bounded wait, SIGKILL).
// Binary: $SLUICE_BIN, else $CARGO_TARGET_DIR/release/sluice, else <repo>/target/release/sluice.
//
//   new Broker()                               PLAINTEXT on `bootstrap` (--kafka-addr)
//   new Broker(extraArgs, { listeners, env })  extra `--listener NAME=PROTOCOL://127.0.0.1:PORT`s
//       listeners: { NAME: PROTOCOL }, e.g. { SASL_SSL: 'SASL_SSL' }: the broker then starts with
//       `--listener PLAINTEXT=PLAINTEXT://<bootstrap>` plus those (`listener(NAME)` is host:port);
//       env: extra environment, e.g. { SLUICE_BOOTSTRAP_USERS: 'admin:secret' }.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..', '..');
const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 15000;

function sluiceBin() {
  if (process.env.SLUICE_BIN) return process.env.SLUICE_BIN;
  if (process.env.CARGO_TARGET_DIR) return path.join(process.env.CARGO_TARGET_DIR, 'release', 'sluice');
  return path.join(REPO, 'target', 'release', 'sluice');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` (sync or async) until truthy; throws after `timeoutMs`. */
async function waitUntil(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr}` : ''}`);
}

class Broker {
  constructor(extraArgs = ['--initial-rebalance-delay-ms', '300'], { listeners = {}, env = {} } = {}) {
    this.extraArgs = extraArgs;
    this.listeners = { ...listeners };
    this.env = { ...env };
    this.listenerPorts = {};
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-node-'));
    this.logPath = path.join(this.dir, 'sluice.log');
    this.proc = null;
  }

  get bootstrap() {
    return `127.0.0.1:${this.kafkaPort}`;
  }

  /** host:port of the extra listener `name` (after start()). */
  listener(name) {
    const port = this.listenerPorts[name];
    if (port === undefined) throw new Error(`no listener ${name} (listeners: ${Object.keys(this.listeners)})`);
    return `127.0.0.1:${port}`;
  }

  async start() {
    this.kafkaPort = await freePort();
    this.httpPort = await freePort();
    let kafka = ['--kafka-addr', this.bootstrap];
    if (Object.keys(this.listeners).length > 0) {
      kafka = ['--listener', `PLAINTEXT=PLAINTEXT://${this.bootstrap}`];
      for (const [name, protocol] of Object.entries(this.listeners)) {
        this.listenerPorts[name] = await freePort();
        kafka.push('--listener', `${name}=${protocol}://${this.listener(name)}`);
      }
    }
    const log = fs.openSync(this.logPath, 'a');
    const args = ['serve', ...kafka, '--http-addr', `127.0.0.1:${this.httpPort}`,
      '--data-dir', path.join(this.dir, 'data'), ...this.extraArgs];
    this.proc = spawn(sluiceBin(), args, {
      stdio: ['ignore', log, log],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...this.env, NO_COLOR: '1' },
    });
    fs.closeSync(log);
    let exited = null;
    this.proc.once('exit', (code, sig) => { exited = `${code ?? sig}`; });
    this.proc.once('error', (e) => { exited = String(e); });
    await waitUntil(async () => {
      if (exited !== null) throw new Error(`sluice exited (${exited}) during start\n${this.logTail()}`);
      const ctl = new AbortController();
      const t = setTimeout(() => ctl.abort(), 1000);
      try {
        const r = await fetch(`http://127.0.0.1:${this.httpPort}/health`, { signal: ctl.signal });
        return r.status === 200;
      } finally {
        clearTimeout(t);
      }
    }, START_TIMEOUT_MS, 'sluice /health').catch((e) => {
      this.kill();
      throw new Error(`${e.message}\n${this.logTail()}`);
    });
    return this;
  }

  /** SIGTERM, bounded wait, then SIGKILL. Resolves with the exit code (or signal name). */
  async stop() {
    const p = this.proc;
    if (!p) return 0;
    this.proc = null;
    if (p.exitCode !== null || p.signalCode !== null) return p.exitCode ?? p.signalCode;
    const done = new Promise((r) => p.once('exit', (code, sig) => r(code ?? sig)));
    p.kill('SIGTERM');
    let timer;
    const timeout = new Promise((r) => { timer = setTimeout(() => r('timeout'), STOP_TIMEOUT_MS); });
    const res = await Promise.race([done, timeout]);
    clearTimeout(timer);
    if (res === 'timeout') {
      p.kill('SIGKILL');
      await done;
      throw new Error(`sluice ignored SIGTERM for ${STOP_TIMEOUT_MS} ms`);
    }
    return res;
  }

  kill() {
    if (this.proc) {
      this.proc.kill('SIGKILL');
      this.proc = null;
    }
  }

  logTail(lines = 100) {
    try {
      const all = fs.readFileSync(this.logPath, 'utf8').split('\n');
      return `----- sluice log (last ${lines} lines) -----\n${all.slice(-lines).join('\n')}`;
    } catch {
      return '(no sluice log)';
    }
  }

  cleanup() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

let counter = 0;
function uniqueName(prefix = 't') {
  counter += 1;
  return `${prefix}-node-${counter}-${Math.random().toString(16).slice(2, 8)}`;
}

module.exports = { Broker, waitUntil, sleep, uniqueName };
