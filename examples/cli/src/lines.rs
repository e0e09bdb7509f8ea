//! Stdin as lines of bounded length, for `tether connect`.
//!
//! A line longer than the largest message the client may send can never become one, so it is
//! not kept: its bytes are counted and dropped as they arrive and the line is reported as
//! [`Line::TooLong`]. Without the cap, a newline-less pipe (a binary file, `yes | tr -d '\n'`)
//! grew the read buffer for as long as input came, only for `send` to refuse the result.

use std::io;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's bytes with its ending (`\n`, or none for a last line without one).
    Complete(Vec<u8>),
    /// The line was longer than the cap: it was read to its end and discarded.
    TooLong {
        /// Its length in bytes, line ending included.
        bytes: usize,
    },
}

/// Reads lines of at most `cap` bytes (line ending included) from `inner`.
///
/// [`LineReader::next_line`] is cancel safe, as a `tokio::select!` branch needs: what a
/// cancelled call had read stays in the reader, and the next call goes on from there.
pub(crate) struct LineReader<R> {
    inner: R,
    cap: usize,
    /// The line read so far, while it is within the cap.
    line: Vec<u8>,
    /// Bytes of an over-long line seen so far; `line` is empty meanwhile.
    overlong: Option<usize>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, cap: usize) -> Self {
        LineReader {
            inner,
            cap,
            line: Vec::new(),
            overlong: None,
        }
    }

    /// The next line, or `None` at the end of input.
    pub(crate) async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            // The only await: everything after it up to `consume` runs without yielding, so
            // a cancellation can never lose bytes that were taken out of `inner`.
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(self.finish_line());
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let used = newline.map_or(available.len(), |i| i + 1);
            match &mut self.overlong {
                Some(seen) => *seen += used,
                None if self.line.len() + used > self.cap => {
                    self.overlong = Some(self.line.len() + used);
                    // Give the memory back now: the line may go on for a long time.
                    self.line = Vec::new();
                }
                None => self.line.extend_from_slice(&available[..used]),
            }
            self.inner.consume(used);
            if newline.is_some() {
                return Ok(self.finish_line());
            }
        }
    }

    /// The line read so far, as the end of a line or of the input makes it.
    fn finish_line(&mut self) -> Option<Line> {
        if let Some(bytes) = self.overlong.take() {
            return Some(Line::TooLong { bytes });
        }
        if self.line.is_empty() {
            return None;
        }
        Some(Line::Complete(std::mem::take(&mut self.line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input`, read through a buffer of `chunk` bytes so that lines arrive in
    /// pieces.
    async fn lines(input: &[u8], chunk: usize, cap: usize) -> Vec<Line> {
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(chunk, input), cap);
        let mut lines = Vec::new();
        for _ in 0..=input.len() {
            match reader.next_line().await.unwrap() {
                Some(line) => lines.push(line),
                None => return lines,
            }
        }
        panic!("more lines than bytes in {input:?}");
    }

    fn complete(bytes: &[u8]) -> Line {
        Line::Complete(bytes.to_vec())
    }

    #[tokio::test]
    async fn lines_keep_their_ending_and_the_last_may_have_none() {
        for chunk in [1, 3, 64] {
            assert_eq!(
                lines(b"a\r\nbc\n\nlast", chunk, 100).await,
                [
                    complete(b"a\r\n"),
                    complete(b"bc\n"),
                    complete(b"\n"),
                    complete(b"last")
                ],
                "chunk {chunk}"
            );
        }
        assert_eq!(lines(b"", 8, 100).await, []);
    }

    #[tokio::test]
    async fn a_line_over_the_cap_is_counted_and_dropped_and_reading_goes_on() {
        for chunk in [1, 4, 64] {
            assert_eq!(
                lines(b"four\nfive!\n12345678901\nok\n", chunk, 6).await,
                [
                    complete(b"four\n"),
                    // Exactly the cap, line ending included.
                    complete(b"five!\n"),
                    Line::TooLong { bytes: 12 },
                    complete(b"ok\n"),
                ],
                "chunk {chunk}"
            );
        }
        // Over the cap without a line ending: reported at the end of input.
        assert_eq!(
            lines(b"ok\nendless", 3, 4).await,
            [complete(b"ok\n"), Line::TooLong { bytes: 7 }]
        );
    }

    #[tokio::test]
    async fn an_over_long_line_is_not_kept_in_memory() {
        let input = vec![b'x'; 1 << 16];
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(512, &input[..]), 100);
        assert_eq!(
            reader.next_line().await.unwrap(),
            Some(Line::TooLong { bytes: 1 << 16 })
        );
        assert_eq!(reader.line.capacity(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_read_loses_nothing() {
        // A pipe that delivers "ab", then "c\n" only later: the first call is cancelled
        // while it waits for the rest of the line.
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = LineReader::new(tokio::io::BufReader::new(rx), 100);
        use tokio::io::AsyncWriteExt;
        tx.write_all(b"ab").await.unwrap();
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), reader.next_line()).await;
        assert!(cancelled.is_err(), "no line ending yet: {cancelled:?}");
        tx.write_all(b"c\n").await.unwrap();
        assert_eq!(reader.next_line().await.unwrap(), Some(complete(b"abc\n")));
    }
}
