// The cleanup functions called through node-postgres (pg).
//
// usage: node node_client.mjs CONNECTION_STRING SEED_SQL
//
// Reseeds the database with SEED_SQL before each group of checks and prints
// one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
// to count. Exits non-zero if anything failed or the script itself broke.
//
// node-postgres returns bigint (int8) as a string by default, because a JS
// number cannot hold every int8. The counts are checked as that: a string
// of digits, whose Number() is the expected count.
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';

const EXPECTED = { keys: 2, tokens: 3, sessions: 4 }; // what SEED_SQL makes deletable
const TOTAL = { keys: 4, tokens: 5, sessions: 6 }; // all rows SEED_SQL inserts
const LIVE = '2|2|2'; // rows left after a cleanup: keys|tokens|sessions
const NOTIFY_FIELDS = ['duration_ms', 'keys', 'sessions', 'started_at', 'status', 'tokens'];
const NOTIFY_TIMEOUT_MS = 5000; // the NOTIFY is sent at the run's end
const STATUS_COLUMNS = [
  'target', 'table_name', 'rows', 'deletable', 'oldest_expired_age', 'supporting_index_present',
  'table_bytes', 'last_run_at', 'last_run_status', 'last_run_deleted',
];

let failures = 0;

function check(name, expected, actual) {
  if (isDeepStrictEqual(expected, actual)) {
    console.log(`  ok  node-postgres: ${name}`);
  } else {
    failures += 1;
    console.log(`  FAIL node-postgres: ${name}: expected [${JSON.stringify(expected)}], got [${JSON.stringify(actual)}]`);
  }
}

// An int8 as node-postgres returns it: a string of digits. Its number, or
// null when it is anything else.
function int8(value) {
  return typeof value === 'string' && /^-?[0-9]+$/.test(value) ? Number(value) : null;
}

// { target: int8(row[column]) } for each row.
function byTarget(rows, column) {
  return Object.fromEntries(rows.map((row) => [row.target, int8(row[column])]));
}

// The next NOTIFY payload on connection if it is a JSON object; null if none
// came within NOTIFY_TIMEOUT_MS or it is not one. Call it before the
// statement that notifies, await it after.
function nextPayload(connection) {
  return new Promise((resolve) => {
    const receive = ({ payload }) => {
      clearTimeout(timer);
      try {
        const parsed = JSON.parse(payload);
        resolve(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed : null);
      } catch {
        resolve(null);
      }
    };
    const timer = setTimeout(() => {
      connection.off('notification', receive);
      resolve(null);
    }, NOTIFY_TIMEOUT_MS);
    connection.once('notification', receive);
  });
}

const client = new pg.Client({ connectionString: process.argv[2] });
// LISTEN on a second connection, as an application would: the NOTIFY must
// reach other sessions, not only the one that ran the cleanup.
const listener = new pg.Client({ connectionString: process.argv[2] });
const seed = readFileSync(process.argv[3], 'utf8');

async function rowsLeft() {
  const { rows } = await client.query(
    `SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||
            (SELECT count(*) FROM authfort_verification_tokens) || '|' ||
            (SELECT count(*) FROM authfort_refresh_tokens) AS left`,
  );
  return rows[0].left;
}

async function lastRun() {
  const { rows } = await client.query(
    `SELECT status || '|' || keys || '|' || tokens || '|' || sessions AS run
       FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1`,
  );
  return rows[0]?.run ?? null;
}

