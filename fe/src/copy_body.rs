//! Edits on COPY data kept as the CopyData messages it arrived in, so that a large COPY
//! reaches the decoders without being joined into one buffer.

use bytes::Bytes;

/// Drops everything up to and including the first newline.
pub(crate) fn drop_first_line(pieces: &mut Vec<Bytes>) {
    let mut drop = 0;
    for p in pieces.iter_mut() {
        if let Some(i) = p.iter().position(|b| *b == b'\n') {
            *p = p.slice(i + 1..);
            break;
        }
        drop += 1;
    }
    pieces.drain(..drop);
}

/// Removes `suffix` from the end of the data if it ends with it (across pieces).
pub(crate) fn trim_suffix(pieces: &mut Vec<Bytes>, suffix: &[u8]) {
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

    #[test]
    fn first_line_and_terminator_across_pieces() {
        let mut p = pieces(&[b"a,", b"b", b"\n1,2\n3,", b"4\n\\", b".", b"\n", b""]);
        drop_first_line(&mut p);
        assert_eq!(joined(&p), b"1,2\n3,4\n\\.\n");
        trim_suffix(&mut p, b"\\.\n");
        assert_eq!(joined(&p), b"1,2\n3,4\n");
        trim_suffix(&mut p, b"\\.\n");
        assert_eq!(joined(&p), b"1,2\n3,4\n", "no terminator: unchanged");
        let mut p = pieces(&[b"x"]);
        trim_suffix(&mut p, b"\\.\n");
        drop_first_line(&mut p);
        assert!(
            joined(&p).is_empty(),
            "a lone line without newline is all header"
        );
    }
}
