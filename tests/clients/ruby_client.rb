# The cleanup functions called through Ruby's pg gem.
#
# usage: ruby ruby_client.rb DSN SEED_SQL
#
# Reseeds the database with SEED_SQL before each group of checks and prints
# one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
# to count. Exits non-zero if anything failed or the script itself broke.
#
# The pg gem returns every value as a String unless a type map is set: the
# main connection uses PG::BasicTypeMapForResults, so int8 comes back as an
# Integer, and the checks make sure it does.
require "json"
require "pg"

CLIENT = "ruby-pg"
EXPECTED = { "keys" => 2, "tokens" => 3, "sessions" => 4 }.freeze # what SEED_SQL makes deletable
LIVE = "2|2|2" # rows left after a cleanup: keys|tokens|sessions
SEEDED = "4|5|6" # all rows SEED_SQL inserts
NOTIFY_TIMEOUT = 5 # seconds

$failures = 0

def check(name, expected, actual)
  if expected == actual
    puts "  ok  #{CLIENT}: #{name}"
  else
    $failures += 1
    puts "  FAIL #{CLIENT}: #{name}: expected [#{expected.inspect}], got [#{actual.inspect}]"
  end
end

def rows_left(conn)
  conn.exec(<<~SQL).getvalue(0, 0)
    SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||
           (SELECT count(*) FROM authfort_verification_tokens) || '|' ||
           (SELECT count(*) FROM authfort_refresh_tokens)
  SQL
end

def last_run(conn)
  conn.exec(<<~SQL).values.dig(0, 0)
    SELECT status || '|' || keys || '|' || tokens || '|' || sessions
      FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1
  SQL
end

dsn, seed_path = ARGV
seed = File.read(seed_path)
conn = PG.connect(dsn)
conn.type_map_for_results = PG::BasicTypeMapForResults.new(conn)
notices = []
conn.set_notice_receiver { |result| notices << result.error_field(PG::PG_DIAG_MESSAGE_PRIMARY) }

begin
  # The three functions in one SELECT.
  conn.exec(seed)
  values = conn.exec(
    "SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()"
  ).values.first
  check("keys(), tokens(), sessions() are Integers", [Integer] * 3, values.map(&:class))
  check("keys(), tokens(), sessions() counts", EXPECTED.values, values)
  check("rows left after the three functions", LIVE, rows_left(conn))

  # authfort_cleanup_all(): one row, read by column name.
  conn.exec(seed)
  rows = conn.exec("SELECT * FROM authfort_cleanup_all()").to_a
  check("cleanup_all() returns one row", 1, rows.length)
  check("cleanup_all() row, as Integers", EXPECTED,
        rows.first&.select { |_, value| value.is_a?(Integer) })
  check("rows left after cleanup_all()", LIVE, rows_left(conn))

  # CALL in autocommit: a plain exec outside any transaction, while a second
  # connection listens for the run's NOTIFY.
  conn.exec(seed)
  listener = PG.connect(dsn)
  listener.exec("LISTEN authfort_cleanup")
  notices.clear # only the CALL's notices count below
  check("CALL authfort_cleanup_run() in autocommit", "CALL", conn.exec("CALL authfort_cleanup_run()").cmd_status)
  check("run log after CALL: status|keys|tokens|sessions", "ok|2|3|4", last_run(conn))
  check("rows left after CALL", LIVE, rows_left(conn))
  check("CALL reports sessions progress in a NOTICE", true,
        notices.any? { |text| text.include?("rows of sessions deleted so far") })

  payload = nil
  listener.wait_for_notify(NOTIFY_TIMEOUT) { |_channel, _pid, message| payload = message }
  listener.close
  check("NOTIFY authfort_cleanup received", true, !payload.nil?)
  run = JSON.parse(payload || "{}")
  check("NOTIFY payload status", "ok", run["status"])
  # JSON.parse gives a Float for 2.0: the counts must be JSON integers.
  check("NOTIFY payload keys, tokens, sessions, as Integers", EXPECTED,
        run.slice(*EXPECTED.keys).select { |_, value| value.is_a?(Integer) })

  # Inside conn.transaction the procedure cannot COMMIT: 2D000, nothing
  # deleted. The block rolls back and re-raises.
  conn.exec(seed)
  error = nil
  begin
    conn.transaction { |txn| txn.exec("CALL authfort_cleanup_run()") }
  rescue PG::Error => e
    error = e.result
  end
  check("CALL inside conn.transaction fails with 2D000", "2D000", error&.error_field(PG::PG_DIAG_SQLSTATE))
  hint = error&.error_field(PG::PG_DIAG_MESSAGE_HINT).to_s
  check("its HINT mentions autocommit", true, hint.include?("autocommit"))
  check("its HINT mentions authfort_cleanup_all()", true, hint.include?("authfort_cleanup_all()"))
  check("the transaction was rolled back", PG::PQTRANS_IDLE, conn.transaction_status)
  check("nothing deleted by the refused CALL", SEEDED, rows_left(conn))
ensure
  conn.close
end

exit($failures.zero? ? 0 : 1)
