//! The advisory locks that keep two runs, or two deleters of one table,
//! apart. Each key is hashed from text exactly as
//! `hashtextextended(text, 0)` hashes it, so the keys stay those earlier
//! versions took, and both the hash and the lock are PostgreSQL's own
//! functions called directly: through a statement, each cost a new session
//! a parse and a plan.

use pgrx::prelude::*;

/// `hashtextextended(text, 0)`.
pub fn key(text: &str) -> i64 {
    // A Rust string always converts; the text lives in the current memory
    // context, which the call only reads.
    let text = text.into_datum().unwrap_or(pg_sys::Datum::from(0));
    // SAFETY: a built-in function, found by OID without a catalog read and
    // called with the argument types it takes; text in the default
    // collation, as a literal has, which decides how text hashes.
    let hash = unsafe {
        pg_sys::OidFunctionCall2Coll(
            pg_sys::Oid::from(pg_sys::F_HASHTEXTEXTENDED),
            pg_sys::DEFAULT_COLLATION_OID,
            text,
            pg_sys::Datum::from(0_i64),
        )
    };
    hash.value() as i64
}

/// `pg_try_advisory_xact_lock(key)`: the lock, held to the end of the
/// transaction, or false at once if another session holds it.
pub fn try_lock_for_transaction(key: i64) -> bool {
    // SAFETY: as in `key`; the function takes one bigint.
    let taken = unsafe {
        pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_PG_TRY_ADVISORY_XACT_LOCK_INT8),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(key),
        )
    };
    taken.value() != 0
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[pg_test]
    fn keys_are_hashtextextended_of_the_text() {
        for text in ["authfort_cleanup:public", "authfort_cleanup:delete:\"Auth\".\"authfort_refresh_tokens\"", ""] {
            let sql = Spi::get_one_with_args::<i64>("SELECT hashtextextended($1, 0)", &[text.into()]);
            assert_eq!(sql, Ok(Some(key(text))), "{text}");
        }
    }

    #[pg_test]
    fn a_taken_lock_is_held_to_the_end_of_the_transaction() {
        let key = key("authfort_cleanup:test");
        assert!(try_lock_for_transaction(key));
        let held = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                AND ((classid::bigint << 32) | objid::bigint) = $1",
            &[key.into()],
        );
        assert_eq!(held, Ok(Some(1)));
    }
}
