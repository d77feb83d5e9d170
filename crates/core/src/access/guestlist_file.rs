//! A local JSON file that mirrors a Gather guest list, for `autopilot dev --sandbox` and for
//! deployments without Gather: the same shape (`{email: {name, role, affiliation}}`,
//! pretty-printed) and the same rules as [`super::GatherGuestList`]. Adding merges; removing
//! drops an entry only while it reads as this system wrote it, and keeps every other entry
//! exactly as read.
//!
//! A missing (or empty) file is an empty list; parent directories are created on the first
//! write; every write goes to a temporary file in the same directory that is then renamed
//! over the list, so a reader never sees half a list. A mutex serialises this process's
//! reads and writes; an edit made by hand between one of our reads and the rename that
//! follows it is lost, as with Gather's overwrite.
//!
//! Errors name the path, never the file's content: it holds emails and names.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::gather::{guest_entries, parse_entries, plan_removals, Entries};
use super::{Guest, GuestList, Removal, RemovalOutcome};
use crate::upstream::UpstreamError;

const UPSTREAM: &str = "guest-list file";

#[derive(Debug)]
pub struct FileGuestList {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileGuestList {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, doing: &str, error: &std::io::Error) -> UpstreamError {
        UpstreamError::Transport {
            upstream: UPSTREAM,
            reason: format!("cannot {doing} {}: {}", self.path.display(), error.kind()),
        }
    }

    async fn read(&self) -> Result<Entries, UpstreamError> {
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Entries::new()),
            Err(e) => return Err(self.io_error("read", &e)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Entries::new());
        }
        parse_entries(UPSTREAM, &bytes)
    }

    /// Replaces the file with `entries`: temporary file in the same directory, synced, then
    /// renamed over the list.
    async fn write(&self, entries: &Entries) -> Result<(), UpstreamError> {
        let mut text =
            serde_json::to_vec_pretty(entries).map_err(|_| UpstreamError::Malformed {
                upstream: UPSTREAM,
                reason: "cannot encode the guest list".to_owned(),
            })?;
        text.push(b'\n');
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| self.io_error("create the directory of", &e))?;
        let file_name = self
            .path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| UpstreamError::Transport {
                upstream: UPSTREAM,
                reason: format!("{} names no file", self.path.display()),
            })?;
        let temp = dir.join(format!(
            ".{file_name}.{}-{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = self.write_temp(&temp, &text).await;
        let renamed = match written {
            Ok(()) => tokio::fs::rename(&temp, &self.path)
                .await
                .map_err(|e| self.io_error("replace", &e)),
            Err(error) => Err(error),
        };
        if renamed.is_err() {
            // Best effort: the temporary file holds personal data.
            let _ = tokio::fs::remove_file(&temp).await;
        }
        renamed
    }

    async fn write_temp(&self, temp: &Path, text: &[u8]) -> Result<(), UpstreamError> {
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options
            .open(temp)
            .await
            .map_err(|e| self.io_error("create a temporary file next to", &e))?;
        file.write_all(text)
            .await
            .map_err(|e| self.io_error("write a temporary file next to", &e))?;
        file.sync_all()
            .await
            .map_err(|e| self.io_error("sync a temporary file next to", &e))?;
        Ok(())
    }
}

#[async_trait]
impl GuestList for FileGuestList {
    async fn add(&self, guests: &[Guest]) -> Result<(), UpstreamError> {
        if guests.is_empty() {
            return Ok(());
        }
        let _guard = self.lock.lock().await;
        let mut entries = self.read().await?;
        entries.extend(guest_entries(guests));
        self.write(&entries).await
    }

    async fn remove(&self, removals: &[Removal]) -> Result<Vec<RemovalOutcome>, UpstreamError> {
        if removals.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = self.lock.lock().await;
        let entries = self.read().await?;
        let plan = plan_removals(&entries, removals);
        if !plan.removed.is_empty() {
            self.write(&plan.kept).await?;
        }
        Ok(plan.outcomes)
    }
}
