//! The engine against an independent oracle: random rows near now(), NULL
//! expiries, revoked and current flags and rotation chains; the set the
//! engine deletes must be exactly the set the oracle picks, whether it
//! deletes through the time indexes or without them.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::engine::*;
    use crate::table::resolve;
    use crate::targets::{self, Target, KEYS, SESSIONS, TOKENS};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    #[derive(Debug, Clone)]
    struct Row {
        /// Seconds from now(); None only where the column allows NULL.
        expires_in: Option<i64>,
        revoked: bool,
        is_current: bool,
        /// Index of the row that replaced this one.
        replaced_by: Option<usize>,
    }

    #[derive(Debug, Clone)]
    enum Mode {
        Everything,
        MaxRows(i64),
        Batches(i64),
    }

    #[derive(Debug, Clone)]
    struct Case {
        rows: Vec<Row>,
        grace_seconds: i64,
        keep_revoked_until_expired: bool,
        mode: Mode,
        /// With the time indexes, so the engine reads the rule through them.
        time_indexes: bool,
    }

    /// Expiries cluster on the boundaries that matter: now() itself and
    /// now() minus each grace.
    fn expiry() -> impl Strategy<Value = i64> {
        prop_oneof![Just(0i64), Just(-3600), Just(-3599), Just(-3601), -200_000i64..200_000,]
    }

    fn case() -> impl Strategy<Value = Case> {
        let row = (
            proptest::option::weighted(0.85, expiry()),
            any::<bool>(),
            proptest::bool::weighted(0.1),
            any::<prop::sample::Index>(),
            any::<bool>(),
        );
        (
            prop::collection::vec(row, 0..60),
            prop_oneof![Just(0i64), Just(3600), Just(86_400)],
            any::<bool>(),
            prop_oneof![Just(Mode::Everything), (1i64..25).prop_map(Mode::MaxRows), (1i64..8).prop_map(Mode::Batches)],
            any::<bool>(),
        )
            .prop_map(|(raw, grace_seconds, keep_revoked_until_expired, mode, time_indexes)| {
                let count = raw.len();
                let rows = raw
                    .into_iter()
                    .enumerate()
                    .map(|(position, (expires_in, revoked, is_current, target, chained))| Row {
                        expires_in,
                        revoked,
                        is_current,
                        replaced_by: (chained && count > 1)
                            .then(|| target.index(count))
                            .filter(|other| *other != position),
                    })
                    .collect();
                Case { rows, grace_seconds, keep_revoked_until_expired, mode, time_indexes }
            })
    }

    /// The rule, written independently of `rule_sql`.
    fn oracle_deletes(target: &Target, row: &Row, case: &Case) -> bool {
        let expired = matches!(row.expires_in, Some(seconds) if seconds < -case.grace_seconds);
        match target.name {
            "keys" => expired && !row.is_current,
            "tokens" => expired,
            _ => expired || (row.revoked && !case.keep_revoked_until_expired),
        }
    }

    fn id(position: usize) -> String {
        format!("00000000-0000-0000-0000-{position:012}")
    }

    fn create_tables() {
        Spi::run(
            "CREATE SCHEMA prop;
             CREATE TABLE prop.authfort_signing_keys (id uuid PRIMARY KEY, expires_at timestamptz, is_current boolean NOT NULL);
             CREATE TABLE prop.authfort_verification_tokens (id uuid PRIMARY KEY, expires_at timestamptz NOT NULL);
             CREATE TABLE prop.authfort_refresh_tokens (id uuid PRIMARY KEY, expires_at timestamptz NOT NULL,
                 revoked boolean NOT NULL, replaced_by uuid REFERENCES prop.authfort_refresh_tokens ON DELETE SET NULL);
             CREATE INDEX ON prop.authfort_refresh_tokens (replaced_by);
             SET LOCAL authfort_cleanup.schema = 'prop';",
        )
        .expect("create the property-test tables");
    }

    /// The indexes `authfort_cleanup_create_indexes(time_indexes => true)`
    /// makes, or none.
    fn set_time_indexes(target: &Target, wanted: bool) {
        let table = target.table;
        let time = target.time_column;
        let mut statements = vec![format!("DROP INDEX IF EXISTS prop.ix_{table}_time, prop.ix_{table}_time_revoked")];
        if wanted {
            statements.push(format!("CREATE INDEX ix_{table}_time ON prop.{table} ({time})"));
            if let Some(revoked) = target.revoked_column {
                statements
                    .push(format!("CREATE INDEX ix_{table}_time_revoked ON prop.{table} ({time}) WHERE {revoked}"));
            }
        }
        for statement in statements {
            Spi::run(&statement).expect("set the time indexes");
        }
    }

    fn load(target: &Target, case: &Case) {
        Spi::run(&format!("TRUNCATE prop.{}", target.table)).expect("truncate");
        set_time_indexes(target, case.time_indexes);
        for (position, row) in case.rows.iter().enumerate() {
            // Only keys may have a NULL expiry in AuthFort's schema; tokens
            // and sessions get a far-future expiry instead.
            let expires_at = match (row.expires_in, target.name) {
                (Some(seconds), _) => format!("now() + make_interval(secs => {seconds})"),
                (None, "keys") => "NULL".into(),
                (None, _) => "now() + interval '1 year'".into(),
            };
            let statement = match target.name {
                "keys" => format!(
                    "INSERT INTO prop.authfort_signing_keys VALUES ('{}', {expires_at}, {})",
                    id(position),
                    row.is_current
                ),
                "tokens" => {
                    format!("INSERT INTO prop.authfort_verification_tokens VALUES ('{}', {expires_at})", id(position))
                }
                _ => format!(
                    "INSERT INTO prop.authfort_refresh_tokens VALUES ('{}', {expires_at}, {}, NULL)",
                    id(position),
                    row.revoked
                ),
            };
            Spi::run(&statement).expect("insert a generated row");
        }
        if target.self_reference.is_some() {
            for (position, row) in case.rows.iter().enumerate() {
                if let Some(replacement) = row.replaced_by {
                    Spi::run(&format!(
                        "UPDATE prop.authfort_refresh_tokens SET replaced_by = '{}' WHERE id = '{}'",
                        id(replacement),
                        id(position)
                    ))
                    .expect("link a rotation chain");
                }
            }
        }
    }

    fn survivors(target: &Target) -> Vec<(String, Option<String>)> {
        let replaced_by = if target.self_reference.is_some() { "replaced_by::text" } else { "NULL::text" };
        Spi::connect(|client| {
            client
                .select(&format!("SELECT id::text, {replaced_by} FROM prop.{} ORDER BY id", target.table), None, &[])?
                .map(|row| Ok((row.get::<String>(1)?.unwrap_or_default(), row.get::<String>(2)?)))
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .expect("read the survivors")
    }

    fn run_engine(target: &'static Target, case: &Case) -> i64 {
        let options = Options {
            grace: Interval::from_seconds(case.grace_seconds as f64),
            max_rows: match case.mode {
                Mode::MaxRows(rows) => Some(rows),
                _ => None,
            },
            dry_run: false,
            keep_revoked_until_expired: case.keep_revoked_until_expired,
        };
        let table = resolve(target);
        match case.mode {
            Mode::Batches(size) => {
                let (mut deleted, mut position) = (0, None);
                loop {
                    let batch = clean_batch(&table, &options, position, size);
                    assert!(batch.deleted <= size, "a batch deleted {} rows, more than its size {size}", batch.deleted);
                    deleted += batch.deleted;
                    let Some(next) = batch.next else { break };
                    // Through the time indexes exactly when they exist.
                    assert_eq!(matches!(next, Position::Arm(..)), case.time_indexes, "walked {next} instead");
                    position = Some(next);
                }
                deleted
            }
            _ => clean(&table, &options),
        }
    }

    fn check(target: &'static Target, case: &Case) -> Result<(), TestCaseError> {
        load(target, case);
        let expected: Vec<usize> =
            (0..case.rows.len()).filter(|position| oracle_deletes(target, &case.rows[*position], case)).collect();
        let deleted_count = run_engine(target, case);
        let surviving: std::collections::HashMap<String, Option<String>> = survivors(target).into_iter().collect();
        let deleted: Vec<usize> =
            (0..case.rows.len()).filter(|position| !surviving.contains_key(&id(*position))).collect();
        prop_assert_eq!(deleted_count, deleted.len() as i64);
        match case.mode {
            Mode::MaxRows(limit) => {
                prop_assert_eq!(deleted.len(), expected.len().min(limit as usize));
                prop_assert!(deleted.iter().all(|position| expected.contains(position)));
                let latest_deleted = deleted.iter().filter_map(|p| case.rows[*p].expires_in).max();
                let earliest_kept =
                    expected.iter().filter(|p| !deleted.contains(p)).filter_map(|p| case.rows[*p].expires_in).min();
                if let (Some(latest), Some(earliest)) = (latest_deleted, earliest_kept) {
                    prop_assert!(latest <= earliest, "max_rows must take the oldest expiry first");
                }
            }
            _ => prop_assert_eq!(&deleted, &expected),
        }
        // ON DELETE SET NULL: a survivor that pointed at a deleted row now points nowhere.
        let chained = case.rows.iter().enumerate().filter(|_| target.self_reference.is_some());
        for (position, row) in chained {
            if let (Some(after), Some(replacement)) = (surviving.get(&id(position)), row.replaced_by) {
                let expected_link = surviving.contains_key(&id(replacement)).then(|| id(replacement));
                prop_assert_eq!(after, &expected_link);
            }
        }
        Ok(())
    }

    #[pg_test]
    fn engine_deletes_exactly_what_the_oracle_picks() {
        create_tables();
        let mut runner = TestRunner::new(Config { cases: 100, failure_persistence: None, ..Config::default() });
        for target in targets::ALL {
            let outcome = runner.run(&case(), |case| check(target, &case));
            if let Err(failure) = outcome {
                panic!("{} disagrees with the oracle: {failure}", target.name);
            }
        }
    }

    /// Intervals with months, days and microseconds of mixed signs: the
    /// kind whose interval comparison (a month as 30 days) and whose
    /// `now() - grace` (calendar months, 28 to 31 days) disagree. Half of
    /// them have days that nearly cancel their months, which puts the cutoff
    /// within days of now(), among the rows' expiries.
    fn mixed_interval() -> impl Strategy<Value = String> {
        let anywhere = (-1300i64..1300, -40_000i64..40_000, -1_000_000_000_000i64..1_000_000_000_000);
        let near_now = (-24i64..24, -3i64..4, -200_000_000_000i64..200_000_000_000)
            .prop_map(|(months, days_off, micros)| (months, -30 * months + days_off, micros));
        prop_oneof![anywhere, near_now]
            .prop_map(|(months, days, micros)| format!("{months} mons {days} days {micros} microseconds"))
    }

    /// No grace, however it mixes signs, makes a call delete a row that
    /// AuthFort's rule with no grace keeps: such a grace is refused (22023)
    /// and nothing is deleted, or the call deletes a subset of the oracle's.
    fn check_grace(
        target: &'static Target,
        case: &Case,
        grace: &str,
        through_batch: bool,
    ) -> Result<(), TestCaseError> {
        load(target, case);
        let at_zero_grace = Case { grace_seconds: 0, keep_revoked_until_expired: false, ..case.clone() };
        let allowed: Vec<String> = (0..case.rows.len())
            .filter(|position| oracle_deletes(target, &case.rows[*position], &at_zero_grace))
            .map(id)
            .collect();
        let name = target.name;
        let call = if through_batch {
            format!("PERFORM * FROM authfort_cleanup_batch('{name}', NULL, 5, '{grace}', false)")
        } else {
            format!("PERFORM authfort_cleanup_{name}(grace => '{grace}')")
        };
        Spi::run(&format!(
            "DO $$ BEGIN {call}; EXCEPTION WHEN invalid_parameter_value THEN RAISE NOTICE 'refused'; END $$"
        ))
        .expect("call the cleanup");
        let surviving: Vec<String> = survivors(target).into_iter().map(|(id, _)| id).collect();
        for position in 0..case.rows.len() {
            let row_id = id(position);
            prop_assert!(
                surviving.contains(&row_id) || allowed.contains(&row_id),
                "grace '{}' deleted row {:?}, which AuthFort keeps",
                grace,
                case.rows[position]
            );
        }
        Ok(())
    }

    #[pg_test]
    fn no_grace_deletes_what_authfort_keeps() {
        create_tables();
        let mut runner = TestRunner::new(Config { cases: 60, failure_persistence: None, ..Config::default() });
        for target in [&TOKENS, &SESSIONS, &KEYS] {
            let outcome = runner.run(&(case(), mixed_interval(), any::<bool>()), |(case, grace, through_batch)| {
                check_grace(target, &case, &grace, through_batch)
            });
            if let Err(failure) = outcome {
                panic!("{}: {failure}", target.name);
            }
        }
    }

    /// Sessions in batches through both time indexes, the walk whose batch
    /// that ends the expired rows goes on into the revoked ones: every case
    /// exercises it, which the mix above reaches one case in twelve.
    #[pg_test]
    fn batches_through_both_arms_delete_what_the_oracle_picks() {
        create_tables();
        let mut runner = TestRunner::new(Config { cases: 100, failure_persistence: None, ..Config::default() });
        let both_arms = (case(), 1i64..8).prop_map(|(case, size)| Case {
            mode: Mode::Batches(size),
            time_indexes: true,
            keep_revoked_until_expired: false,
            ..case
        });
        if let Err(failure) = runner.run(&both_arms, |case| check(&SESSIONS, &case)) {
            panic!("sessions disagree with the oracle: {failure}");
        }
    }

    #[pg_test]
    fn rules_read_as_authfort_wrote_them() {
        let parity = Options::default();
        assert_eq!(rule_sql(&KEYS, &parity), "expires_at < $1 AND NOT is_current");
        assert_eq!(rule_sql(&TOKENS, &parity), "expires_at < $1");
        assert_eq!(rule_sql(&SESSIONS, &parity), "(revoked OR expires_at < $1)");
        let keep = Options { keep_revoked_until_expired: true, ..Options::default() };
        assert_eq!(rule_sql(&SESSIONS, &keep), "expires_at < $1");
    }
}
