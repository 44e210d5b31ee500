//! Edits on COPY data kept as the CopyData messages it arrives in, so that a large COPY
//! reaches the decoders while it arrives, without being joined into one buffer.

use std::collections::VecDeque;

use bytes::Bytes;
use eddy_proto::ByteStream;
use futures::StreamExt;

/// psql's end-of-data marker, which clients may send as data; it is not data.
const TERMINATOR: &[u8] = b"\\.\n";

/// `data` as the CSV decoder should see it: `header` first when given, the client's own
/// first line dropped when `drop_first_line`, and a trailing [`TERMINATOR`] removed. Only
/// the last few bytes are held back (to see whether they are the terminator).
pub(crate) fn edited(data: ByteStream, header: Option<Bytes>, drop_first_line: bool) -> ByteStream {
    let state = Edit {
        data,
        dropping: drop_first_line,
        held: VecDeque::new(),
        held_bytes: 0,
        ready: header.into_iter().collect(),
        ended: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(p) = st.ready.pop_front() {
                return Some((Ok(p), st));
            }
            if st.ended {
                return None;
            }
            match st.data.next().await {
                Some(Ok(p)) => st.take(p),
                Some(Err(e)) => {
                    st.ended = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.ended = true;
                    let mut tail: Vec<Bytes> = st.held.drain(..).collect();
                    trim_suffix(&mut tail, TERMINATOR);
                    st.ready.extend(tail);
                }
            }
        }
    }))
}

struct Edit {
    data: ByteStream,
    /// Still inside the first line, which is being dropped.
    dropping: bool,
    /// The last pieces, at least `TERMINATOR.len()` bytes of them when there are.
    held: VecDeque<Bytes>,
    held_bytes: usize,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl Edit {
    fn take(&mut self, mut p: Bytes) {
        if self.dropping {
            match p.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    p = p.slice(i + 1..);
                    self.dropping = false;
                }
                None => return,
            }
        }
        if p.is_empty() {
            return;
        }
        self.held_bytes += p.len();
        self.held.push_back(p);
        while self.held.len() > 1 && self.held_bytes - self.held[0].len() >= TERMINATOR.len() {
            let front = self.held.pop_front().expect("more than one held");
            self.held_bytes -= front.len();
            self.ready.push_back(front);
        }
    }
}

/// Removes `suffix` from the end of the data if it ends with it (across pieces).
fn trim_suffix(pieces: &mut Vec<Bytes>, suffix: &[u8]) {
    while pieces.last().is_some_and(|p| p.is_empty()) {
        pieces.pop();
    }
    let mut tail: Vec<u8> = Vec::with_capacity(suffix.len());
    for p in pieces.iter().rev() {
        let need = suffix.len() - tail.len();
        let take = need.min(p.len());
        tail.splice(0..0, p[p.len() - take..].iter().copied());
        if tail.len() == suffix.len() {
            break;
        }
    }
    if tail != suffix {
        return;
    }
    let mut left = suffix.len();
    while left > 0 {
        let Some(last) = pieces.last_mut() else {
            return;
        };
        if last.len() <= left {
            left -= last.len();
            pieces.pop();
        } else {
            last.truncate(last.len() - left);
            left = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    fn joined(p: &[Bytes]) -> Vec<u8> {
        p.iter().flat_map(|b| b.to_vec()).collect()
    }

    /// The edited stream of `parts`, joined.
    fn edit(parts: &[&'static [u8]], header: Option<&'static [u8]>, drop: bool) -> Vec<u8> {
        let data: ByteStream = Box::pin(futures::stream::iter(
            pieces(parts).into_iter().map(Ok).collect::<Vec<_>>(),
        ));
        let out: Vec<Bytes> = futures::executor::block_on(
            edited(data, header.map(Bytes::from_static), drop)
                .map(|p| p.unwrap())
                .collect(),
        );
        joined(&out)
    }

    #[test]
    fn first_line_and_terminator_across_pieces() {
        let parts: &[&[u8]] = &[b"a,", b"b", b"\n1,2\n3,", b"4\n\\", b".", b"\n", b""];
        assert_eq!(edit(parts, None, true), b"1,2\n3,4\n");
        assert_eq!(edit(parts, Some(b"x,y\n"), true), b"x,y\n1,2\n3,4\n");
        assert_eq!(edit(parts, None, false), b"a,b\n1,2\n3,4\n");
        assert_eq!(
            edit(&[b"1,2\n", b"3,4\n"], None, false),
            b"1,2\n3,4\n",
            "no terminator: unchanged"
        );
        assert_eq!(edit(&[b"1,2\n\\.\n"], None, false), b"1,2\n");
        assert!(
            edit(&[b"x"], None, true).is_empty(),
            "a lone line without newline is all header"
        );
    }

    #[test]
    fn an_error_in_the_data_is_passed_on() {
        let data: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"1,2\n")),
            Err(eddy_proto::Error::new(
                eddy_proto::ErrorCode::Cancelled,
                "gone",
            )),
        ]));
        let out: Vec<_> = futures::executor::block_on(edited(data, None, false).collect());
        assert!(out.iter().any(|r| r.is_err()));
    }
}
