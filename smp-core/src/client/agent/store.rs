//! The agent's crash-safe store: one SQLite database per profile directory.
//!
//! The runtime's rule (see [`Store::commit`]): everything one received SMP
//! message causes — the connection's new state, the "processed" mark, the
//! sends it produced and the chat message it delivered — is written in one
//! transaction, and only after that commit is the message ACKed. A crash
//! before the commit loses nothing (the router redelivers); a crash after it
//! is recognised by [`Store::is_processed`] on redelivery, and the outbox is
//! sent again on restart (receivers dedupe by agent message id).
//!
//! The database lives in a 0700 directory as a 0600 file, in WAL mode with
//! `synchronous=FULL` so that a returned commit survives power loss. An
//! exclusive `flock` on `agent.lock`, held as long as the [`Store`] lives,
//! keeps a second process (or a second `Store` in this one) from running the
//! same profile: two runtimes would both ACK and send from the same ratchets.
//!
//! All calls block on disk I/O; an async runtime should make them from a
//! blocking thread.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params};
use zeroize::Zeroizing;

/// The database file inside the profile directory.
pub const DB_FILE: &str = "agent.db";
/// How long [`Store::open`] waits for the profile lock. A holder that is
/// about to let go (a process exiting, or a child forked by this process
/// that still shares the lock's descriptor until it execs) should not be
/// reported as a second `xftp` using the profile; a real one is, quickly.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The lock file inside the profile directory.
pub const LOCK_FILE: &str = "agent.lock";
/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;
/// How many processed-message marks are kept per receive queue. A router
/// redelivers only the one message it is waiting for an ACK of, so a few
/// are enough; the rest are pruned in the commit that adds a new one.
pub const PROCESSED_KEEP_PER_QUEUE: i64 = 64;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another `Store` (this or another process) holds the profile.
    #[error("the profile is in use by another process")]
    Locked,
    /// The directory or a file has unsafe ownership or permissions, or
    /// could not be created with safe ones.
    #[error("unsafe profile permissions: {0}")]
    Permissions(String),
    /// SQLite or file-system failure.
    #[error("database error: {0}")]
    Sqlite(String),
    /// The database is damaged, not a database, or from a newer program.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// No row with that id.
    #[error("not found")]
    NotFound,
    /// A name matches more than one connection.
    #[error("the name {0:?} matches more than one connection")]
    Ambiguous(String),
    /// [`Store::commit`] with a message that is already marked processed:
    /// applying it again would advance the state twice.
    #[error("the message was already processed")]
    AlreadyProcessed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
            {
                StoreError::Corrupt(e.to_string())
            }
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            _ => StoreError::Sqlite(e.to_string()),
        }
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Sqlite(format!("{what} {}: {e}", path.display()))
}

/// The user's profile: what the peer sees and where the user's queues go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    /// `smp://` addresses, in preference order.
    pub smp_servers: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A connection's row id; never reused after a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub i64);

/// An outbox row id, increasing in insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(pub i64);

/// An inbox row id, increasing in insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboxId(pub i64);

/// A connection as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredConnection {
    pub id: ConnId,
    /// The name the user gave it.
    pub local_name: Option<String>,
    /// The name the peer's profile announced.
    pub peer_display_name: Option<String>,
    /// The encoded connection state (holds ratchet secrets: wiped on drop).
    pub state: Zeroizing<Vec<u8>>,
    /// The runtime's status word (new connections: `"new"`).
    pub status: String,
}

/// A received SMP message, by where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedMsg {
    /// The router's address, in one canonical text form.
    pub server: String,
    pub rcv_id: Vec<u8>,
    /// The router's message id.
    pub msg_id: Vec<u8>,
}

/// A queue the user sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub server: String,
    /// Must not be empty.
    pub snd_id: Vec<u8>,
}

/// One SMP `SEND` waiting for the router to accept it.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub queue: QueueRef,
    /// The SEND body as it goes on the wire.
    pub body: Vec<u8>,
    /// The sender's private auth key (DER), `None` for unsecured queues.
    pub sender_key: Option<Zeroizing<Vec<u8>>>,
    pub notify: bool,
}

/// Something for the application, e.g. a received chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// What the body is (the runtime's word, e.g. `"msg"`); must not be empty.
    pub kind: String,
    pub body: Vec<u8>,
}

