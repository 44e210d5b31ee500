//! Decoding a request body while it arrives.
//!
//! Whole lines are cut off the front of what has arrived, [`STREAM_CHUNK_BYTES`] at a
//! time, and decoded on blocking threads (at most one per core at once), so a large
//! request's decoding overlaps its transfer instead of starting after it. Any failure of
//! a chunk, and any CSV chunk with a quote (a quoted field may hold a newline, so a cut at
//! a newline may fall inside a value), falls back to decoding the whole body once it has
//! arrived with [`decode_ndjson`] / [`decode_csv`]: their errors number rows across the
//! whole request, and they reject it as a whole. A body smaller than one chunk goes
//! straight to them.

use std::collections::VecDeque;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use eddy_proto::{Error, ErrorCode, Result, WriteFormat};
use futures::{Stream, StreamExt};
use tokio::task::JoinHandle;

use crate::decode::{
    csv_header_schema, decode_csv, decode_csv_fast, decode_ndjson, decode_ndjson_fast,
};

/// Bytes of whole lines handed to one decoder thread.
pub const STREAM_CHUNK_BYTES: usize = 16 << 20;

/// Decodes a body in `format` with `schema` from the pieces it arrives in. Errors of
/// `body` itself (a vanished client, a size limit) end the decoding with that error.
pub async fn decode_stream<S>(
    schema: SchemaRef,
    format: WriteFormat,
    mut body: S,
) -> Result<Vec<RecordBatch>>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    let max_running = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut chunks = Chunks::new(schema.clone(), format);
    // Every piece, kept for the whole-body fallback (they are reference-counted).
    let mut all: Vec<Bytes> = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece?;
        if piece.is_empty() {
            continue;
        }
        all.push(piece.clone());
        chunks.arrived(piece);
        if chunks.running.len() > max_running {
            chunks.finish_oldest().await;
        }
    }
    if let Some(batches) = chunks.finish().await {
        return Ok(batches);
    }
    tokio::task::spawn_blocking(move || decode_whole(&schema, format, &all))
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, format!("decode task: {e}")))?
}

/// The body decoded in one go, after it has arrived.
fn decode_whole(
    schema: &SchemaRef,
    format: WriteFormat,
    all: &[Bytes],
) -> Result<Vec<RecordBatch>> {
    let pieces: Vec<&[u8]> = all.iter().map(|b| b.as_ref()).collect();
    match format {
        WriteFormat::NdJson => decode_ndjson(schema, &pieces),
        WriteFormat::Csv { header, delimiter } => decode_csv(schema, &pieces, header, delimiter),
    }
}

/// The chunks of a body being decoded, in order.
struct Chunks {
    schema: SchemaRef,
    format: WriteFormat,
    /// Arrived and not yet handed to a decoder.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// The CSV header's columns, once the first chunk has been cut.
    csv_columns: Option<SchemaRef>,
    /// Whether any chunk has been handed to a decoder.
    started: bool,
    /// Whether every chunk so far decoded; once not, the rest is left to the fallback.
    ok: bool,
    running: VecDeque<JoinHandle<Result<Vec<RecordBatch>>>>,
    decoded: Vec<RecordBatch>,
}

impl Chunks {
    fn new(schema: SchemaRef, format: WriteFormat) -> Self {
        Self {
            schema,
            format,
            pending: Vec::new(),
            pending_bytes: 0,
            csv_columns: None,
            started: false,
            ok: true,
            running: VecDeque::new(),
            decoded: Vec::new(),
        }
    }

    /// Takes a piece; starts decoding its whole lines once a chunk's worth has arrived.
    fn arrived(&mut self, piece: Bytes) {
        if !self.ok {
            return;
        }
        self.pending_bytes += piece.len();
        self.pending.push(piece);
        if self.pending_bytes < STREAM_CHUNK_BYTES {
            return;
        }
        if let Some(run) = take_whole_lines(&mut self.pending) {
            self.pending_bytes = self.pending.iter().map(|p| p.len()).sum();
            self.start(run);
        }
    }

    fn start(&mut self, run: Vec<Bytes>) {
        let schema = self.schema.clone();
        let job: Box<dyn FnOnce() -> Result<Vec<RecordBatch>> + Send> = match self.format {
            WriteFormat::NdJson => Box::new(move || {
                let pieces: Vec<&[u8]> = run.iter().map(|b| b.as_ref()).collect();
                decode_ndjson_fast(&schema, &pieces)
            }),
            WriteFormat::Csv { header, delimiter } => {
                let first = !self.started;
                if first && header {
                    // The header is one short line: read it here, so that later chunks
                    // know their columns before this one has decoded.
                    let pieces: Vec<&[u8]> = run.iter().map(|b| b.as_ref()).collect();
                    match csv_header_schema(&schema, &pieces, delimiter) {
                        Ok((columns, _)) => self.csv_columns = Some(columns),
                        Err(_) => {
                            self.ok = false;
                            return;
                        }
                    }
                }
                let columns = self.csv_columns.clone().unwrap_or_else(|| schema.clone());
                let skip_header = first && header;
                Box::new(move || {
                    let pieces: Vec<&[u8]> = run.iter().map(|b| b.as_ref()).collect();
                    let pieces = if skip_header {
                        csv_header_schema(&schema, &pieces, delimiter)?.1
                    } else {
                        pieces
                    };
                    if pieces.iter().any(|p| memchr::memchr(b'"', p).is_some()) {
                        return Err(Error::new(ErrorCode::DecodeInput, "quoted CSV"));
                    }
                    decode_csv_fast(&schema, &columns, &pieces, delimiter)
                })
            }
        };
        self.started = true;
        self.running.push_back(tokio::task::spawn_blocking(job));
    }

