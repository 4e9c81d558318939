//! Routing without I/O: path templates, the route table, target rewriting and header rules.
//!
//! Everything here is built once when the configuration loads. Matching and rewriting on the
//! request path work on byte slices, write through a `Sink` and never allocate.

pub mod headers;
pub mod rewrite;
pub mod table;
pub mod template;

use crate::http::forward::HeadWriter;

/// A destination for bytes of an outgoing head, such as the head buffer of the upstream request.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// A growing vector: convenient in tests and at load time, but it allocates when it grows.
impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The head writer of `http::forward`, which never grows its buffer past the head limit.
impl Sink for HeadWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        HeadWriter::put(self, bytes);
    }
}

/// Returns whether `byte` is a tchar, a byte allowed in a token such as a header name or a
/// method (RFC 9110 section 5.6.2).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Returns whether `bytes` is a non-empty token (RFC 9110 section 5.6.2).
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&byte| is_token_byte(byte))
}
