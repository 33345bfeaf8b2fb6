import type { Decision, Progress } from '../migration/session.js';
import { decisionLine, progressLine } from './format.js';

/** Ctrl-C / SIGTERM cancel the migration under way; the finally blocks restore and tear down. */
export function interruptSignal(): AbortSignal {
  const ctl = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ctl.signal.aborted) return;
    process.stderr.write(`\n${sig}: cancelling the migration and cleaning up…\n`);
    ctl.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ctl.signal;
}

/**
 * Live progress on stderr: redrawn in place on a terminal, one line per pass otherwise. `preamble`
 * lines (the deadline, the bandwidth) come first, once the migration is under way: an error
 * before that stays a single line.
 */
export function progressReporter(quiet: boolean, preamble: string[] = []) {
  const tty = process.stderr.isTTY;
  let lastPass = 0;
  let lastDraw = 0;
  let started = false;
  return {
    onProgress(p: Progress) {
      if (quiet) return;
      if (!started) {
        started = true;
        for (const l of preamble) process.stderr.write(`${l}\n`);
      }
      if (tty) {
        if (performance.now() - lastDraw < 200) return;
        lastDraw = performance.now();
        process.stderr.write(`\r\x1b[2K${progressLine(p)}`.slice(0, (process.stderr.columns ?? 160) + 10));
      } else if (p.pass !== lastPass) {
        lastPass = p.pass;
        process.stderr.write(progressLine(p) + '\n');
      }
    },
    onDecision(d: Decision) {
      if (quiet) return;
      process.stderr.write(`${tty ? '\r\x1b[2K' : ''}${decisionLine(d)}\n`);
    },
    done() {
      if (tty && !quiet) process.stderr.write('\r\x1b[2K');
    },
  };
}