/// Everything one step of a connection changes, written all at once.
#[derive(Debug, Clone)]
pub struct Commit<'a> {
    pub conn: ConnId,
    /// The connection's new encoded state.
    pub state: &'a [u8],
    /// The received message this step processed, if any (a user command has none).
    pub processed: Option<ProcessedMsg>,
    pub outbox: Vec<OutboxItem>,
    pub inbox: Vec<InboxItem>,
}

/// One of the user's receive queues, with what resubscribing needs.
#[derive(Clone, PartialEq, Eq)]
pub struct RcvQueueRecord {
    pub server: String,
    pub rcv_id: Vec<u8>,
    pub snd_id: Vec<u8>,
    /// Private recipient auth key, DER.
    pub rcv_auth_key_der: Zeroizing<Vec<u8>>,
    /// Private recipient DH key for server→recipient encryption, DER.
    pub rcv_dh_key_der: Zeroizing<Vec<u8>>,
    /// The router's public DH key, DER.
    pub server_dh_key_der: Vec<u8>,
    /// The queue mode byte as the router knows it, if any.
    pub mode: Option<u8>,
}

// Debug without the secrets: states, sender keys and queue keys are
// shown by length only, so a `{:?}` in a log leaks nothing.
impl std::fmt::Debug for StoredConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredConnection")
            .field("id", &self.id)
            .field("local_name", &self.local_name)
            .field("peer_display_name", &self.peer_display_name)
            .field("state_len", &self.state.len())
            .field("status", &self.status)
            .finish()
    }
}

impl std::fmt::Debug for OutboxItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxItem")
            .field("queue", &self.queue)
            .field("body_len", &self.body.len())
            .field(
                "sender_key",
                &self.sender_key.as_ref().map(|_| "<redacted>"),
            )
            .field("notify", &self.notify)
            .finish()
    }
}

impl std::fmt::Debug for RcvQueueRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcvQueueRecord")
            .field("server", &self.server)
            .field("rcv_id", &self.rcv_id)
            .field("snd_id", &self.snd_id)
            .field("keys", &"<redacted>")
            .field("mode", &self.mode)
            .finish()
    }
}

