//! Newline-delimited JSON framing (the MCP stdio transport) with a maximum line length.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::skim::Skim;

#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// A line over the limit, skipped. `id`: the message's top-level id when it could be read
    /// on the way (to answer under it); `request`: it had a `method`.
    #[error("line longer than {max} bytes")]
    TooLong {
        max: usize,
        id: Option<String>,
        request: bool,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one line at a time, without its `\n` (and `\r`), never buffering more than `max` bytes
/// of a line: an overlong line is skipped to its end and reported, so the stream stays usable.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: BytesMut,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            buf: BytesMut::new(),
        }
    }

    /// `Ok(None)` at EOF. A final line without a newline is still returned.
    pub async fn next_line(&mut self) -> Result<Option<Bytes>, LineError> {
        self.buf.clear();
        // Set once the line is over the limit: what is skipped is skimmed for its id.
        let mut overlong: Option<Skim> = None;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if let Some(skim) = overlong {
                    return Err(self.too_long(&skim));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(self.take()));
            }
            let (chunk, found) =
                match memchr_nl(available).and_then(|i| Some((available.get(..i)?, i))) {
                    Some((line, i)) => (line, Some(i)),
                    None => (available, None),
                };
            match &mut overlong {
                Some(skim) => skim.feed(chunk),
                None if self.buf.len() + chunk.len() > self.max => {
                    let mut skim = Skim::default();
                    skim.feed(&self.buf);
                    skim.feed(chunk);
                    overlong = Some(skim);
                    self.buf.clear();
                }
                None => self.buf.extend_from_slice(chunk),
            }
            let consumed = found.map(|i| i + 1).unwrap_or(available.len());
            self.inner.consume(consumed);
            if found.is_some() {
                if let Some(skim) = overlong {
                    return Err(self.too_long(&skim));
                }
                return Ok(Some(self.take()));
            }
        }
    }

    fn too_long(&self, skim: &Skim) -> LineError {
        LineError::TooLong {
            max: self.max,
            id: skim.id().map(str::to_string),
            request: skim.has_method(),
        }
    }

    fn take(&mut self) -> Bytes {
        if self.buf.last() == Some(&b'\r') {
            self.buf.truncate(self.buf.len() - 1);
        }
        self.buf.split().freeze()
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(4, input), max);
        let mut out = vec![];
        loop {
            match r.next_line().await {
                Ok(Some(l)) => out.push(Ok(l.to_vec())),
                Ok(None) => break,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_last_unterminated() {
        let got = lines(b"ab\r\ncd\n\nef", 100).await;
        assert_eq!(
            got,
            vec![
                Ok(b"ab".to_vec()),
                Ok(b"cd".to_vec()),
                Ok(vec![]),
                Ok(b"ef".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn overlong_line_reports_its_id() {
        let line = format!(
            r#"{{"result":{{"text":"{}"}},"jsonrpc":"2.0","id":77}}"#,
            "x".repeat(100)
        );
        let input = format!("{line}\nok\n");
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(4, input.as_bytes()), 50);
        match r.next_line().await {
            Err(LineError::TooLong { max, id, request }) => {
                assert_eq!((max, id.as_deref(), request), (50, Some("77"), false));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.next_line().await.unwrap().unwrap(), &b"ok"[..]);
    }

    #[tokio::test]
    async fn overlong_line_is_skipped_not_fatal() {
        let got = lines(b"0123456789\nok\n", 5).await;
        assert_eq!(got.len(), 2);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(b"ok".to_vec()));
    }
}
