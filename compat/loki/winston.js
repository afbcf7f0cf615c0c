// Pushes lines through winston-loki (protobuf + snappy) and prints what it
// sent as JSON: [{labels, entries: [[ms, line]]}]. Exits non-zero when the
// snappy binding is missing (winston-loki would silently fall back to JSON)
// or Loki answers an error.
const [, , url, job] = process.argv;
require('snappy');
const winston = require('winston');
const LokiTransport = require('winston-loki');
const transport = new LokiTransport({
  host: url,
  labels: { job, source: 'winston' },
  json: false,
  batching: true,
  interval: 0.2,
  replaceTimestamp: false,
  format: winston.format.printf((info) => info.message),
  onConnectionError: (err) => {
    console.error('push failed:', err && err.message ? err.message : err);
    process.exit(1);
  },
});
const logger = winston.createLogger({ transports: [transport] });
const base = Date.now() - 5000;
const sent = [];
const lines = [
  ['info', 'GET /api/users 200 12ms'],
  ['warn', 'slow query: select * from "orders" where id=42'],
  ['error', 'unicode ✓ and tabs\tand <html> & "quotes"'],
  ['info', 'second info line'],
];
lines.forEach(([level, message], i) => {
  const ms = base + i;
  logger.log({ level, message, timestamp: new Date(ms).toISOString() });
  sent.push({ labels: { job, source: 'winston', level }, entries: [[ms, message]] });
});
transport.flush().then(() => {
  console.log(JSON.stringify(sent));
  transport.close();
  setTimeout(() => process.exit(0), 100);
});