    /// Waits for the oldest running chunk and keeps its batches.
    async fn finish_oldest(&mut self) {
        let Some(job) = self.running.pop_front() else {
            return;
        };
        match job.await {
            Ok(Ok(batches)) if self.ok => self.decoded.extend(batches),
            _ => self.ok = false,
        }
    }

    /// Decodes what is left once the body has ended: `Some(batches)` of the whole body,
    /// or `None` when it must be decoded in one go instead.
    async fn finish(mut self) -> Option<Vec<RecordBatch>> {
        if self.started && self.ok && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.start(rest);
        }
        while !self.running.is_empty() {
            self.finish_oldest().await;
        }
        (self.started && self.ok).then_some(self.decoded)
    }
}

/// Cuts `pending` after its last newline: returns the whole lines and leaves the partial
/// one in `pending`. `None` when no newline has arrived.
fn take_whole_lines(pending: &mut Vec<Bytes>) -> Option<Vec<Bytes>> {
    let (i, at) = pending
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, p)| memchr::memrchr(b'\n', p).map(|at| (i, at)))?;
    let mut run: Vec<Bytes> = pending.drain(..=i).collect();
    let last = run.pop().expect("drained at least one piece");
    let tail = last.slice(at + 1..);
    run.push(last.slice(..=at));
    if !tail.is_empty() {
        pending.insert(0, tail);
    }
    Some(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    /// The body in pieces of `piece` bytes, as a stream.
    fn stream(body: &[u8], piece: usize) -> impl Stream<Item = Result<Bytes>> + Unpin {
        let pieces: Vec<Result<Bytes>> = body
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(pieces)
    }

    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                a.values().to_vec()
            })
            .collect()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    /// Enough rows for several chunks.
    fn rows() -> usize {
        STREAM_CHUNK_BYTES * 3 / 40
    }

    #[test]
    fn a_body_of_many_chunks_decodes_in_order() {
        let n = rows();
        let mut ndjson = Vec::new();
        let mut csv = b"name,id\n".to_vec();
        for i in 0..n {
            ndjson.extend_from_slice(format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n").as_bytes());
            csv.extend_from_slice(format!("n{i},{i}\n").as_bytes());
        }
        let want: Vec<i64> = (0..n as i64).collect();
        let rt = rt();
        for piece in [7, 65_536, 1 << 20] {
            let b = rt
                .block_on(decode_stream(
                    schema(),
                    WriteFormat::NdJson,
                    stream(&ndjson, piece),
                ))
                .unwrap();
            assert_eq!(ids(&b), want, "NDJSON in pieces of {piece}");
            let csv_format = WriteFormat::Csv {
                header: true,
                delimiter: b',',
            };
            let b = rt
                .block_on(decode_stream(schema(), csv_format, stream(&csv, piece)))
                .unwrap();
            assert_eq!(ids(&b), want, "CSV in pieces of {piece}");
            let names = b[0]
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            assert_eq!(names.value(1), "n1");
        }
    }

    #[test]
    fn a_bad_row_late_in_a_long_body_is_numbered_across_the_whole_body() {
        let n = rows();
        let bad = n - 3;
        let mut body = Vec::new();
        for i in 0..n {
            if i == bad {
                body.extend_from_slice(b"{\"id\":\"x7\",\"name\":\"bad\"}\n");
            } else {
                body.extend_from_slice(format!("{{\"id\":{i},\"name\":\"n{i}\"}}\n").as_bytes());
            }
        }
        let err = rt()
            .block_on(decode_stream(
                schema(),
                WriteFormat::NdJson,
                stream(&body, 65_536),
            ))
            .unwrap_err();
        assert!(
            err.message.contains(&format!("row {}", bad + 1)) && err.message.contains("x7"),
            "{}",
            err.message
        );
    }

    #[test]
    fn quoted_csv_with_newlines_in_values_decodes_whole() {
        let n = rows();
        let mut body = Vec::new();
        for i in 0..n {
            body.extend_from_slice(format!("{i},\"line\nbreak {i}\"\n").as_bytes());
        }
        let csv_format = WriteFormat::Csv {
            header: false,
            delimiter: b',',
        };
        let b = rt()
            .block_on(decode_stream(schema(), csv_format, stream(&body, 1 << 20)))
            .unwrap();
        assert_eq!(ids(&b), (0..n as i64).collect::<Vec<_>>());
        let names = b[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(2), "line\nbreak 2");
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), n);
        assert!(b[0].column(1).null_count() == 0);
    }

    #[test]
    fn an_error_from_the_body_stream_ends_the_decoding_with_it() {
        let pieces: Vec<Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"{\"id\":1}\n")),
            Err(Error::new(ErrorCode::ResourceExhausted, "too large")),
        ];
        let err = rt()
            .block_on(decode_stream(
                schema(),
                WriteFormat::NdJson,
                futures::stream::iter(pieces),
            ))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ResourceExhausted);
    }

    #[test]
    fn whole_lines_are_cut_after_the_last_newline() {
        let mut pending = vec![
            Bytes::from_static(b"a\nb"),
            Bytes::from_static(b"c\nd"),
            Bytes::from_static(b"ef"),
        ];
        let run = take_whole_lines(&mut pending).unwrap();
        assert_eq!(run.concat(), b"a\nbc\n");
        assert_eq!(pending.concat(), b"def");
        let mut none = vec![Bytes::from_static(b"abc")];
        assert!(take_whole_lines(&mut none).is_none());
        assert_eq!(none.len(), 1);
    }
}
