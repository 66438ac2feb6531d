// The cleanup functions called through JDBC (pgjdbc).
//
// usage: java -cp postgresql.jar Client.java DSN SEED_SQL   (run.sh does this)
//
// Reseeds the database with SEED_SQL before each group of checks and prints
// one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
// to count. Exits non-zero if anything failed or the program itself broke.
//
// DSN is a libpq URI (postgresql://user@host:port/db); JDBC wants
// jdbc:postgresql://host:port/db?user=user, so main() converts it.

import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.CallableStatement;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.util.PSQLException;
import org.postgresql.util.ServerErrorMessage;

public class Client {
    static final String LIVE = "2|2|2"; // rows left after a cleanup: keys|tokens|sessions
    static final String CALL = "CALL authfort_cleanup_run()";
    static int failures = 0;

    static void check(String name, Object expected, Object actual) {
        if (Objects.equals(expected, actual)) {
            System.out.println("  ok  jdbc: " + name);
        } else {
            failures++;
            System.out.println("  FAIL jdbc: " + name + ": expected [" + expected + "], got [" + actual + "]");
        }
    }

    // Passes when text contains every one of parts.
    static void checkContains(String name, String text, String... parts) {
        for (String part : parts) {
            if (text == null || !text.contains(part)) {
                failures++;
                System.out.println("  FAIL jdbc: " + name + ": expected [text containing \"" + part + "\"], got [" + text + "]");
                return;
            }
        }
        System.out.println("  ok  jdbc: " + name);
    }

