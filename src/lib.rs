//! authfort_cleanup: AuthFort's three cleanup jobs, inside PostgreSQL.
//!
//! - `targets`: what expires, as data (table, time column, rule).
//! - `rule`: a target's rule narrowed by a call's options, as SQL, and the
//!   arms the time indexes read it in.
//! - `table`: a target's table, found, checked, and the checks before a call
//!   reads or writes it.
//! - `indexes`: the indexes cleanup leans on, found and created.
//! - `engine`: deletes (or counts) the rows a rule selects, at once or in
//!   batches.
//! - `run` and `run_log`: a whole run under the overlap guard, and its log.
//! - `check`: what would make cleanup slow or keep it from running.
//! - `statistics`: how much of a table a rule selects, from ANALYZE's numbers.
//! - `space`: the free space a cleanup leaves inside a table.
//! - `status`: the numbers behind the authfort_cleanup_status view.
//! - `settings`: the GUCs.
//! - `advisory_lock`: the keys that keep runs and deleters apart.
//! - `catalog`: the catalog facts the checks read, from the caches.
//! - `lock_waits` and `sqlstate`: how long a call may wait for a lock, and
//!   errors raised inside it keeping their own SQLSTATE.
//! - `api`: the SQL functions; the procedure and scheduling are SQL in `sql/`.

use pgrx::prelude::*;

mod advisory_lock;
mod api;
mod catalog;
mod check;
mod engine;
mod error;
mod indexes;
mod lock_waits;
mod query;
mod rule;
mod run;
mod run_log;
mod settings;
mod space;
mod sqlstate;
mod statistics;
mod status;
mod table;
mod targets;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
}

extension_sql_file!("../sql/run_log.sql", name = "run_log");
extension_sql_file!(
    "../sql/run.sql",
    name = "run",
    requires = [
        "run_log",
        api::authfort_cleanup_batch,
        api::authfort_cleanup_blocking_index,
        api::authfort_cleanup_lock_key,
        api::authfort_cleanup_prepare_run,
        api::authfort_cleanup_record_run
    ]
);
extension_sql_file!("../sql/schedule.sql", name = "schedule", requires = ["run"]);
extension_sql_file!("../sql/status.sql", name = "status", requires = ["run_log", api::authfort_cleanup_target_status]);
extension_sql_file!(
    "../sql/comments.sql",
    name = "comments",
    requires = [
        api::authfort_cleanup_keys,
        api::authfort_cleanup_tokens,
        api::authfort_cleanup_sessions,
        api::authfort_cleanup_all,
        api::authfort_cleanup_preview,
        api::authfort_cleanup_check,
        api::authfort_cleanup_create_indexes,
        api::authfort_cleanup_batch,
        api::authfort_cleanup_blocking_index,
        api::authfort_cleanup_lock_key,
        api::authfort_cleanup_prepare_run,
        api::authfort_cleanup_record_run,
        api::authfort_cleanup_target_status
    ]
);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
