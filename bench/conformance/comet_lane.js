// Required by mocha on the Comet lane of `make conformance` (bench/conformance/run.py): every
// Realtime client the suite creates without choosing its transports uses Comet (ably-js's
// xhr_polling in browsers), as ABLY_TEST_TRANSPORTS=comet does for the tests that loop over
// transports. Clients that name their transports keep them.
const path = require('path');

const ablyPath = path.resolve(process.cwd(), 'build', 'ably-node.js');
const Ably = require(ablyPath);
const Original = Ably.Realtime;

class CometRealtime extends Original {
  constructor(options) {
    if (options && typeof options === 'object' && !options.transports) {
      options = Object.assign({}, options, { transports: ['comet'] });
    }
    super(options);
  }
}

Ably.Realtime = CometRealtime;
