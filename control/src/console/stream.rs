//! Answers written in pieces as the client reads them (issue 16).
//!
//! `flows list` of a full table used to be built whole (the flows, their
//! JSON tree, then the line) for every client that asked, read or not: a
//! few clients that never read held gigabytes. A handler may instead
//! answer a request with a [`ResponseStream`]: the server asks it for the
//! next piece only once the client has read what it holds, so a client
//! holds at most about [`STREAM_CHUNK`] bytes of answer (plus the
//! stream's own small buffer), however large the answer. The line is
//! the same one the whole answer would have been.

/// The server refills a streamed answer up to this many bytes at a time.
pub const STREAM_CHUNK: usize = 64 * 1024;

/// An answer line produced in pieces (see the module docs).
pub trait ResponseStream: std::fmt::Debug + Send {
    /// Appends the next piece of the line to `out` (never the newline).
    /// `Ok(true)`: more follows; `Ok(false)`: the line is complete;
    /// `Err`: it cannot be completed (the server closes the connection,
    /// so the client sees a cut line, never a wrong one).
    fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, String>;

    /// Bytes the stream holds itself, for the server's accounting.
    fn buffered(&self) -> usize;
}
