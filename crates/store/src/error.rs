//! [`StoreError`]: the one error enum of the store.
//!
//! Messages name tables, operations and counts, never a value that was stored: database
//! errors are reduced to their message (PostgreSQL's `DETAIL`, which echoes key values, is
//! dropped), so a patient identifier cannot reach a log through an error.

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not `sqlite://…` or `postgres://…`, or is malformed.
    #[error("invalid store url: {0}")]
    Url(String),

    /// The database could not be opened, created or migrated.
    #[error("cannot open the store: {0}")]
    Open(String),

    /// The database failed an operation (SQLite or PostgreSQL).
    #[error("store {op} failed: {detail}")]
    Database {
        /// What the store was doing (`ingest`, `claim jobs`, …).
        op: &'static str,
        /// The database's message.
        detail: String,
    },

    /// A request that the store refuses as such (no reports, a NUL byte in an indexed field,
    /// an unknown state); `detail` names the field, never its value.
    #[error("invalid input: {0}")]
    Invalid(String),

    /// A stored record could not be read back.
    #[error("stored {what} is unreadable: {detail}")]
    Corrupt {
        /// Which record kind.
        what: &'static str,
        /// Why.
        detail: String,
    },

    /// The job, delivery or export is no longer leased to this worker (its lease expired and
    /// another worker took it, or it was finished or cancelled).
    #[error("the lease on {what} {id} was lost")]
    LeaseLost {
        /// `job`, `delivery` or `export`.
        what: &'static str,
        /// Its id.
        id: String,
    },

    /// No such record.
    #[error("{what} {id} not found")]
    NotFound {
        /// The record kind.
        what: &'static str,
        /// Its id.
        id: String,
    },

    /// A write could not be made durable (fsync failed). The store refuses further writes:
    /// after a failed fsync the kernel may have dropped the dirty pages, so retrying is not
    /// safe; restart the gateway.
    #[error("the store cannot make writes durable: {0}")]
    Durability(String),

    /// The store was closed or its writer stopped.
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn db(op: &'static str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Database {
            op,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn sqlite(op: &'static str, e: rusqlite::Error) -> StoreError {
        // rusqlite's messages carry SQLite's text (constraint and column names, not values).
        StoreError::db(op, e)
    }

    pub(crate) fn pg(op: &'static str, e: sqlx::Error) -> StoreError {
        match e {
            // The message only: `DETAIL` would echo key values.
            sqlx::Error::Database(d) => StoreError::db(
                op,
                format!(
                    "{} (SQLSTATE {})",
                    d.message(),
                    d.code().unwrap_or_default()
                ),
            ),
            sqlx::Error::PoolTimedOut => StoreError::db(op, "no database connection available"),
            other => StoreError::db(op, other),
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    /// The same error again, for every member of a failed commit group.
    pub(crate) fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Durability(d) => StoreError::Durability(d.clone()),
            StoreError::Closed => StoreError::Closed,
            other => StoreError::Database {
                op: "commit",
                detail: other.to_string(),
            },
        }
    }

    /// Whether the caller may retry later (the database was busy or unreachable) rather than
    /// having sent something wrong.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database { .. } | StoreError::Closed)
    }
}

impl From<StoreError> for medgate_core::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => medgate_core::Error::BadRequest(m),
            other => medgate_core::Error::Internal(other.to_string()),
        }
    }
}
