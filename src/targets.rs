//! The three things AuthFort lets expire, described as data. The engine turns
//! a `Target` into SQL; nothing else in the extension knows a table name.

/// A column the rule reads, with the type AuthFort's migrations give it.
/// Checked before anything runs, so an older or foreign schema fails with the
/// column's name instead of a confusing error halfway through.
pub struct Column {
    pub name: &'static str,
    pub sql_type: &'static str,
}

pub struct Target {
    /// The name users pass to the procedure and see in the run log.
    pub name: &'static str,
    pub table: &'static str,
    /// A row is expired once this is before the cutoff. NULL never expires
    /// (AuthFort's current signing key has no expiry).
    pub time_column: &'static str,
    /// Rows where this boolean is true are deletable before they expire
    /// (AuthFort deletes revoked sessions at once).
    pub revoked_column: Option<&'static str>,
    /// Rows where this boolean is true are never deleted (the current key).
    pub protected_column: Option<&'static str>,
    /// What the application does that writes a row of this table: each
    /// index on it costs one more index write per such write.
    pub written_by: &'static str,
    /// A column that references the table itself `ON DELETE SET NULL`.
    /// PostgreSQL's trigger for it looks up each deleted row's id, so without
    /// an index on it every deleted row costs one scan of the whole table.
    pub self_reference: Option<&'static str>,
    pub columns: &'static [Column],
}

const TIMESTAMPTZ: &str = "timestamp with time zone";

pub const KEYS: Target = Target {
    name: "keys",
    table: "authfort_signing_keys",
    time_column: "expires_at",
    revoked_column: None,
    protected_column: Some("is_current"),
    written_by: "key rotation",
    self_reference: None,
    columns: &[
        Column { name: "expires_at", sql_type: TIMESTAMPTZ },
        Column { name: "is_current", sql_type: "boolean" },
    ],
};

pub const TOKENS: Target = Target {
    name: "tokens",
    table: "authfort_verification_tokens",
    time_column: "expires_at",
    revoked_column: None,
    protected_column: None,
    written_by: "token issued or used",
    self_reference: None,
    columns: &[Column { name: "expires_at", sql_type: TIMESTAMPTZ }],
};

pub const SESSIONS: Target = Target {
    name: "sessions",
    table: "authfort_refresh_tokens",
    time_column: "expires_at",
    revoked_column: Some("revoked"),
    protected_column: None,
    written_by: "sign-in, refresh and logout",
    self_reference: Some("replaced_by"),
    columns: &[
        Column { name: "expires_at", sql_type: TIMESTAMPTZ },
        Column { name: "revoked", sql_type: "boolean" },
        Column { name: "replaced_by", sql_type: "uuid" },
    ],
};

/// In the order a run cleans them.
pub const ALL: [&Target; 3] = [&KEYS, &TOKENS, &SESSIONS];

pub fn by_name(name: &str) -> Option<&'static Target> {
    ALL.into_iter().find(|target| target.name == name)
}
