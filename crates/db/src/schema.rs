//! Kamailio-compatible table definitions (skeleton).

use crate::{Db, DbError};

/// Creates the tables of `modules` (all when `None`) and their `version` rows; returns the
/// tables created.
pub async fn init(_db: &Db, _modules: Option<&[&str]>) -> Result<Vec<String>, DbError> {
    Ok(Vec::new())
}