    static String queryText(Connection conn, String sql) throws SQLException {
        try (Statement statement = conn.createStatement(); ResultSet rs = statement.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }

    static String rowsLeft(Connection conn) throws SQLException {
        return queryText(conn, "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||"
                + " (SELECT count(*) FROM authfort_verification_tokens) || '|' ||"
                + " (SELECT count(*) FROM authfort_refresh_tokens)");
    }

    static String lastRun(Connection conn) throws SQLException {
        return queryText(conn, "SELECT status || '|' || keys || '|' || tokens || '|' || sessions"
                + " FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1");
    }

    // Each value's Java class, e.g. "Long" for a bigint.
    static List<String> classNames(List<Object> values) {
        List<String> names = new ArrayList<>();
        for (Object value : values) {
            names.add(value == null ? "null" : value.getClass().getSimpleName());
        }
        return names;
    }

    // The messages of a warning chain: pgjdbc turns each NOTICE into a SQLWarning.
    static String warningMessages(SQLWarning warning) {
        StringBuilder messages = new StringBuilder();
        for (; warning != null; warning = warning.getNextWarning()) {
            messages.append(warning.getMessage()).append('\n');
        }
        return messages.toString();
    }

    static void run(String url, String seed) throws SQLException {
        try (Connection conn = DriverManager.getConnection(url);
             Connection listener = DriverManager.getConnection(url);
             Statement seeder = conn.createStatement()) {
            // The three functions in one SELECT, through a PreparedStatement.
            seeder.execute(seed);
            List<Object> values = new ArrayList<>();
            try (PreparedStatement select = conn.prepareStatement(
                    "SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()");
                 ResultSet rs = select.executeQuery()) {
                while (rs.next()) {
                    for (int column = 1; column <= 3; column++) {
                        values.add(rs.getObject(column));
                    }
                }
            }
            check("keys(), tokens(), sessions() are Long", List.of("Long", "Long", "Long"), classNames(values));
            check("keys(), tokens(), sessions() counts", List.of(2L, 3L, 4L), values);
            check("rows left after the three functions", LIVE, rowsLeft(conn));

            // authfort_cleanup_all(): one row, read by column name.
            seeder.execute(seed);
            List<Map<String, Object>> rows = new ArrayList<>();
            try (PreparedStatement all = conn.prepareStatement("SELECT * FROM authfort_cleanup_all()");
                 ResultSet rs = all.executeQuery()) {
                ResultSetMetaData columns = rs.getMetaData();
                while (rs.next()) {
                    Map<String, Object> row = new LinkedHashMap<>();
                    for (int column = 1; column <= columns.getColumnCount(); column++) {
                        row.put(columns.getColumnLabel(column), rs.getObject(column));
                    }
                    rows.add(row);
                }
            }
            check("cleanup_all() returns one row", 1, rows.size());
            if (!rows.isEmpty()) {
                check("cleanup_all() row by column name, as Long", Map.of("keys", 2L, "tokens", 3L, "sessions", 4L),
                        rows.get(0));
            }
            check("rows left after cleanup_all()", LIVE, rowsLeft(conn));

            // CALL the right way: a CallableStatement with autocommit on (JDBC's
            // default), so the procedure may COMMIT. The listener hears its NOTIFY.
            seeder.execute(seed);
            try (Statement listen = listener.createStatement()) {
                listen.execute("LISTEN authfort_cleanup");
            }
            check("autocommit is on by default", true, conn.getAutoCommit());
            String notices = null;
            String callError = null;
            try (CallableStatement call = conn.prepareCall(CALL)) {
                call.execute();
                notices = warningMessages(call.getWarnings());
            } catch (SQLException error) {
                callError = error.getMessage();
            }
            check("CALL authfort_cleanup_run() in autocommit succeeds", null, callError);
            check("run log after CALL: status|keys|tokens|sessions", "ok|2|3|4", lastRun(conn));
            check("rows left after CALL", LIVE, rowsLeft(conn));
            checkContains("CALL's NOTICEs arrive as SQLWarnings and report sessions progress",
                    notices, "rows of sessions deleted so far");

            PGNotification[] notifications = listener.unwrap(PGConnection.class).getNotifications(5000);
            check("one NOTIFY received within 5 s", 1, notifications == null ? 0 : notifications.length);
            if (notifications != null && notifications.length > 0) {
                check("NOTIFY channel", "authfort_cleanup", notifications[0].getName());
                checkPayload(conn, notifications[0].getParameter());
            }

            // The JDBC escape {call ...}: by default pgjdbc rewrites it to
            // SELECT * FROM authfort_cleanup_run(), which PostgreSQL refuses for a
            // procedure; with escapeSyntaxCallMode=callIfNoReturn it sends a CALL.
            seeder.execute(seed);
            check("{call} escape in pgjdbc's default mode fails with SQLSTATE 42809", "42809", callEscape(conn));
            check("nothing deleted by the refused {call}", "4|5|6", rowsLeft(conn));
            try (Connection callMode = DriverManager.getConnection(url + "&escapeSyntaxCallMode=callIfNoReturn")) {
                check("{call} escape with escapeSyntaxCallMode=callIfNoReturn succeeds", null, callEscape(callMode));
            }
            check("run log after {call}", "ok|2|3|4", lastRun(conn));
            check("rows left after {call}", LIVE, rowsLeft(conn));

            // The wrong way: autocommit off puts the CALL in a transaction block,
            // where the procedure cannot COMMIT.
            seeder.execute(seed);
            conn.setAutoCommit(false);
            ServerErrorMessage refusal = null;
            try (CallableStatement call = conn.prepareCall(CALL)) {
                call.execute();
            } catch (PSQLException error) {
                refusal = error.getServerErrorMessage();
            }
            conn.rollback();
            conn.setAutoCommit(true);
            check("CALL with autocommit off fails with SQLSTATE 2D000", "2D000",
                    refusal == null ? null : refusal.getSQLState());
            checkContains("its HINT names autocommit and authfort_cleanup_all()",
                    refusal == null ? null : refusal.getHint(), "autocommit", "authfort_cleanup_all()");
            check("nothing deleted by the refused CALL", "4|5|6", rowsLeft(conn));
        }
    }

    // Runs {call authfort_cleanup_run()}; the SQLSTATE it fails with, or null.
    static String callEscape(Connection conn) {
        try (CallableStatement call = conn.prepareCall("{call authfort_cleanup_run()}")) {
            call.execute();
            return null;
        } catch (SQLException error) {
            return error.getSQLState();
        }
    }

    // The JDK has no JSON parser, so the server's jsonb parses the payload
    // (a payload that is not JSON ends the program with that error). Counts
    // are compared as their JSON text, so 2.0 or "2" would not pass.
    static void checkPayload(Connection conn, String payload) throws SQLException {
        try (PreparedStatement parse = conn.prepareStatement(
                "SELECT (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(j) AS k),"
                        + " j->>'status', (j->'keys')::text, (j->'tokens')::text, (j->'sessions')::text"
                        + " FROM (SELECT ?::jsonb AS j) AS p")) {
            parse.setString(1, payload);
            try (ResultSet rs = parse.executeQuery()) {
                rs.next();
                check("NOTIFY payload fields", "duration_ms,keys,sessions,started_at,status,tokens", rs.getString(1));
                check("NOTIFY payload status|keys|tokens|sessions", "ok|2|3|4",
                        rs.getString(2) + "|" + rs.getString(3) + "|" + rs.getString(4) + "|" + rs.getString(5));
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Client DSN SEED_SQL");
            System.exit(2);
        }
        URI dsn = new URI(args[0]);
        String url = "jdbc:postgresql://" + dsn.getHost() + ":" + dsn.getPort() + dsn.getPath()
                + "?user=" + dsn.getUserInfo();
        run(url, Files.readString(Path.of(args[1])));
        System.exit(failures > 0 ? 1 : 0);
    }
}
