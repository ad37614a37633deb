//! What can go wrong with the journal, in sentences naming the file and saying what to do.

use std::path::Path;

use rusqlite::ErrorCode;

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Turns an SQLite error into a sentence naming the file and saying what to do.
pub(super) fn explain(e: rusqlite::Error, path: &Path, doing: &str) -> anyhow::Error {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            ": the file stayed locked; another gateway probably uses this data_dir (stop it, \
             or give this one its own data_dir)"
        }
        Some(ErrorCode::DiskFull) => {
            ": the disk is full; free space on the volume that holds data_dir"
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            ": cannot open the file; check that it and its directory exist and that the \
             gateway's user may read and write them"
        }
        Some(ErrorCode::ReadOnly) => {
            ": the file or its directory is read-only; give the gateway's user write \
             permission"
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            ": the file is not a valid journal; move it away (keep it for inspection) so \
             that a new one is created"
        }
        Some(ErrorCode::SystemIoFailure) => ": an I/O error; check the disk and file system",
        _ => "",
    };
    anyhow::Error::new(e).context(format!("{doing} {}{hint}", path.display()))
}

/// `.sql(path, doing)`: context for SQLite errors (see `explain`).
pub(super) trait SqlContext<T> {
    fn sql(self, path: &Path, doing: &str) -> anyhow::Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn sql(self, path: &Path, doing: &str) -> anyhow::Result<T> {
        self.map_err(|e| explain(e, path, doing))
    }
}
