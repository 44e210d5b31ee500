//! The write-ahead log for writes that have no other durable source (INSERT, COPY, HTTP).
//!
//! One log for the whole BE, split into files named by their first sequence number.
//! Record layout: `len: u32 | crc32: u32 | seq: u64 | table_id: u64 | kind: u8 | payload`,
//! where `len` counts the bytes after the crc and the crc covers them. Group commit: one
//! writer thread takes every request queued while it was syncing, writes them with one
//! `write` and one `fdatasync`, then applies them to memtables in sequence order and only
//! then acknowledges them, so a write is visible exactly when it is durable. On start, a
//! torn or corrupt tail (a crash mid-write) is cut off at the last whole record.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use eddy_proto::{Error, ErrorCode, Result};
use tokio::sync::{mpsc, oneshot};

use crate::metrics;

pub const KIND_WRITE: u8 = 1;
pub const KIND_DELETE: u8 = 2;
const HEADER: usize = 8;
const FIXED: usize = 17;

/// A record read back from the log.
#[derive(Debug)]
pub struct WalRecord {
    pub seq: u64,
    pub table_id: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// Called by the writer thread once a record is durable, in sequence order, before the
/// writer is acknowledged. It MUST NOT block on the log.
pub type ApplyFn = Box<dyn FnOnce(u64) -> u64 + Send>;

struct Request {
    table_id: u64,
    kind: u8,
    payload: Vec<u8>,
    apply: ApplyFn,
    reply: oneshot::Sender<Result<u64>>,
}

/// Handle to the log writer. Cloning shares the writer.
#[derive(Debug, Clone)]
pub struct Wal {
    tx: mpsc::Sender<Request>,
    dir: PathBuf,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("table_id", &self.table_id)
            .finish()
    }
}

fn io_err(action: &str, e: std::io::Error) -> Error {
    Error::new(ErrorCode::StorageIo, format!("{action}: {e}"))
}

