// Mocha reporter for `make conformance` (bench/conformance/run.py): mocha's spec output on stdout,
// plus one JSON line per event appended synchronously to $CONFORMANCE_EVENTS, so that what ran is
// known even when the file is killed by its timeout or aborts half-way:
//   {"e":"plan","tests":[fullTitle, ...]}   every test the file defines (at start)
//   {"e":"pass"|"fail"|"pending","title":fullTitle,"hook":bool,"error":"..."}
const fs = require('fs');
// mocha is the checkout's, not ours: resolve it from the directory mocha runs in.
const Mocha = require(require.resolve('mocha', { paths: [process.cwd()] }));

const out = process.env.CONFORMANCE_EVENTS;

function write(event) {
  if (out) fs.appendFileSync(out, JSON.stringify(event) + '\n');
}

function collect(suite, acc) {
  for (const test of suite.tests) acc.push(test.fullTitle());
  for (const child of suite.suites) collect(child, acc);
  return acc;
}

class ConformanceReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('start', () => write({ e: 'plan', tests: collect(runner.suite, []) }));
    runner.on('pass', (test) => write({ e: 'pass', title: test.fullTitle(), hook: false }));
    runner.on('pending', (test) => write({ e: 'pending', title: test.fullTitle(), hook: false }));
    runner.on('fail', (test, err) => {
      const hook = test.type === 'hook';
      // A failing hook names the test it ran for (if any): "... "before each" hook for "title"".
      const title = hook && test.ctx && test.ctx.currentTest ? test.ctx.currentTest.fullTitle() : test.fullTitle();
      write({ e: 'fail', title, hook, hookTitle: hook ? test.fullTitle() : null, error: String((err && err.message) || err).slice(0, 500) });
    });
  }
}

module.exports = ConformanceReporter;
