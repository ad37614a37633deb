//! What can go wrong with the journal: `JournalError`, one variant per kind of failure, each a
//! sentence naming the file and saying what to do. Callers match on the variant (a second
//! gateway, a missing journal, a newer schema, a full disk) or, with anyhow, just use `?`;
//! the underlying SQLite or I/O error is the `source`, so `{:#}` prints it after the sentence.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use crate::model::DeviceIdx;

/// A failure of the journal. The `Display` of each variant is the sentence the gateway logs
/// (the README's troubleshooting table matches on them).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {}{}", .path.display(), dir_hint(.source))]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another process (a second gateway) holds `<data_dir>/journal.lock`.
    #[error(
        "another gateway uses this data_dir ({}): {} is locked by a running process; stop \
         that gateway, or give this one its own data_dir",
        .dir.display(),
        .lock.display()
    )]
    Locked {
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        source: rusqlite::Error,
    },
    /// The journal file stayed locked past the busy timeout.
    #[error(
        "{doing} {}: the file stayed locked; another gateway probably uses this data_dir (stop \
         it, or give this one its own data_dir)",
        .path.display()
    )]
    Busy {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    /// The disk that holds the journal is full.
    #[error("{doing} {}: the disk is full; free space on the volume that holds data_dir", .path.display())]
    DiskFull {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    /// SQLite cannot open the file (missing, a directory, or no permission).
    #[error(
        "{doing} {}: cannot open the file; check that it and its directory exist and that the \
         gateway's user may read and write them",
        .path.display()
    )]
    CannotOpen {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    /// The file or its directory is read-only for the gateway's user.
    #[error(
        "{doing} {}: the file or its directory is read-only; give the gateway's user write \
         permission",
        .path.display()
    )]
    ReadOnlyFile {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    /// The file is not an SQLite database, or it is corrupt.
    #[error(
        "{doing} {}: the file is not a valid journal; move it away (keep it for inspection) so \
         that a new one is created",
        .path.display()
    )]
    NotADatabase {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    /// An I/O error below SQLite.
    #[error("{doing} {}: an I/O error; check the disk and file system", .path.display())]
    Io {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    /// Any other SQLite error.
    #[error("{doing} {}", .path.display())]
    Sql {
        path: PathBuf,
        doing: String,
        source: rusqlite::Error,
    },
    /// SQLite would not switch the file to WAL mode (e.g. on a network file system).
    #[error(
        "opening the journal {}: SQLite refused WAL mode (it stayed in {mode:?} mode); keep \
         data_dir on a local file system (not NFS or a network share)",
        .path.display()
    )]
    NoWal { path: PathBuf, mode: String },
    /// The checkpoint thread could not be started.
    #[error(
        "opening the journal's checkpoint connection {}: cannot start a thread: {error}",
        .path.display()
    )]
    Thread {
        path: PathBuf,
        /// Part of the sentence, not a `source`.
        error: std::io::Error,
    },
    /// A read-only open of a journal that does not exist.
    #[error(
        "opening the journal read-only: no journal at {}; check data_dir (the gateway creates \
         {} in it when it first runs)",
        .path.display(),
        super::FILE_NAME
    )]
    NotFound { path: PathBuf },
    /// A read-only open of an SQLite file without a schema version.
    #[error(
        "opening the journal read-only {}: this is not an estate-gateway journal (no schema \
         version)",
        .path.display()
    )]
    NotAJournal { path: PathBuf },
    /// A file whose schema version is negative.
    #[error(
        "migrating the journal schema {}: it has an invalid schema version {found}; it is not \
         an estate-gateway journal, move it away",
        .path.display()
    )]
    InvalidSchema { path: PathBuf, found: i64 },
    /// A journal written by a newer estate-gateway (`read_only`: found by a read-only open,
    /// else when migrating).
    #[error("{}", newer_schema(.path, *.found, *.supported, *.read_only))]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
        read_only: bool,
    },
    /// A read-only open of a journal that a gateway has not yet migrated.
    #[error(
        "opening the journal read-only {}: it has the older schema version {found} (this build \
         reads {supported}); start the gateway once on this data_dir to migrate it",
        .path.display()
    )]
    OlderSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// A write to a journal opened read-only.
    #[error("{doing}: the journal {} is open read-only", .path.display())]
    OpenedReadOnly { path: PathBuf, doing: String },
    /// `alive` or `end_run` before `begin_run`.
    #[error("{doing} in {}: no run has begun (call begin_run first)", .path.display())]
    NoRun { path: PathBuf, doing: String },
    /// A stored enumeration string this build does not know.
    #[error(
        "journal {}: table {table}, {at}: unknown {what} {value:?} (written by a newer \
         estate-gateway, or edited by hand)",
        .path.display()
    )]
    UnknownValue {
        path: PathBuf,
        table: &'static str,
        /// The row and column.
        at: String,
        /// What the column holds (`state`, `reason`, `severity`).
        what: &'static str,
        value: String,
    },
    /// A negative alarm or window sequence number.
    #[error("journal {}: table {table} holds a negative sequence {max:?}", .path.display())]
    NegativeSequence {
        path: PathBuf,
        table: &'static str,
        max: Option<i64>,
    },
    /// An event whose device index is not in the inventory; nothing of its batch was written.
    #[error(
        "an event refers to device index {idx}, but the inventory has {devices} devices \
         (nothing of this batch was journaled)"
    )]
    UnknownDevice { idx: DeviceIdx, devices: usize },
}

/// What to do when the data directory cannot be created.
fn dir_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            ": permission denied; create it, or make its parent writable by the gateway's user"
        }
        std::io::ErrorKind::StorageFull => ": the disk is full; free some space",
        _ => "; check data_dir in the configuration",
    }
}

fn newer_schema(path: &Path, found: i64, supported: i64, read_only: bool) -> String {
    if read_only {
        format!(
            "opening the journal read-only {}: it has schema version {found}, written by a \
             newer estate-gateway; this build reads version {supported}. Use the newer build.",
            path.display()
        )
    } else {
        format!(
            "migrating the journal schema {}: it has schema version {found}, written by a newer \
             estate-gateway; this build knows up to version {supported}. Run the newer build, \
             or use another data_dir.",
            path.display()
        )
    }
}

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Turns an SQLite error into the variant of its kind, naming the file and what was being done.
pub(super) fn explain(source: rusqlite::Error, path: &Path, doing: &str) -> JournalError {
    let (path, doing) = (path.to_path_buf(), doing.to_owned());
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => JournalError::Busy {
            path,
            doing,
            source,
        },
        Some(ErrorCode::DiskFull) => JournalError::DiskFull {
            path,
            doing,
            source,
        },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => JournalError::CannotOpen {
            path,
            doing,
            source,
        },
        Some(ErrorCode::ReadOnly) => JournalError::ReadOnlyFile {
            path,
            doing,
            source,
        },
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => JournalError::NotADatabase {
            path,
            doing,
            source,
        },
        Some(ErrorCode::SystemIoFailure) => JournalError::Io {
            path,
            doing,
            source,
        },
        _ => JournalError::Sql {
            path,
            doing,
            source,
        },
    }
}

/// `.sql(path, doing)`: context for SQLite errors (see `explain`).
pub(super) trait SqlContext<T> {
    fn sql(self, path: &Path, doing: &str) -> Result<T, JournalError>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn sql(self, path: &Path, doing: &str) -> Result<T, JournalError> {
        self.map_err(|e| explain(e, path, doing))
    }
}
