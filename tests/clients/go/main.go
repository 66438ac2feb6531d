// The cleanup functions called through pgx v4, the usual Go driver.
//
// usage: go run main.go DSN SEED_SQL   (run.sh builds it without a module proxy)
//
// Reseeds the database with SEED_SQL before each group of checks and prints
// one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
// to count. Exits non-zero if anything failed or the program itself broke.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
)

const live = "2|2|2" // rows left after a cleanup: keys|tokens|sessions

// What SEED_SQL makes deletable, as pgx decodes a bigint: int64.
var expected = map[string]interface{}{"keys": int64(2), "tokens": int64(3), "sessions": int64(4)}

var failures = 0

func check(name string, want, got interface{}) {
	if reflect.DeepEqual(want, got) {
		fmt.Printf("  ok  pgx: %s\n", name)
	} else {
		failures++
		fmt.Printf("  FAIL pgx: %s: expected [%#v], got [%#v]\n", name, want, got)
	}
}

// checkContains passes when text contains every one of parts.
func checkContains(name, text string, parts ...string) {
	for _, part := range parts {
		if !strings.Contains(text, part) {
			failures++
			fmt.Printf("  FAIL pgx: %s: expected [text containing %q], got [%q]\n", name, part, text)
			return
		}
	}
	fmt.Printf("  ok  pgx: %s\n", name)
}

// mustDo stops the program on an error outside the checks (connecting,
// reseeding): nothing after it would mean anything.
func mustDo(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgx client:", err)
		os.Exit(2)
	}
}

func queryText(ctx context.Context, conn *pgx.Conn, sql string) string {
	var text string
	if err := conn.QueryRow(ctx, sql).Scan(&text); err != nil {
		return "error: " + err.Error()
	}
	return text
}

func rowsLeft(ctx context.Context, conn *pgx.Conn) string {
	return queryText(ctx, conn, `SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||
	                                    (SELECT count(*) FROM authfort_verification_tokens) || '|' ||
	                                    (SELECT count(*) FROM authfort_refresh_tokens)`)
}

func lastRun(ctx context.Context, conn *pgx.Conn) string {
	return queryText(ctx, conn, `SELECT status || '|' || keys || '|' || tokens || '|' || sessions
	                               FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1`)
}

// typeNames gives the Go type of each value, e.g. "int64".
func typeNames(values []interface{}) []string {
	names := make([]string, len(values))
	for i, value := range values {
		names[i] = fmt.Sprintf("%T", value)
	}
	return names
}

// The NOTIFY payload. Counts as int64, so a count that is not a JSON integer
// fails to decode instead of passing as a float.
type runPayload struct {
	Status   string `json:"status"`
	Keys     int64  `json:"keys"`
	Tokens   int64  `json:"tokens"`
	Sessions int64  `json:"sessions"`
}

// payloadFields gives the payload's top-level field names, sorted.
func payloadFields(payload string) []string {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(payload), &fields); err != nil {
		return []string{"not a JSON object: " + err.Error()}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func run(ctx context.Context, dsn, seed string) {
	config, err := pgx.ParseConfig(dsn)
	mustDo(err)
	var notices []string
	config.OnNotice = func(_ *pgconn.PgConn, notice *pgconn.Notice) {
		notices = append(notices, notice.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, config)
	mustDo(err)
	defer conn.Close(ctx)
	reseed := func() {
		// Without arguments Exec uses the simple protocol, which runs
		// SEED_SQL's several statements in one go.
		_, err := conn.Exec(ctx, seed)
		mustDo(err)
	}

	// The three functions in one SELECT.
	reseed()
	values := []interface{}{nil, nil, nil}
	rows, err := conn.Query(ctx, "SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()")
	mustDo(err)
	if rows.Next() {
		values, err = rows.Values()
		mustDo(err)
	}
	rows.Close()
	mustDo(rows.Err())
	check("keys(), tokens(), sessions() are int64", []string{"int64", "int64", "int64"}, typeNames(values))
	check("keys(), tokens(), sessions() counts", []interface{}{int64(2), int64(3), int64(4)}, values)
	check("rows left after the three functions", live, rowsLeft(ctx, conn))

	// authfort_cleanup_all(): one row, read by column name.
	reseed()
	rows, err = conn.Query(ctx, "SELECT * FROM authfort_cleanup_all()")
	mustDo(err)
	var byName []map[string]interface{}
	for rows.Next() {
		values, err := rows.Values()
		mustDo(err)
		row := map[string]interface{}{}
		for i, field := range rows.FieldDescriptions() {
			row[string(field.Name)] = values[i]
		}
		byName = append(byName, row)
	}
	rows.Close()
	mustDo(rows.Err())
	check("cleanup_all() returns one row", 1, len(byName))
	if len(byName) > 0 {
		check("cleanup_all() row by column name, as int64", expected, byName[0])
	}
	check("rows left after cleanup_all()", live, rowsLeft(ctx, conn))

	// CALL the right way: conn.Exec outside any pgx.Tx is autocommit, so the
	// procedure may COMMIT. A second connection listens for its NOTIFY.
	reseed()
	listener, err := pgx.Connect(ctx, dsn)
	mustDo(err)
	defer listener.Close(ctx)
	_, err = listener.Exec(ctx, "LISTEN authfort_cleanup")
	mustDo(err)
	notices = nil
	tag, err := conn.Exec(ctx, "CALL authfort_cleanup_run()")
	check("CALL authfort_cleanup_run() in autocommit succeeds", nil, err)
	check("CALL command tag", "CALL", tag.String())
	check("run log after CALL: status|keys|tokens|sessions", "ok|2|3|4", lastRun(ctx, conn))
	check("rows left after CALL", live, rowsLeft(ctx, conn))
	checkContains("CALL's NOTICEs reach OnNotice and report sessions progress",
		strings.Join(notices, "\n"), "rows of sessions deleted so far")

	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	notification, err := listener.WaitForNotification(waitCtx)
	cancel()
	check("NOTIFY received within 5 s", nil, err)
	if notification != nil {
		check("NOTIFY channel", "authfort_cleanup", notification.Channel)
		check("NOTIFY payload fields", []string{"duration_ms", "keys", "sessions", "started_at", "status", "tokens"},
			payloadFields(notification.Payload))
		var payload runPayload
		check("NOTIFY payload decodes with integer counts", nil, json.Unmarshal([]byte(notification.Payload), &payload))
		check("NOTIFY payload status and counts", runPayload{Status: "ok", Keys: 2, Tokens: 3, Sessions: 4}, payload)
	}

	// The wrong way: inside a pgx.Tx the procedure cannot COMMIT.
	reseed()
	tx, err := conn.Begin(ctx)
	mustDo(err)
	_, err = tx.Exec(ctx, "CALL authfort_cleanup_run()")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		pgErr = &pgconn.PgError{Code: fmt.Sprintf("no server error: %v", err)}
	}
	mustDo(tx.Rollback(ctx))
	check("CALL inside conn.Begin() fails with SQLSTATE 2D000", "2D000", pgErr.Code)
	checkContains("its HINT names autocommit and authfort_cleanup_all()", pgErr.Hint, "autocommit", "authfort_cleanup_all()")
	check("nothing deleted by the refused CALL", "4|5|6", rowsLeft(ctx, conn))
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: main DSN SEED_SQL")
		os.Exit(2)
	}
	seed, err := os.ReadFile(os.Args[2])
	mustDo(err)
	run(context.Background(), os.Args[1], string(seed))
	if failures > 0 {
		os.Exit(1)
	}
}