fn wal_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("list WAL directory", e))? {
        let entry = entry.map_err(|e| io_err("list WAL directory", e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(num) = name.strip_suffix(".wal") {
            if let Ok(first) = num.parse::<u64>() {
                files.push((first, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

/// Reads every whole record in the log, cutting off a torn tail. Returns the records and
/// the next sequence number to use.
pub fn replay(dir: &Path) -> Result<(Vec<WalRecord>, u64)> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create WAL directory", e))?;
    let mut records = Vec::new();
    let mut next_seq = 1;
    let files = wal_files(dir)?;
    for (first, path) in &files {
        next_seq = next_seq.max(*first);
        let mut buf = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| io_err("read WAL", e))?;
        let mut pos = 0;
        while pos + HEADER <= buf.len() {
            let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().expect("4 bytes"));
            let body_end = pos + HEADER + len;
            if len < FIXED
                || body_end > buf.len()
                || crc32fast::hash(&buf[pos + HEADER..body_end]) != crc
            {
                break;
            }
            let body = &buf[pos + HEADER..body_end];
            let seq = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
            let table_id = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
            records.push(WalRecord {
                seq,
                table_id,
                kind: body[16],
                payload: body[FIXED..].to_vec(),
            });
            next_seq = next_seq.max(seq + 1);
            pos = body_end;
        }
        if pos < buf.len() {
            // A crash mid-write leaves a torn tail in the last file; a failed write (full
            // disk) leaves one in the file the writer then abandoned for a new one. Neither
            // was acknowledged. Later files hold acknowledged records, so keep reading.
            tracing::warn!(file = %path.display(), offset = pos, "cutting torn WAL tail");
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_err("open WAL", e))?;
            f.set_len(pos as u64)
                .map_err(|e| io_err("truncate WAL", e))?;
            f.sync_all().map_err(|e| io_err("sync WAL", e))?;
        }
    }
    Ok((records, next_seq))
}

impl Wal {
    /// Starts the writer thread. `next_seq` comes from [`replay`]; `queue_capacity` bounds
    /// how many writes may wait for the log.
    pub fn start(
        dir: PathBuf,
        next_seq: u64,
        queue_capacity: usize,
        file_bytes_max: u64,
    ) -> Result<Wal> {
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create WAL directory", e))?;
        let (tx, rx) = mpsc::channel(queue_capacity);
        metrics::WAL_QUEUE_CAPACITY.set(queue_capacity as i64);
        let writer = Writer::open(dir.clone(), next_seq, file_bytes_max)?;
        std::thread::Builder::new()
            .name("eddy-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err("start WAL writer", e))?;
        Ok(Wal { tx, dir })
    }

    /// Appends a record; `apply` runs once it is durable. Returns what `apply` returned.
    pub async fn append(
        &self,
        table_id: u64,
        kind: u8,
        payload: Vec<u8>,
        apply: ApplyFn,
    ) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                table_id,
                kind,
                payload,
                apply,
                reply,
            })
            .await
            .map_err(|_| Error::new(ErrorCode::Internal, "WAL writer stopped"))?;
        rx.await
            .map_err(|_| Error::new(ErrorCode::Internal, "WAL writer stopped"))?
    }

    /// Removes log files whose records all have `seq < keep_from`.
    pub fn truncate_before(&self, keep_from: u64) -> Result<()> {
        let files = wal_files(&self.dir)?;
        for w in files.windows(2) {
            let (_, path) = &w[0];
            let (next_first, _) = w[1];
            if next_first <= keep_from {
                std::fs::remove_file(path).map_err(|e| io_err("remove WAL", e))?;
            }
        }
        Ok(())
    }

    /// Starts a new log file, so that older ones can be truncated after a checkpoint.
    pub async fn rotate(&self) -> Result<()> {
        self.append(0, 0, Vec::new(), Box::new(|_| 0))
            .await
            .map(|_| ())
    }
}

struct Writer {
    dir: PathBuf,
    file: File,
    file_bytes: u64,
    file_bytes_max: u64,
    next_seq: u64,
}

impl Writer {
    fn open(dir: PathBuf, next_seq: u64, file_bytes_max: u64) -> Result<Writer> {
        let path = dir.join(file_name(next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("open WAL", e))?;
        sync_dir(&dir)?;
        let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer {
            dir,
            file,
            file_bytes,
            file_bytes_max,
            next_seq,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < 4096 {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            metrics::WAL_GROUP_SIZE.observe(group.len() as f64);
            // A rotate request is a record of kind 0: it starts a new file first, unless
            // the current one is still empty (a CHECKPOINT after bulk writes, which skip
            // the log, or after another CHECKPOINT): then there is nothing to close.
            let rotate = group.iter().any(|r| r.kind == 0) && self.file_bytes > 0;
            if rotate || self.file_bytes >= self.file_bytes_max {
                if let Err(e) = self.rotate() {
                    for r in group {
                        let _ = r.reply.send(Err(e.clone()));
                    }
                    continue;
                }
            }
            let first_seq = self.next_seq;
            // Each record is a small header (with the crc computed over header tail and
            // payload in place) followed by the payload itself: the payloads, which may be
            // hundreds of MB, are handed to the kernel as they are, never copied.
            let mut heads: Vec<[u8; HEADER + FIXED]> = Vec::with_capacity(group.len());
            let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * group.len());
            for (i, r) in group.iter().enumerate().filter(|(_, r)| r.kind != 0) {
                heads.push(record_head(first_seq + i as u64, r));
            }
            let mut h = heads.iter();
            for r in group.iter().filter(|r| r.kind != 0) {
                parts.push(h.next().expect("one head per record"));
                parts.push(&r.payload);
            }
            let written: usize = parts.iter().map(|p| p.len()).sum();
            // A group of rotate requests alone writes nothing, so has nothing to sync.
            let result = if parts.is_empty() {
                Ok(())
            } else {
                metrics::WAL_FSYNCS.inc();
                write_all_vectored(&mut self.file, &parts)
                    .and_then(|_| self.file.sync_data())
                    .map_err(|e| io_err("write WAL", e))
            };
            drop(parts);
            match result {
                Ok(()) => {
                    self.file_bytes += written as u64;
                    metrics::WAL_BYTES.inc_by(written as u64);
                    self.next_seq = first_seq + group.len() as u64;
                    for (i, r) in group.into_iter().enumerate() {
                        let applied = (r.apply)(first_seq + i as u64);
                        let _ = r.reply.send(Ok(applied));
                    }
                }
                Err(e) => {
                    // The file may hold part of this group: start a fresh file so that a
                    // later successful write is not stranded behind a torn record. On
                    // replay the torn part is cut off; none of it was acknowledged.
                    tracing::error!(error = %e, "WAL write failed");
                    // Undo whatever part of the group reached the file: those records were
                    // never acknowledged and must not replay. If even that fails, continue
                    // in a new file past every sequence number the group used.
                    let undone = self
                        .file
                        .set_len(self.file_bytes)
                        .and_then(|_| self.file.sync_data());
                    if undone.is_err() {
                        self.next_seq = first_seq + group.len() as u64;
                        let _ = self.rotate_after_failure();
                    }
                    for r in group {
                        let _ = r.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn rotate(&mut self) -> Result<()> {
        self.file.sync_all().map_err(|e| io_err("sync WAL", e))?;
        self.open_next()
    }

    fn open_next(&mut self) -> Result<()> {
        let path = self.dir.join(file_name(self.next_seq));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("open WAL", e))?;
        self.file_bytes = 0;
        sync_dir(&self.dir)
    }

    fn rotate_after_failure(&mut self) -> Result<()> {
        // Skip a sequence number so the new file's name is distinct. The failed file is not
        // synced: whatever part of the group reached it was never acknowledged, and replay
        // cuts it off as a torn tail.
        self.next_seq += 1;
        self.open_next()
    }
}

/// `len | crc | seq | table_id | kind` of one record; the crc covers everything after it,
/// the payload included.
fn record_head(seq: u64, r: &Request) -> [u8; HEADER + FIXED] {
    let mut head = [0u8; HEADER + FIXED];
    head[0..4].copy_from_slice(&((FIXED + r.payload.len()) as u32).to_le_bytes());
    head[8..16].copy_from_slice(&seq.to_le_bytes());
    head[16..24].copy_from_slice(&r.table_id.to_le_bytes());
    head[24] = r.kind;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[HEADER..]);
    crc.update(&r.payload);
    head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    head
}

/// `write_all` over several buffers with `writev`, resuming after short writes.
fn write_all_vectored(file: &mut File, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut i = 0; // first part not yet fully written
    let mut off = 0; // bytes of parts[i] already written
    while i < parts.len() {
        // At most IOV_MAX (1024 on Linux) buffers per call.
        let bufs: Vec<std::io::IoSlice<'_>> = std::iter::once(&parts[i][off..])
            .chain(parts[i + 1..].iter().copied())
            .take(1024)
            .map(std::io::IoSlice::new)
            .collect();
        let mut n = match file.write_vectored(&bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while i < parts.len() && n >= parts[i].len() - off {
            n -= parts[i].len() - off;
            i += 1;
            off = 0;
        }
        off += n;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("sync WAL directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn append_replay_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(dir.path().to_path_buf(), 1, 16, 1 << 20).unwrap();
        for i in 0..5u8 {
            let got = wal
                .append(7, KIND_WRITE, vec![i; 10], Box::new(|seq| seq))
                .await
                .unwrap();
            assert_eq!(got, i as u64 + 1);
        }
        drop(wal);
        // Simulate a crash in the middle of a record.
        let (_, path) = wal_files(dir.path()).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
        let (records, next) = replay(dir.path()).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(records[4].payload, vec![4u8; 10]);
        assert_eq!(next, 6);
        let (records, _) = replay(dir.path()).unwrap();
        assert_eq!(records.len(), 5, "the torn tail was cut");
    }

    /// A rotate starts a new file only when the current one holds records, and sequence
    /// numbers stay increasing across skipped and real rotations.
    #[tokio::test]
    async fn rotate_skips_an_empty_file_and_replay_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(dir.path().to_path_buf(), 1, 16, 1 << 20).unwrap();
        let files = || wal_files(dir.path()).unwrap().len();
        wal.rotate().await.unwrap();
        wal.rotate().await.unwrap();
        assert_eq!(files(), 1, "rotating an empty log made a new file");
        let first = wal
            .append(7, KIND_WRITE, vec![1; 10], Box::new(|seq| seq))
            .await
            .unwrap();
        wal.rotate().await.unwrap();
        assert_eq!(files(), 2, "rotating after a write starts a new file");
        wal.rotate().await.unwrap();
        assert_eq!(files(), 2);
        let second = wal
            .append(7, KIND_WRITE, vec![2; 10], Box::new(|seq| seq))
            .await
            .unwrap();
        assert!(second > first);
        drop(wal);
        let (records, next) = replay(dir.path()).unwrap();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![first, second]);
        assert_eq!(records[1].payload, vec![2u8; 10]);
        assert!(next > second);
    }

    /// More buffers than one writev takes, of uneven sizes (some empty), land in order.
    #[test]
    fn vectored_write_keeps_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        let parts: Vec<Vec<u8>> = (0..2500u32)
            .map(|i| vec![(i % 251) as u8; (i as usize * 7919) % 5000])
            .collect();
        let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        let mut f = File::create(&path).unwrap();
        write_all_vectored(&mut f, &slices).unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), parts.concat());
    }

    /// A full disk fails the write with the OS's reason, acknowledges nothing, and the log
    /// keeps working once space returns (here: the next file is a regular one).
    #[tokio::test]
    async fn full_disk_fails_the_write_and_loses_nothing_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(dir.path().to_path_buf(), 1, 16, 1 << 20).unwrap();
        wal.append(1, KIND_WRITE, vec![1; 8], Box::new(|s| s))
            .await
            .unwrap();
        drop(wal);
        // The next file the writer opens (named by the next sequence number) is /dev/full,
        // which fails every write with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", dir.path().join(file_name(2))).unwrap();
        let wal = Wal::start(dir.path().to_path_buf(), 2, 16, 1 << 20).unwrap();
        let applied = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let a2 = std::sync::Arc::clone(&applied);
        let err = wal
            .append(
                1,
                KIND_WRITE,
                vec![2; 8],
                Box::new(move |s| {
                    a2.store(true, std::sync::atomic::Ordering::SeqCst);
                    s
                }),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::StorageIo);
        assert!(
            err.message.contains("No space left on device"),
            "{}",
            err.message
        );
        assert!(
            !applied.load(std::sync::atomic::Ordering::SeqCst),
            "a failed write is never applied"
        );
        // The writer moved to a fresh file: later writes succeed and everything acknowledged
        // replays.
        wal.append(1, KIND_WRITE, vec![3; 8], Box::new(|s| s))
            .await
            .unwrap();
        drop(wal);
        // Space returns; the abandoned file holds a torn partial group.
        std::fs::remove_file(dir.path().join(file_name(2))).unwrap();
        std::fs::write(dir.path().join(file_name(2)), [9u8, 0, 0, 0, 1]).unwrap();
        let (records, _) = replay(dir.path()).unwrap();
        let payloads: Vec<u8> = records.iter().map(|r| r.payload[0]).collect();
        assert_eq!(payloads, vec![1, 3]);
    }
}