/// An open profile directory: the database and the lock on it.
pub struct Store {
    // Declared before the lock so the database closes first on drop.
    db: Connection,
    hold_acks: bool,
    dir: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// v3: the router message an inbox item came from, while its `ACK` waits
/// for the application to take the item (see [`Store::hold_acks`]).
const SCHEMA_V3: &str = "
ALTER TABLE inbox ADD COLUMN held_server TEXT;
ALTER TABLE inbox ADD COLUMN held_rcv_id BLOB;
ALTER TABLE inbox ADD COLUMN held_msg_id BLOB;
CREATE INDEX inbox_held ON inbox(held_server, held_rcv_id, held_msg_id);
";

/// v2: the sender keys of short invitation links being joined. `LKEY`
/// secures the inviter's queue with the key before the connection exists;
/// keeping the key first lets a join that was cut off run again with it.
const SCHEMA_V2: &str = "
CREATE TABLE short_link_keys (
  link_key BLOB PRIMARY KEY,
  sender_key BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
";

const SCHEMA_V1: &str = "
CREATE TABLE profile (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  display_name TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE profile_smp_servers (
  pos INTEGER PRIMARY KEY,
  address TEXT NOT NULL CHECK (address <> '')
);
CREATE TABLE connections (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  local_name TEXT,
  peer_display_name TEXT,
  state BLOB NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX connections_local_name ON connections(local_name);
CREATE INDEX connections_peer_name ON connections(peer_display_name);
CREATE TABLE processed_msgs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
  server TEXT NOT NULL,
  rcv_id BLOB NOT NULL,
  msg_id BLOB NOT NULL,
  processed_at INTEGER NOT NULL,
  UNIQUE (server, rcv_id, msg_id)
);
CREATE INDEX processed_msgs_conn ON processed_msgs(conn_id);
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
  server TEXT NOT NULL CHECK (server <> ''),
  snd_id BLOB NOT NULL CHECK (length(snd_id) > 0),
  body BLOB NOT NULL,
  sender_key BLOB,
  notify INTEGER NOT NULL CHECK (notify IN (0, 1)),
  created_at INTEGER NOT NULL
);
CREATE INDEX outbox_conn ON outbox(conn_id);
CREATE TABLE inbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind <> ''),
  body BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX inbox_conn ON inbox(conn_id);
CREATE TABLE rcv_queues (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
  server TEXT NOT NULL CHECK (server <> ''),
  rcv_id BLOB NOT NULL CHECK (length(rcv_id) > 0),
  snd_id BLOB NOT NULL,
  rcv_auth_key BLOB NOT NULL,
  rcv_dh_key BLOB NOT NULL,
  server_dh_key BLOB NOT NULL,
  mode INTEGER CHECK (mode IS NULL OR mode BETWEEN 0 AND 255),
  UNIQUE (server, rcv_id)
);
CREATE INDEX rcv_queues_conn ON rcv_queues(conn_id);
";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Creates `dir` as 0700 if missing; refuses one that is not a directory,
/// belongs to someone else, or that group or others can write (they could
/// swap the database under us).
fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err("creating", dir, e))?;
        }
        Err(e) => return Err(io_err("reading", dir, e)),
        Ok(_) => {}
    }
    // Follows a symlink on purpose: a profile dir may be linked elsewhere,
    // and the checks below apply to the real directory.
    let meta = std::fs::metadata(dir).map_err(|e| io_err("reading", dir, e))?;
    if !meta.is_dir() {
        return Err(StoreError::Permissions(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(StoreError::Permissions(format!(
            "{} belongs to another user",
            dir.display()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(StoreError::Permissions(format!(
            "{} is writable by other users (mode {:o}); run chmod 700 on it",
            dir.display(),
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

/// Opens (creating 0600) a file of ours in the profile directory, and
/// narrows its mode to 0600 if it was wider: it holds keys.
fn open_private(path: &Path) -> Result<File, StoreError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("opening", path, e))?;
    let meta = f.metadata().map_err(|e| io_err("reading", path, e))?;
    if !meta.is_file() {
        return Err(StoreError::Permissions(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(StoreError::Permissions(format!(
            "{} belongs to another user",
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Permissions(format!("chmod 600 {}: {e}", path.display())))?;
    }
    Ok(f)
}

impl Store {
    /// Opens the profile in `dir`, creating the directory and the database
    /// as needed. Fails with [`StoreError::Locked`] while another `Store`
    /// holds it for longer than [`LOCK_WAIT`].
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        prepare_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = open_private(&lock_path)?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(io_err("locking", &lock_path, e.into())),
            }
        }
        let db_path = dir.join(DB_FILE);
        // Created here, not by SQLite, so that it is 0600 from the start;
        // SQLite gives the -wal and -shm files the database file's mode.
        drop(open_private(&db_path)?);
        let db = Connection::open(&db_path)?;
        let mut store = Store {
            db,
            hold_acks: false,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn configure(&self) -> Result<(), StoreError> {
        // The profile lock already keeps every other connection out, so
        // SQLite need not take and drop its file locks around each
        // transaction; set before the first WAL access, it also keeps the
        // WAL index in memory instead of a shared-memory file. Durability
        // is unchanged (WAL, synchronous=FULL, recovery from the WAL on open).
        self.db
            .query_row("PRAGMA locking_mode = EXCLUSIVE", [], |_| Ok(()))?;
        let mode: String = self
            .db
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Sqlite(format!(
                "cannot switch to WAL mode (got {mode})"
            )));
        }
        self.db.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA secure_delete = ON;
             PRAGMA busy_timeout = 1000;",
        )?;
        // Every statement of a message's path is prepared once (about a
        // dozen of them).
        self.db.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self.db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "schema version {version} is newer than this program's {SCHEMA_VERSION}"
            )));
        }
        if version < 1 {
            let tx = self.db.transaction()?;
            tx.execute_batch(SCHEMA_V1)?;
            tx.pragma_update(None, "user_version", 1)?;
            tx.commit()?;
        }
        if version < 2 {
            let tx = self.db.transaction()?;
            tx.execute_batch(SCHEMA_V2)?;
            tx.pragma_update(None, "user_version", 2)?;
            tx.commit()?;
        }
        if version < 3 {
            let tx = self.db.transaction()?;
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", 3)?;
            tx.commit()?;
        }
        // Later versions: `if version < 4 { ... }` here, each in its own transaction.
        Ok(())
    }

    // ---- profile ----

    /// The profile, if one was set.
    pub fn profile(&self) -> Result<Option<Profile>, StoreError> {
        let row = self
            .db
            .query_row(
                "SELECT display_name, created_at FROM profile WHERE id = 1",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?;
        let Some((display_name, created_at)) = row else {
            return Ok(None);
        };
        let mut st = self
            .db
            .prepare("SELECT address FROM profile_smp_servers ORDER BY pos")?;
        let smp_servers = st
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(Profile {
            display_name,
            smp_servers,
            created_at,
        }))
    }

    /// Sets (replaces) the profile.
    pub fn set_profile(&mut self, p: &Profile) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO profile (id, display_name, created_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name,
                                            created_at = excluded.created_at",
            params![p.display_name, p.created_at],
        )?;
        tx.execute("DELETE FROM profile_smp_servers", [])?;
        for (i, a) in p.smp_servers.iter().enumerate() {
            tx.execute(
                "INSERT INTO profile_smp_servers (pos, address) VALUES (?1, ?2)",
                params![i as i64, a],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- connections ----

    /// Adds a connection with status `"new"`.
    pub fn create_connection(
        &mut self,
        local_name: Option<&str>,
        state: &[u8],
    ) -> Result<ConnId, StoreError> {
        self.db.execute(
            "INSERT INTO connections (local_name, state, status, created_at)
             VALUES (?1, ?2, 'new', ?3)",
            params![local_name, state, now()],
        )?;
        Ok(ConnId(self.db.last_insert_rowid()))
    }

    const CONN_COLS: &str = "id, local_name, peer_display_name, state, status";

    fn conn_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredConnection> {
        Ok(StoredConnection {
            id: ConnId(r.get(0)?),
            local_name: r.get(1)?,
            peer_display_name: r.get(2)?,
            state: Zeroizing::new(r.get(3)?),
            status: r.get(4)?,
        })
    }

    /// One connection by id.
    pub fn connection(&self, id: ConnId) -> Result<Option<StoredConnection>, StoreError> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT id, local_name, peer_display_name, state, status
                 FROM connections WHERE id = ?1",
            )?
            .query_row([id.0], Self::conn_row)
            .optional()?)
    }

    /// All connections, oldest first.
    pub fn connections(&self) -> Result<Vec<StoredConnection>, StoreError> {
        let mut st = self.db.prepare(&format!(
            "SELECT {} FROM connections ORDER BY id",
            Self::CONN_COLS
        ))?;
        Ok(st
            .query_map([], Self::conn_row)?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// The connection the user means by `name`: its local name if one has
    /// it, else the peer's display name. Two matches of the same kind are
    /// [`StoreError::Ambiguous`].
    pub fn connection_by_name(&self, name: &str) -> Result<Option<StoredConnection>, StoreError> {
        for col in ["local_name", "peer_display_name"] {
            let mut st = self.db.prepare(&format!(
                "SELECT {} FROM connections WHERE {col} = ?1 ORDER BY id LIMIT 2",
                Self::CONN_COLS
            ))?;
            let mut found = st
                .query_map([name], Self::conn_row)?
                .collect::<Result<Vec<_>, _>>()?;
            match found.len() {
                0 => continue,
                1 => return Ok(found.pop()),
                _ => return Err(StoreError::Ambiguous(name.to_string())),
            }
        }
        Ok(None)
    }

    /// Sets both names (`None` clears one).
    pub fn set_names(
        &mut self,
        id: ConnId,
        local_name: Option<&str>,
        peer_display_name: Option<&str>,
    ) -> Result<(), StoreError> {
        let n = self.db.execute(
            "UPDATE connections SET local_name = ?2, peer_display_name = ?3 WHERE id = ?1",
            params![id.0, local_name, peer_display_name],
        )?;
        found(n)
    }

    /// Sets the status word.
    pub fn set_status(&mut self, id: ConnId, status: &str) -> Result<(), StoreError> {
        let n = self
            .db
            .prepare_cached("UPDATE connections SET status = ?2 WHERE id = ?1")?
            .execute(params![id.0, status])?;
        found(n)
    }

    /// Deletes a connection with its queues, pending sends, inbox items
    /// and processed marks.
    pub fn delete_connection(&mut self, id: ConnId) -> Result<(), StoreError> {
        let n = self
            .db
            .execute("DELETE FROM connections WHERE id = ?1", [id.0])?;
        found(n)
    }

    // ---- short invitation links ----

    /// The sender key kept for joining the short invitation link with this
    /// link key, or `new_key` (DER), stored durably first.
    pub fn short_link_sender_key(
        &mut self,
        link_key: &[u8],
        new_key: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.db.execute(
            "INSERT INTO short_link_keys (link_key, sender_key, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (link_key) DO NOTHING",
            params![link_key, new_key, now()],
        )?;
        Ok(Zeroizing::new(self.db.query_row(
            "SELECT sender_key FROM short_link_keys WHERE link_key = ?1",
            [link_key],
            |r| r.get(0),
        )?))
    }

    /// Forgets a short link's sender key once its connection is stored.
    pub fn forget_short_link_key(&mut self, link_key: &[u8]) -> Result<(), StoreError> {
        self.db.execute(
            "DELETE FROM short_link_keys WHERE link_key = ?1",
            [link_key],
        )?;
        Ok(())
    }

    // ---- the step commit ----

    /// Writes one step of a connection atomically: the new state, the
    /// processed mark, the outbox and inbox items. Either all of it is
    /// durable when this returns `Ok`, or none of it is.
    ///
    /// A message already marked processed is refused with
    /// [`StoreError::AlreadyProcessed`] (the caller should only re-ACK it).
    pub fn commit(&mut self, c: &Commit<'_>) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        commit_in(&tx, c, self.hold_acks)?;
        tx.commit()?;
        Ok(())
    }

    /// [`Store::commit`], and in the same transaction: the connection's new
    /// status word (if given) and the removal of outbox items the router
    /// already accepted (`sent`; ids that are gone already are ignored).
    /// One fsync for what would otherwise be up to three.
    pub fn commit_step(
        &mut self,
        c: &Commit<'_>,
        status: Option<&str>,
        sent: &[OutboxId],
    ) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        commit_in(&tx, c, self.hold_acks)?;
        if let Some(status) = status {
            tx.prepare_cached("UPDATE connections SET status = ?2 WHERE id = ?1")?
                .execute(params![c.conn.0, status])?;
        }
        delete_outbox_in(&tx, sent)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes several sends the router accepted, in one transaction (ids
    /// that are gone already are ignored).
    pub fn outbox_done_all(&mut self, ids: &[OutboxId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.db.transaction()?;
        delete_outbox_in(&tx, ids)?;
        tx.commit()?;
        Ok(())
    }

    /// Whether this message was committed as processed (a redelivery).
    pub fn is_processed(
        &self,
        server: &str,
        rcv_id: &[u8],
        msg_id: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT 1 FROM processed_msgs WHERE server = ?1 AND rcv_id = ?2 AND msg_id = ?3",
            )?
            .query_row(params![server, rcv_id, msg_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// All pending sends, in the order they were committed.
    pub fn outbox(&self) -> Result<Vec<(OutboxId, ConnId, OutboxItem)>, StoreError> {
        let mut st = self.db.prepare_cached(
            "SELECT id, conn_id, server, snd_id, body, sender_key, notify FROM outbox ORDER BY id",
        )?;
        Ok(st
            .query_map([], |r| {
                Ok((
                    OutboxId(r.get(0)?),
                    ConnId(r.get(1)?),
                    OutboxItem {
                        queue: QueueRef {
                            server: r.get(2)?,
                            snd_id: r.get(3)?,
                        },
                        body: r.get(4)?,
                        sender_key: r.get::<_, Option<Vec<u8>>>(5)?.map(Zeroizing::new),
                        notify: r.get(6)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Removes a send the router accepted.
    pub fn outbox_done(&mut self, id: OutboxId) -> Result<(), StoreError> {
        let n = self
            .db
            .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
            .execute([id.0])?;
        found(n)
    }

    /// All items not yet marked done, oldest first. They stay until
    /// [`Store::inbox_done`], so a crash in between delivers them again.
    pub fn inbox_take(&self) -> Result<Vec<(InboxId, ConnId, InboxItem)>, StoreError> {
        let mut st = self
            .db
            .prepare_cached("SELECT id, conn_id, kind, body FROM inbox ORDER BY id")?;
        Ok(st
            .query_map([], |r| {
                Ok((
                    InboxId(r.get(0)?),
                    ConnId(r.get(1)?),
                    InboxItem {
                        kind: r.get(2)?,
                        body: r.get(3)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// The oldest item not yet marked done for which `skip` is false (e.g.
    /// one not already handed out); reads no further rows than that.
    pub fn inbox_first(
        &self,
        mut skip: impl FnMut(InboxId) -> bool,
    ) -> Result<Option<(InboxId, ConnId, InboxItem)>, StoreError> {
        let mut st = self
            .db
            .prepare_cached("SELECT id, conn_id, kind, body FROM inbox ORDER BY id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id = InboxId(r.get(0)?);
            if skip(id) {
                continue;
            }
            return Ok(Some((
                id,
                ConnId(r.get(1)?),
                InboxItem {
                    kind: r.get(2)?,
                    body: r.get(3)?,
                },
            )));
        }
        Ok(None)
    }

    /// Removes an item the application has taken.
    pub fn inbox_done(&mut self, id: InboxId) -> Result<(), StoreError> {
        let n = self
            .db
            .prepare_cached("DELETE FROM inbox WHERE id = ?1")?
            .execute([id.0])?;
        found(n)
    }

    /// From now on, the items a commit puts in the inbox hold the `ACK` of
    /// the router message they came from until the application takes them
    /// ([`Store::inbox_done_held`], [`Store::inbox_release`]), as the
    /// reference's agent leaves `ACK` to its application: a device then
    /// acknowledges only what is on its card.
    pub fn hold_acks(&mut self, on: bool) {
        self.hold_acks = on;
    }

    /// Whether an inbox item still holds the `ACK` of this router message.
    pub fn holds(&self, server: &str, rcv_id: &[u8], msg_id: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT 1 FROM inbox WHERE held_server = ?1 AND held_rcv_id = ?2
                 AND held_msg_id = ?3 LIMIT 1",
            )?
            .query_row(params![server, rcv_id, msg_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// [`Store::inbox_done`]; returns the router message whose `ACK` may go
    /// now (this was the last item holding it).
    pub fn inbox_done_held(&mut self, id: InboxId) -> Result<Option<ProcessedMsg>, StoreError> {
        let held = self.held_by(id)?;
        self.inbox_done(id)?;
        self.unheld(held)
    }

    /// Keeps an item in the inbox but lets go of the `ACK` it holds (the
    /// application keeps it as it is, durably here); returns the router
    /// message whose `ACK` may go now.
    pub fn inbox_release(&mut self, id: InboxId) -> Result<Option<ProcessedMsg>, StoreError> {
        let held = self.held_by(id)?;
        let n = self
            .db
            .prepare_cached(
                "UPDATE inbox SET held_server = NULL, held_rcv_id = NULL, held_msg_id = NULL
                 WHERE id = ?1",
            )?
            .execute([id.0])?;
        if n == 0 {
            // Taken meanwhile (done): nothing held any more.
            return Ok(None);
        }
        self.unheld(held)
    }

    fn held_by(&self, id: InboxId) -> Result<Option<ProcessedMsg>, StoreError> {
        Ok(self
            .db
            .prepare_cached(
                "SELECT held_server, held_rcv_id, held_msg_id FROM inbox WHERE id = ?1
                 AND held_server IS NOT NULL",
            )?
            .query_row([id.0], |r| {
                Ok(ProcessedMsg {
                    server: r.get(0)?,
                    rcv_id: r.get(1)?,
                    msg_id: r.get(2)?,
                })
            })
            .optional()?)
    }

    fn unheld(&self, held: Option<ProcessedMsg>) -> Result<Option<ProcessedMsg>, StoreError> {
        match held {
            Some(p) if !self.holds(&p.server, &p.rcv_id, &p.msg_id)? => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    // ---- receive queues ----

    /// Records one of the user's receive queues for `conn`.
    pub fn add_rcv_queue(&mut self, conn: ConnId, q: &RcvQueueRecord) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO rcv_queues (conn_id, server, rcv_id, snd_id, rcv_auth_key, rcv_dh_key,
                                     server_dh_key, mode)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                conn.0,
                q.server,
                q.rcv_id,
                q.snd_id,
                q.rcv_auth_key_der.as_slice(),
                q.rcv_dh_key_der.as_slice(),
                q.server_dh_key_der,
                q.mode
            ],
        )?;
        Ok(())
    }

    /// All receive queues, to resubscribe at start.
    pub fn rcv_queues(&self) -> Result<Vec<(ConnId, RcvQueueRecord)>, StoreError> {
        let mut st = self.db.prepare(
            "SELECT conn_id, server, rcv_id, snd_id, rcv_auth_key, rcv_dh_key, server_dh_key, mode
             FROM rcv_queues ORDER BY id",
        )?;
        Ok(st
            .query_map([], |r| {
                Ok((
                    ConnId(r.get(0)?),
                    RcvQueueRecord {
                        server: r.get(1)?,
                        rcv_id: r.get(2)?,
                        snd_id: r.get(3)?,
                        rcv_auth_key_der: Zeroizing::new(r.get(4)?),
                        rcv_dh_key_der: Zeroizing::new(r.get(5)?),
                        server_dh_key_der: r.get(6)?,
                        mode: r.get(7)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// The connection a received message belongs to.
    pub fn rcv_queue_conn(
        &self,
        server: &str,
        rcv_id: &[u8],
    ) -> Result<Option<ConnId>, StoreError> {
        Ok(self
            .db
            .query_row(
                "SELECT conn_id FROM rcv_queues WHERE server = ?1 AND rcv_id = ?2",
                params![server, rcv_id],
                |r| r.get(0).map(ConnId),
            )
            .optional()?)
    }

    /// Forgets a receive queue (after the router deleted it).
    pub fn delete_rcv_queue(&mut self, server: &str, rcv_id: &[u8]) -> Result<(), StoreError> {
        let n = self.db.execute(
            "DELETE FROM rcv_queues WHERE server = ?1 AND rcv_id = ?2",
            params![server, rcv_id],
        )?;
        found(n)
    }
}

fn found(rows: usize) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn delete_outbox_in(tx: &Transaction<'_>, ids: &[OutboxId]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in ids {
        st.execute([id.0])?;
    }
    Ok(())
}

/// The body of [`Store::commit`]; any error drops (rolls back) `tx`.
fn commit_in(tx: &Transaction<'_>, c: &Commit<'_>, hold: bool) -> Result<(), StoreError> {
    let t = now();
    let n = tx
        .prepare_cached("UPDATE connections SET state = ?2 WHERE id = ?1")?
        .execute(params![c.conn.0, c.state])?;
    found(n)?;
    if let Some(p) = &c.processed {
        tx.prepare_cached(
            "INSERT INTO processed_msgs (conn_id, server, rcv_id, msg_id, processed_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![c.conn.0, p.server, p.rcv_id, p.msg_id, t])
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyProcessed
            } else {
                e.into()
            }
        })?;
        tx.prepare_cached(
            "DELETE FROM processed_msgs WHERE server = ?1 AND rcv_id = ?2 AND id NOT IN
               (SELECT id FROM processed_msgs WHERE server = ?1 AND rcv_id = ?2
                ORDER BY id DESC LIMIT ?3)",
        )?
        .execute(params![p.server, p.rcv_id, PROCESSED_KEEP_PER_QUEUE])?;
    }
    for o in &c.outbox {
        tx.prepare_cached(
            "INSERT INTO outbox (conn_id, server, snd_id, body, sender_key, notify, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            c.conn.0,
            o.queue.server,
            o.queue.snd_id,
            o.body,
            o.sender_key.as_ref().map(|k| k.as_slice()),
            o.notify,
            t
        ])?;
    }
    let held = c.processed.as_ref().filter(|_| hold);
    for i in &c.inbox {
        tx.prepare_cached(
            "INSERT INTO inbox (conn_id, kind, body, created_at, held_server, held_rcv_id,
               held_msg_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            c.conn.0,
            i.kind,
            i.body,
            t,
            held.map(|p| &p.server),
            held.map(|p| &p.rcv_id),
            held.map(|p| &p.msg_id)
        ])?;
    }
    Ok(())
}