await client.connect();
await listener.connect();
try {
  // preview and status on fresh data, then the three functions.
  await client.query(seed);

  let result = await client.query('SELECT * FROM authfort_cleanup_preview()');
  check('preview returns 3 rows', 3, result.rowCount);
  check('preview columns', ['target', 'deletable', 'oldest_expiry'], result.fields.map((f) => f.name));
  check('preview deletable per target (int8 string)', EXPECTED, byTarget(result.rows, 'deletable'));
  check('preview oldest_expiry is a Date', [true, true, true], result.rows.map((r) => r.oldest_expiry instanceof Date));

  result = await client.query('SELECT * FROM authfort_cleanup_status');
  check('status returns 3 rows', 3, result.rowCount);
  check('status columns', STATUS_COLUMNS, result.fields.map((f) => f.name));
  check('status rows per target (int8 string)', TOTAL, byTarget(result.rows, 'rows'));
  check('status deletable per target (int8 string)', EXPECTED, byTarget(result.rows, 'deletable'));
  // pg decodes an interval into a PostgresInterval object ({ days, hours, ... }).
  check('status oldest_expired_age is an interval object', [true, true, true],
    result.rows.map((r) => typeof r.oldest_expired_age === 'object' && r.oldest_expired_age !== null
      && typeof r.oldest_expired_age.toPostgres === 'function'));
  check('status supporting_index_present is true', [true, true, true], result.rows.map((r) => r.supporting_index_present));
  check('status table_bytes is an int8 > 0', [true, true, true], result.rows.map((r) => int8(r.table_bytes) > 0));

  result = await client.query(
    'SELECT authfort_cleanup_keys() AS keys, authfort_cleanup_tokens() AS tokens, authfort_cleanup_sessions() AS sessions',
  );
  const row = result.rows[0];
  check('keys(), tokens(), sessions() come back as strings', ['string', 'string', 'string'],
    [typeof row.keys, typeof row.tokens, typeof row.sessions]);
  check('keys(), tokens(), sessions() parse to the counts', EXPECTED,
    { keys: int8(row.keys), tokens: int8(row.tokens), sessions: int8(row.sessions) });
  check('rows left after the three functions', LIVE, await rowsLeft());

  // authfort_cleanup_all(): one row, three int8 columns.
  await client.query(seed);
  result = await client.query('SELECT * FROM authfort_cleanup_all()');
  check('cleanup_all() returns one row', 1, result.rowCount);
  check('cleanup_all() columns', ['keys', 'tokens', 'sessions'], result.fields.map((f) => f.name));
  check('cleanup_all() row parses to the counts', EXPECTED,
    Object.fromEntries(Object.entries(result.rows[0] ?? {}).map(([k, v]) => [k, int8(v)])));
  check('rows left after cleanup_all()', LIVE, await rowsLeft());

  // What doc/clients.md suggests: a per-query type parser turning int8 into Number.
  await client.query(seed);
  result = await client.query({
    text: 'SELECT authfort_cleanup_sessions() AS n',
    types: { getTypeParser: (oid, format) => (oid === pg.types.builtins.INT8 ? Number : pg.types.getTypeParser(oid, format)) },
  });
  check('with an INT8 parser, sessions() is a number', 4, result.rows[0].n);

  // CALL in autocommit: client.query() outside any transaction, watched
  // through its NOTICEs and, on the listener, its NOTIFY.
  await client.query(seed);
  await listener.query('LISTEN authfort_cleanup');
  const payloadReceived = nextPayload(listener);
  const notices = [];
  const keepNotice = (notice) => notices.push(notice.message);
  client.on('notice', keepNotice);
  result = await client.query('CALL authfort_cleanup_run()');
  client.off('notice', keepNotice);
  check('CALL authfort_cleanup_run() in autocommit', 'CALL', result.command);
  check('rows left after CALL', LIVE, await rowsLeft());
  check('run log after CALL: status|keys|tokens|sessions', 'ok|2|3|4', await lastRun());
  result = await client.query('SELECT target, last_run_status, last_run_deleted FROM authfort_cleanup_status');
  check('status shows the last run', { keys: 'ok|2', tokens: 'ok|3', sessions: 'ok|4' },
    Object.fromEntries(result.rows.map((r) => [r.target, `${r.last_run_status}|${int8(r.last_run_deleted)}`])));
  check('CALL reports progress in NOTICEs', true,
    notices.some((message) => message.includes('rows of sessions deleted so far')));
  const payload = await payloadReceived;
  await listener.query('UNLISTEN authfort_cleanup');
  check(`NOTIFY authfort_cleanup received within ${NOTIFY_TIMEOUT_MS / 1000} s as a JSON object`, true, payload !== null);
  check('NOTIFY payload fields', NOTIFY_FIELDS, Object.keys(payload ?? {}).sort());
  check('NOTIFY payload status', 'ok', payload?.status);
  // JSON.parse makes 2 and 2.0 the same number: an integral number is as
  // close to "a JSON integer" as JS can check.
  check('NOTIFY payload counts are integers', EXPECTED,
    Object.fromEntries(Object.keys(EXPECTED).map((k) => [k, Number.isInteger(payload?.[k]) ? payload[k] : null])));

  // With parameters pg uses the extended protocol; batch_size 1 makes the
  // procedure COMMIT after every row.
  await client.query(seed);
  result = await client.query('CALL authfort_cleanup_run(batch_size => $1)', [1]);
  check('CALL with a bound parameter (extended protocol)', 'CALL', result.command);
  check('rows left after the parameterized CALL', LIVE, await rowsLeft());
  check('run log after the parameterized CALL', 'ok|2|3|4', await lastRun());

  // Inside a transaction the procedure cannot COMMIT: 2D000, nothing deleted.
  await client.query(seed);
  let code = null;
  let hint = null;
  await client.query('BEGIN');
  try {
    await client.query('CALL authfort_cleanup_run()');
  } catch (error) {
    ({ code, hint } = error);
  }
  await client.query('ROLLBACK');
  check('CALL inside BEGIN fails with 2D000', '2D000', code);
  check('the 2D000 HINT names autocommit and authfort_cleanup_all()', ['autocommit', 'authfort_cleanup_all()'],
    ['autocommit', 'authfort_cleanup_all()'].filter((word) => (hint ?? '').includes(word)));
  check('nothing deleted by the refused CALL', '4|5|6', await rowsLeft());
} finally {
  await listener.end();
  await client.end();
}
process.exitCode = failures ? 1 : 0;
