<?php
// The cleanup functions called through PHP's PDO pgsql.
//
// usage: php php_client.php DSN SEED_SQL
//
// Reseeds the database with SEED_SQL before each group of checks and prints
// one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
// to count. Exits non-zero if anything failed or the script itself broke.
//
// PDO pgsql in PHP 8.2 has no way to read server NOTICEs: the driver hands
// libpq a notice processor that drops them (a notice callback only came in
// PHP 8.4). So the CALL's progress NOTICEs are not checked here.

const CLIENT = 'pdo_pgsql';
const EXPECTED = ['keys' => 2, 'tokens' => 3, 'sessions' => 4]; // what SEED_SQL makes deletable
const LIVE = '2|2|2'; // rows left after a cleanup: keys|tokens|sessions
const SEEDED = '4|5|6'; // all rows SEED_SQL inserts
const NOTIFY_TIMEOUT_MS = 5000;

$failures = 0;

function check(string $name, mixed $expected, mixed $actual): void
{
    global $failures;
    if ($expected === $actual) {
        echo '  ok  ' . CLIENT . ": $name\n";
    } else {
        $failures += 1;
        echo '  FAIL ' . CLIENT . ": $name: expected [" . json_encode($expected) . '], got [' . json_encode($actual) . "]\n";
    }
}

// PDO takes no postgresql:// URI: turn DSN into host, port and dbname.
function connect(string $dsn): PDO
{
    $url = parse_url($dsn);
    return new PDO(
        sprintf('pgsql:host=%s;port=%d;dbname=%s', $url['host'], $url['port'] ?? 5432, ltrim($url['path'], '/')),
        $url['user'] ?? null,
        null,
        // STRINGIFY_FETCHES off (PHP 8.1+ default, set to be explicit): int8 arrives as a PHP int.
        [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_STRINGIFY_FETCHES => false],
    );
}

function rows_left(PDO $pdo): string
{
    return $pdo->query(
        "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||
                (SELECT count(*) FROM authfort_verification_tokens) || '|' ||
                (SELECT count(*) FROM authfort_refresh_tokens)"
    )->fetchColumn();
}

function last_run(PDO $pdo): string|false
{
    return $pdo->query(
        "SELECT status || '|' || keys || '|' || tokens || '|' || sessions
           FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1"
    )->fetchColumn();
}

// [key => value] of $row for the EXPECTED keys whose value is a PHP int.
function ints(array|false $row): array
{
    return array_filter(array_intersect_key($row ?: [], EXPECTED), 'is_int');
}

[, $dsn, $seed_path] = $argv;
$seed = file_get_contents($seed_path);
$pdo = connect($dsn);

// The three functions in one SELECT. exec() sends the seed as one simple
// query, so its several statements run as they are.
$pdo->exec($seed);
$values = $pdo->query(
    'SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()'
)->fetch(PDO::FETCH_NUM);
check('keys(), tokens(), sessions() are ints', ['int', 'int', 'int'], array_map('get_debug_type', $values));
check('keys(), tokens(), sessions() counts', array_values(EXPECTED), $values);
check('rows left after the three functions', LIVE, rows_left($pdo));

// authfort_cleanup_all(): one row, read by column name.
$pdo->exec($seed);
$rows = $pdo->query('SELECT * FROM authfort_cleanup_all()')->fetchAll(PDO::FETCH_ASSOC);
check('cleanup_all() returns one row', 1, count($rows));
check('cleanup_all() row, as ints', EXPECTED, ints($rows[0] ?? false));
check('rows left after cleanup_all()', LIVE, rows_left($pdo));

// CALL in autocommit: a plain exec() outside any transaction, while a second
// connection listens for the run's NOTIFY.
$pdo->exec($seed);
$listener = connect($dsn);
$listener->exec('LISTEN authfort_cleanup');
check('CALL authfort_cleanup_run() in autocommit', 0, $pdo->exec('CALL authfort_cleanup_run()'));
check('run log after CALL: status|keys|tokens|sessions', 'ok|2|3|4', last_run($pdo));
check('rows left after CALL', LIVE, rows_left($pdo));

$notification = $listener->pgsqlGetNotify(PDO::FETCH_ASSOC, NOTIFY_TIMEOUT_MS);
check('NOTIFY authfort_cleanup received', 'authfort_cleanup', $notification['message'] ?? null);
$run = json_decode($notification['payload'] ?? '{}', true, flags: JSON_THROW_ON_ERROR);
check('NOTIFY payload status', 'ok', $run['status'] ?? null);
// json_decode gives a float for 2.0: the counts must be JSON integers.
check('NOTIFY payload keys, tokens, sessions, as ints', EXPECTED, ints($run));

// Inside beginTransaction() the procedure cannot COMMIT: 2D000, nothing deleted.
$pdo->exec($seed);
$error = null;
$pdo->beginTransaction();
try {
    $pdo->exec('CALL authfort_cleanup_run()');
} catch (PDOException $e) {
    $error = $e;
}
$pdo->rollBack();
check('CALL inside beginTransaction() fails with 2D000', '2D000', $error?->getCode());
// PDO keeps no separate HINT field: libpq's message text carries it as "HINT:  ...".
$message = $error?->errorInfo[2] ?? '';
check('its message has a HINT mentioning autocommit', 1, preg_match('/^HINT: .*autocommit/m', $message));
check('its HINT mentions authfort_cleanup_all()', 1, preg_match('/^HINT: .*authfort_cleanup_all\(\)/m', $message));
check('nothing deleted by the refused CALL', SEEDED, rows_left($pdo));

exit($failures ? 1 : 0);
