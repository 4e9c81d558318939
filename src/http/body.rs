//! Message body framing without I/O: the Content-Length countdown, and a streaming
//! decoder and encoder for the chunked transfer coding (RFC 9112 sections 6 and 7.1).
//!
//! ringway relays bodies through fixed-size buffers and never keeps a whole body in memory. It
//! always writes its own framing. A chunked body is decoded here and re-encoded by the
//! caller with [`encode_chunk_header`], [`CHUNK_TRAILER_CRLF`] and [`LAST_CHUNK`], so
//! chunk extensions and trailer fields never reach the other side. A malformed chunk
//! line is rejected before any data that follows it is released.

use std::fmt;

/// Default for [`ChunkedLimits::max_extension_bytes`], in bytes per chunk line.
///
/// ringway discards chunk extensions, so the limit only has to admit the short
/// `name=value` pairs that some senders attach, such as checksums or signatures. The
/// bound matters because extension bytes do not count toward a body-size limit, so
/// without it one chunk line could run on forever.
pub const DEFAULT_MAX_EXTENSION_BYTES: usize = 1024;

/// Default for [`ChunkedLimits::max_trailer_bytes`], in bytes for the whole trailer
/// section.
///
/// ringway discards trailer fields too. 16 KiB admits several fields with long values,
/// such as digests or status messages, and bounds the bytes after the last chunk, which
/// a body-size limit does not see either.
pub const DEFAULT_MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Maximum number of hex digits in one chunk-size, leading zeros included.
///
/// Sixteen significant digits already fill a `u64`, and leading zeros carry no value.
/// Without this bound a peer could send an endless run of zeros that no body-size limit
/// counts. 64 is four times the width of a zero-padded 64-bit size.
pub const MAX_CHUNK_SIZE_DIGITS: usize = 64;

/// Maximum length in bytes of a header written by [`encode_chunk_header`], which is 16
/// hex digits for a `u64` plus CRLF.
pub const MAX_CHUNK_HEADER_BYTES: usize = 18;

/// CRLF that ends the data of every chunk (RFC 9112 section 7.1). It belongs to the
/// chunk, not to the trailer section.
pub const CHUNK_TRAILER_CRLF: &[u8] = b"\r\n";

/// Last chunk followed by an empty trailer section, which ends a chunked body
/// (RFC 9112 section 7.1).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Framing that marks the end of a message body (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body follows the header section, for example in a response to HEAD, a 1xx,
    /// 204 or 304 response, or a request without Content-Length and Transfer-Encoding.
    None,
    /// Exactly this many bytes follow the header section (Content-Length).
    Length(u64),
    /// The chunked transfer coding. The body ends after the last chunk and the trailer
    /// section.
    Chunked,
    /// The body ends when the sender closes the connection. Only a response can be
    /// framed this way.
    CloseDelimited,
}

/// Reason a chunked body was rejected.
///
/// Every variant means the peer broke RFC 9112 section 7.1 or exceeded a configured
/// limit. The connection cannot be reused, because its framing is unknown from that
/// byte on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// The chunk-size is not 1*HEXDIG directly followed by CRLF, ";" or whitespace
    /// before ";". This covers an empty size, a sign, a "0x" prefix, whitespace before
    /// the size, and whitespace after it that no extension follows.
    InvalidChunkSize,
    /// The chunk-size has more than 16 significant hex digits, so it does not fit in a
    /// `u64`, or more than [`MAX_CHUNK_SIZE_DIGITS`] digits with its leading zeros.
    ChunkSizeOverflow,
    /// A line does not end with CRLF. This covers a bare LF, a CR without LF, and chunk
    /// data longer or shorter than its declared size.
    MissingCrlf,
    /// The chunk extensions on one chunk line exceed
    /// [`ChunkedLimits::max_extension_bytes`].
    ExtensionTooLong,
    /// A chunk extension does not match `*( BWS ";" BWS token [ BWS "=" BWS ( token /
    /// quoted-string ) ] )`, or contains a control character outside a quoted HTAB.
    InvalidExtension,
    /// The trailer section exceeds [`ChunkedLimits::max_trailer_bytes`].
    TrailersTooLong,
    /// A trailer field line is not `token ":" OWS value OWS`, starts with whitespace
    /// (obsolete line folding), or contains a control character other than HTAB.
    InvalidTrailer,
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = match self {
            Self::InvalidChunkSize => {
                "invalid chunk size: expected hex digits with no sign, prefix or surrounding whitespace"
            }
            Self::ChunkSizeOverflow => {
                return write!(
                    formatter,
                    "chunk size too long: more than 16 significant hex digits or more than \
                     {MAX_CHUNK_SIZE_DIGITS} digits in total"
                );
            }
            Self::MissingCrlf => {
                "missing CRLF in chunked body: bare LF, bare CR, or chunk data that does not match its declared size"
            }
            Self::ExtensionTooLong => {
                "chunk extensions on one chunk line exceed limits.max_chunk_extension_bytes"
            }
            Self::InvalidExtension => {
                "invalid chunk extension: expected ;name or ;name=value with a token or quoted-string value"
            }
            Self::TrailersTooLong => "chunked trailer section exceeds limits.max_trailer_bytes",
            Self::InvalidTrailer => {
                "invalid trailer field: expected name: value with a token name, no folding and no control characters"
            }
        };
        formatter.write_str(message)
    }
}

impl std::error::Error for ChunkedError {}

/// Size limits on the parts of a chunked body that [`ChunkedDecoder`] discards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Maximum extension bytes on one chunk line, counted from the first byte after the
    /// chunk-size up to the CRLF.
    pub max_extension_bytes: usize,
    /// Maximum bytes of all trailer field lines together, each with its CRLF. The empty
    /// line that ends the trailer section is not counted.
    pub max_trailer_bytes: usize,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        Self {
            max_extension_bytes: DEFAULT_MAX_EXTENSION_BYTES,
            max_trailer_bytes: DEFAULT_MAX_TRAILER_BYTES,
        }
    }
}

/// Result of one [`ChunkedDecoder::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeProgress {
    /// Bytes of the input that belong to the chunked body and were processed.
    pub consumed: usize,
    /// Chunk data bytes copied to the start of the output buffer.
    pub written: usize,
    /// Whether the last chunk and the trailer section have been read.
    pub done: bool,
}

/// Position of [`ChunkedDecoder`] in the RFC 9112 section 7.1 grammar. The variants
/// list, in order, the places where the next input byte may land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first digit of a chunk-size.
    SizeStart,
    /// Inside the chunk-size digits.
    Size,
    /// In whitespace after the chunk-size, which only ";" may end.
    SizeWhitespace,
    /// After ";", in whitespace before an extension name.
    ExtensionNameStart,
    /// Inside an extension name.
    ExtensionName,
    /// In whitespace after an extension name, which "=" or ";" must end.
    ExtensionNameWhitespace,
    /// After "=", in whitespace before an extension value.
    ExtensionValueStart,
    /// Inside a token extension value.
    ExtensionToken,
    /// Inside a quoted-string extension value.
    ExtensionQuoted,
    /// After a backslash inside a quoted-string.
    ExtensionQuotedPair,
    /// Right after the closing quote of a quoted-string.
    ExtensionQuotedEnd,
    /// In whitespace after an extension value, which only ";" may end.
    ExtensionValueWhitespace,
    /// After the CR that ends a chunk-size line.
    SizeLineLf,
    /// Inside chunk data, with `chunk_size` bytes still to come.
    Data,
    /// After chunk data, where its CR must be.
    DataCr,
    /// After the CR that follows chunk data.
    DataLf,
    /// At the start of a trailer field line or of the empty line that ends the body.
    TrailerLineStart,
    /// Inside a trailer field name.
    TrailerName,
    /// After the colon of a trailer field line.
    TrailerValue,
    /// After the CR that ends a trailer field line.
    TrailerLineLf,
    /// After the CR of the empty line that ends the body.
    EndLf,
    /// The body is complete.
    Done,
    /// The body was rejected, and every later call returns this error again.
    Failed(ChunkedError),
}

impl State {
    /// Returns whether LF is the only valid next byte. In every other state a LF is
    /// bare. RFC 9112 section 2.2 lets a recipient accept a bare LF as a line end, but
    /// a proxy must not, because a stricter server behind it would frame the bytes
    /// differently.
    fn expects_lf(self) -> bool {
        matches!(
            self,
            Self::SizeLineLf | Self::DataLf | Self::TrailerLineLf | Self::EndLf
        )
    }

    /// Returns whether a byte that leads into this state is part of a chunk extension.
    fn is_extension(self) -> bool {
        matches!(
            self,
            Self::SizeWhitespace
                | Self::ExtensionNameStart
                | Self::ExtensionName
                | Self::ExtensionNameWhitespace
                | Self::ExtensionValueStart
                | Self::ExtensionToken
                | Self::ExtensionQuoted
                | Self::ExtensionQuotedPair
                | Self::ExtensionQuotedEnd
                | Self::ExtensionValueWhitespace
        )
    }

    /// Returns whether this state is inside a trailer field line, CRLF included.
    fn is_trailer_field(self) -> bool {
        matches!(
            self,
            Self::TrailerName | Self::TrailerValue | Self::TrailerLineLf
        )
    }
}

/// Streaming decoder for the chunked transfer coding (RFC 9112 section 7.1).
///
/// The decoder copies chunk data out and validates, then discards, chunk extensions and
/// trailer fields. It enforces the grammar strictly, because a proxy that accepts what
/// the server behind it rejects, or reads it differently, opens a request-smuggling
/// hole. It keeps partial lines in its state instead of buffering them, so it never
/// allocates, and it returns an error instead of panicking on any input.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    limits: ChunkedLimits,
    /// Value parsed so far on a chunk-size line, then the data bytes still to come.
    chunk_size: u64,
    /// Digits in the current chunk-size, leading zeros included.
    size_digits: usize,
    /// Extension bytes on the current chunk line.
    extension_bytes: usize,
    /// Bytes of trailer field lines so far.
    trailer_bytes: usize,
    /// Chunk data bytes decoded so far, saturating at `u64::MAX`.
    data_bytes_total: u64,
}

impl ChunkedDecoder {
    /// Creates a decoder positioned before the first chunk-size line.
    pub fn new(limits: ChunkedLimits) -> Self {
        Self {
            state: State::SizeStart,
            limits,
            chunk_size: 0,
            size_digits: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            data_bytes_total: 0,
        }
    }

    /// Decodes chunked bytes from `input` and copies chunk data to the start of `out`.
    ///
    /// The call returns when `input` is used up, when chunk data comes next and `out` is
    /// full, or when the body is complete. The last case sets `done`, and the bytes after
    /// the final CRLF are not consumed, because they belong to the next message. Partial
    /// chunk-size lines, extensions and trailers are kept in the decoder's state, so
    /// callers may split the input anywhere, down to one byte per call. An empty `out`
    /// still lets the decoder consume framing bytes.
    ///
    /// After an error this call and every later one return the same error. Data written
    /// by earlier calls passed every check up to that point, but its chunk may not have
    /// ended correctly. The caller must therefore abort the re-encoded body instead of
    /// ending it with [`LAST_CHUNK`].
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<DecodeProgress, ChunkedError> {
        let mut consumed = 0;
        let mut written = 0;

        loop {
            match self.state {
                State::Done => break,
                State::Failed(error) => return Err(error),
                State::Data => {
                    let copied = self.copy_data(&input[consumed..], &mut out[written..]);
                    consumed += copied;
                    written += copied;
                    if self.chunk_size > 0 {
                        // Either the input or the output buffer is used up.
                        break;
                    }
                    self.state = State::DataCr;
                }
                _ => {
                    let Some(&byte) = input.get(consumed) else {
                        break;
                    };
                    if let Err(error) = self.step(byte) {
                        self.state = State::Failed(error);
                        return Err(error);
                    }
                    consumed += 1;
                }
            }
        }

        Ok(DecodeProgress {
            consumed,
            written,
            done: self.state == State::Done,
        })
    }

    /// Returns whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Returns whether the decoder sits exactly between chunks, which is before the
    /// first chunk-size line or right after a chunk's closing CRLF. It is false once the
    /// last chunk has started. A connection that closes in this state cut the body
    /// between chunks, not inside one.
    pub fn is_between_chunks(&self) -> bool {
        self.state == State::SizeStart
    }

    /// Returns the number of chunk data bytes decoded so far, for body-size limits.
    pub fn data_bytes_total(&self) -> u64 {
        self.data_bytes_total
    }

    /// Decodes the chunked bytes in `buf` in place: chunk data is moved to the front of `buf`,
    /// so `buf[..written]` holds the data of this call and `consumed` counts the input bytes used.
    ///
    /// Data never moves forward (each data byte lands at or before where it was read), so the
    /// framing in between is simply overwritten. Apart from that, it behaves like `decode` with
    /// an output as large as the input: it stops only when `buf` is used up or the body ends.
    pub fn decode_in_place(&mut self, buf: &mut [u8]) -> Result<DecodeProgress, ChunkedError> {
        let mut consumed = 0;
        let mut written = 0;
        loop {
            match self.state {
                State::Done => break,
                State::Failed(error) => return Err(error),
                State::Data => {
                    let len = self.take_data(buf.len() - consumed, usize::MAX);
                    buf.copy_within(consumed..consumed + len, written);
                    consumed += len;
                    written += len;
                    if self.chunk_size > 0 {
                        break;
                    }
                    self.state = State::DataCr;
                }
                _ => {
                    let Some(&byte) = buf.get(consumed) else {
                        break;
                    };
                    if let Err(error) = self.step(byte) {
                        self.state = State::Failed(error);
                        return Err(error);
                    }
                    consumed += 1;
                }
            }
        }
        Ok(DecodeProgress {
            consumed,
            written,
            done: self.state == State::Done,
        })
    }

    /// Copies as much of the current chunk's data as `input` and `out` allow, in one
    /// run, and returns the number of bytes copied.
    fn copy_data(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        let len = self.take_data(input.len(), out.len());
        out[..len].copy_from_slice(&input[..len]);
        len
    }

    /// Counts up to `available` bytes (and at most `room`) as data of the current chunk and
    /// returns how many.
    fn take_data(&mut self, available: usize, room: usize) -> usize {
        let chunk_remaining = usize::try_from(self.chunk_size).unwrap_or(usize::MAX);
        let len = chunk_remaining.min(available).min(room);

        // `len` fits in u64 because usize is at most 64 bits wide on every Rust target,
        // and the subtraction cannot underflow because `len <= chunk_size`.
        let len_u64 = len as u64;
        self.chunk_size -= len_u64;
        self.data_bytes_total = self.data_bytes_total.saturating_add(len_u64);
        len
    }

    /// Advances the state machine by one byte outside chunk data.
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        if byte == b'\n' && !self.state.expects_lf() {
            return Err(ChunkedError::MissingCrlf);
        }

        let next = match self.state {
            State::SizeStart => self.on_size_start(byte)?,
            State::Size => self.on_size(byte)?,
            State::SizeWhitespace => on_size_whitespace(byte)?,
            State::ExtensionNameStart => on_extension_name_start(byte)?,
            State::ExtensionName => on_extension_name(byte)?,
            State::ExtensionNameWhitespace => on_extension_name_whitespace(byte)?,
            State::ExtensionValueStart => on_extension_value_start(byte)?,
            State::ExtensionToken => on_extension_token(byte)?,
            State::ExtensionQuoted => on_extension_quoted(byte)?,
            State::ExtensionQuotedPair => on_extension_quoted_pair(byte)?,
            State::ExtensionQuotedEnd => on_extension_quoted_end(byte)?,
            State::ExtensionValueWhitespace => on_extension_value_whitespace(byte)?,
            State::SizeLineLf => self.on_size_line_lf(byte)?,
            State::DataCr => on_data_cr(byte)?,
            State::DataLf => self.on_data_lf(byte)?,
            State::TrailerLineStart => on_trailer_line_start(byte)?,
            State::TrailerName => on_trailer_name(byte)?,
            State::TrailerValue => on_trailer_value(byte)?,
            State::TrailerLineLf => on_trailer_line_lf(byte)?,
            State::EndLf => on_end_lf(byte)?,
            // `decode` handles these states without calling `step`.
            State::Data | State::Done => self.state,
            State::Failed(error) => return Err(error),
        };

        // A byte counts toward the extension limit when it leads into an extension
        // state, which leaves out the CR that ends the line. It counts toward the trailer
        // limit when it is inside a field line, which leaves out the final empty line.
        if next.is_extension() {
            self.extension_bytes = self.extension_bytes.saturating_add(1);
            if self.extension_bytes > self.limits.max_extension_bytes {
                return Err(ChunkedError::ExtensionTooLong);
            }
        }
        if next.is_trailer_field() || self.state == State::TrailerLineLf {
            self.trailer_bytes = self.trailer_bytes.saturating_add(1);
            if self.trailer_bytes > self.limits.max_trailer_bytes {
                return Err(ChunkedError::TrailersTooLong);
            }
        }

        self.state = next;
        Ok(())
    }

    /// Adds one hex digit to the chunk-size with checked arithmetic.
    fn push_size_digit(&mut self, digit: u8) -> Result<(), ChunkedError> {
        self.size_digits += 1;
        if self.size_digits > MAX_CHUNK_SIZE_DIGITS {
            return Err(ChunkedError::ChunkSizeOverflow);
        }
        self.chunk_size = self
            .chunk_size
            .checked_mul(16)
            .and_then(|size| size.checked_add(u64::from(digit)))
            .ok_or(ChunkedError::ChunkSizeOverflow)?;
        Ok(())
    }

    // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF, with chunk-size = 1*HEXDIG
    // (RFC 9112 section 7.1). A sign, a "0x" prefix or leading whitespace is not HEXDIG.
    fn on_size_start(&mut self, byte: u8) -> Result<State, ChunkedError> {
        let digit = hex_value(byte).ok_or(ChunkedError::InvalidChunkSize)?;
        self.push_size_digit(digit)?;
        Ok(State::Size)
    }

    fn on_size(&mut self, byte: u8) -> Result<State, ChunkedError> {
        if let Some(digit) = hex_value(byte) {
            self.push_size_digit(digit)?;
            return Ok(State::Size);
        }
        match byte {
            b'\r' => Ok(State::SizeLineLf),
            b';' => Ok(State::ExtensionNameStart),
            // chunk-ext starts with BWS, so whitespace is valid only if ";" follows.
            b' ' | b'\t' => Ok(State::SizeWhitespace),
            _ => Err(ChunkedError::InvalidChunkSize),
        }
    }

    // A chunk-size of zero is the last-chunk, 1*("0") [ chunk-ext ] CRLF, which the
    // trailer section follows.
    fn on_size_line_lf(&mut self, byte: u8) -> Result<State, ChunkedError> {
        expect_byte(byte, b'\n')?;
        if self.chunk_size == 0 {
            Ok(State::TrailerLineStart)
        } else {
            Ok(State::Data)
        }
    }

    fn on_data_lf(&mut self, byte: u8) -> Result<State, ChunkedError> {
        expect_byte(byte, b'\n')?;
        self.size_digits = 0;
        self.extension_bytes = 0;
        Ok(State::SizeStart)
    }
}

// chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), with
// chunk-ext-name = token and chunk-ext-val = token / quoted-string (RFC 9112 section
// 7.1.1). BWS is *( SP / HTAB ) (RFC 9110 section 5.6.3). The grammar allows no
// whitespace between the last name or value and the CRLF.

fn on_size_whitespace(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b' ' | b'\t' => Ok(State::SizeWhitespace),
        b';' => Ok(State::ExtensionNameStart),
        _ => Err(ChunkedError::InvalidChunkSize),
    }
}

fn on_extension_name_start(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b' ' | b'\t' => Ok(State::ExtensionNameStart),
        _ if is_token_byte(byte) => Ok(State::ExtensionName),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

fn on_extension_name(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        _ if is_token_byte(byte) => Ok(State::ExtensionName),
        b' ' | b'\t' => Ok(State::ExtensionNameWhitespace),
        b'=' => Ok(State::ExtensionValueStart),
        b';' => Ok(State::ExtensionNameStart),
        b'\r' => Ok(State::SizeLineLf),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

fn on_extension_name_whitespace(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b' ' | b'\t' => Ok(State::ExtensionNameWhitespace),
        b'=' => Ok(State::ExtensionValueStart),
        b';' => Ok(State::ExtensionNameStart),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

fn on_extension_value_start(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b' ' | b'\t' => Ok(State::ExtensionValueStart),
        b'"' => Ok(State::ExtensionQuoted),
        _ if is_token_byte(byte) => Ok(State::ExtensionToken),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

fn on_extension_token(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        _ if is_token_byte(byte) => Ok(State::ExtensionToken),
        b' ' | b'\t' => Ok(State::ExtensionValueWhitespace),
        b';' => Ok(State::ExtensionNameStart),
        b'\r' => Ok(State::SizeLineLf),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE, with qdtext = HTAB / SP /
// %x21 / %x23-5B / %x5D-7E / obs-text (RFC 9110 section 5.6.4).
fn on_extension_quoted(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b'"' => Ok(State::ExtensionQuotedEnd),
        b'\\' => Ok(State::ExtensionQuotedPair),
        b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => Ok(State::ExtensionQuoted),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

// quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) (RFC 9110 section 5.6.4).
fn on_extension_quoted_pair(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => Ok(State::ExtensionQuoted),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

fn on_extension_quoted_end(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b' ' | b'\t' => Ok(State::ExtensionValueWhitespace),
        b';' => Ok(State::ExtensionNameStart),
        b'\r' => Ok(State::SizeLineLf),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

fn on_extension_value_whitespace(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b' ' | b'\t' => Ok(State::ExtensionValueWhitespace),
        b';' => Ok(State::ExtensionNameStart),
        _ => Err(ChunkedError::InvalidExtension),
    }
}

// The CRLF after chunk-data must follow exactly chunk-size bytes (RFC 9112 section
// 7.1), so any other byte here means the data was longer or shorter than declared.
fn on_data_cr(byte: u8) -> Result<State, ChunkedError> {
    expect_byte(byte, b'\r')?;
    Ok(State::DataLf)
}

// trailer-section = *( field-line CRLF ) and field-line = field-name ":" OWS
// field-value OWS (RFC 9112 sections 7.1.2 and 5). A line that starts with whitespace
// is obsolete line folding, which RFC 9112 section 5.2 lets a recipient reject.
fn on_trailer_line_start(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b'\r' => Ok(State::EndLf),
        _ if is_token_byte(byte) => Ok(State::TrailerName),
        _ => Err(ChunkedError::InvalidTrailer),
    }
}

// RFC 9112 section 5.1 forbids whitespace between the field name and the colon.
fn on_trailer_name(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        _ if is_token_byte(byte) => Ok(State::TrailerName),
        b':' => Ok(State::TrailerValue),
        _ => Err(ChunkedError::InvalidTrailer),
    }
}

// field-value bytes are VCHAR, obs-text, SP and HTAB (RFC 9110 section 5.5). That
// section requires a recipient to reject or replace CR, LF and NUL. This decoder rejects
// them, and also the other control characters and DEL, which the grammar does not allow.
fn on_trailer_value(byte: u8) -> Result<State, ChunkedError> {
    match byte {
        b'\r' => Ok(State::TrailerLineLf),
        b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => Ok(State::TrailerValue),
        _ => Err(ChunkedError::InvalidTrailer),
    }
}

fn on_trailer_line_lf(byte: u8) -> Result<State, ChunkedError> {
    expect_byte(byte, b'\n')?;
    Ok(State::TrailerLineStart)
}

fn on_end_lf(byte: u8) -> Result<State, ChunkedError> {
    expect_byte(byte, b'\n')?;
    Ok(State::Done)
}

fn expect_byte(byte: u8, expected: u8) -> Result<(), ChunkedError> {
    if byte == expected {
        Ok(())
    } else {
        Err(ChunkedError::MissingCrlf)
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Returns whether `byte` is a tchar (RFC 9110 section 5.6.2).
fn is_token_byte(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'#'
            | b'$'
            | b'%'
            | b'&'
            | b'\''
            | b'*'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~'
    ) || byte.is_ascii_alphanumeric()
}

/// Writes the chunk header for `len` data bytes, the size in lowercase hex without
/// leading zeros followed by CRLF, and returns its length in bytes.
///
/// `len` must not be zero, because "0\r\n" starts the last chunk, and [`LAST_CHUNK`]
/// ends a body instead. Debug builds panic on zero, and release builds write "0\r\n".
pub fn encode_chunk_header(len: u64, out: &mut [u8; MAX_CHUNK_HEADER_BYTES]) -> usize {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    debug_assert!(
        len > 0,
        "a chunk header for 0 bytes would start the last chunk"
    );

    let significant_bits = u64::BITS - len.leading_zeros();
    // At most 16 for a u64, so the cast and the indexing below stay in bounds.
    let digit_count = significant_bits.div_ceil(4).max(1) as usize;

    for (index, slot) in out[..digit_count].iter_mut().enumerate() {
        let shift = 4 * (digit_count - 1 - index);
        let nibble = (len >> shift) & 0xf;
        *slot = HEX_DIGITS[nibble as usize];
    }
    out[digit_count] = b'\r';
    out[digit_count + 1] = b'\n';
    digit_count + 2
}

/// Countdown of the bytes left in a Content-Length body (RFC 9112 section 6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthDecoder {
    remaining: u64,
}

impl LengthDecoder {
    /// Creates a countdown for a body of `len` bytes.
    pub fn new(len: u64) -> Self {
        Self { remaining: len }
    }

    /// Counts off and returns how many of the next `available` bytes belong to this
    /// body. Bytes past that count belong to the next message.
    pub fn take(&mut self, available: usize) -> usize {
        let body_bytes = match usize::try_from(self.remaining) {
            Ok(remaining) => remaining.min(available),
            Err(_) => available,
        };
        // `body_bytes <= remaining`, and usize is at most 64 bits wide on every Rust
        // target.
        self.remaining -= body_bytes as u64;
        body_bytes
    }

    /// Returns the number of body bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Returns whether the whole body has been counted off.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of a pipelined request appended after every valid body. The decoder must
    /// leave them unconsumed.
    const NEXT_MESSAGE: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

    /// Output buffer sizes that every valid case is decoded with.
    const OUT_LENS: [usize; 4] = [1, 2, 7, 64 * 1024];

    /// Limits small enough that tests reach them with short inputs.
    const SMALL_LIMITS: ChunkedLimits = ChunkedLimits {
        max_extension_bytes: 8,
        max_trailer_bytes: 12,
    };

    const DEFAULT_LIMITS: ChunkedLimits = ChunkedLimits {
        max_extension_bytes: DEFAULT_MAX_EXTENSION_BYTES,
        max_trailer_bytes: DEFAULT_MAX_TRAILER_BYTES,
    };

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Decoded {
        data: Vec<u8>,
        consumed: usize,
        done: bool,
    }

    /// Feeds `input` to a new decoder in pieces that end at `piece_ends`, draining each
    /// piece with an output buffer of `out_len` bytes. Stops once the decoder is done.
    fn decode_pieces(
        input: &[u8],
        piece_ends: &[usize],
        out_len: usize,
        limits: ChunkedLimits,
    ) -> Result<Decoded, ChunkedError> {
        let mut decoder = ChunkedDecoder::new(limits);
        let mut data = Vec::new();
        let mut consumed = 0;
        let mut out = vec![0xaa; out_len];

        for &end in piece_ends {
            while consumed < end {
                let progress = decoder.decode(&input[consumed..end], &mut out)?;
                assert!(progress.written <= out_len, "written beyond out");
                data.extend_from_slice(&out[..progress.written]);
                consumed += progress.consumed;
                assert_eq!(
                    progress.done,
                    decoder.is_done(),
                    "done flag disagrees with is_done"
                );
                if progress.done {
                    assert_eq!(decoder.data_bytes_total(), data.len() as u64);
                    return Ok(Decoded {
                        data,
                        consumed,
                        done: true,
                    });
                }
                assert!(
                    progress.consumed > 0 || progress.written > 0,
                    "no progress at offset {consumed} with {} bytes left",
                    end - consumed
                );
            }
        }

        assert_eq!(decoder.data_bytes_total(), data.len() as u64);
        Ok(Decoded {
            data,
            consumed,
            done: false,
        })
    }

    /// Returns the piece ends for every two-piece split, and for one byte at a time.
    fn splits(len: usize) -> Vec<Vec<usize>> {
        let mut result: Vec<Vec<usize>> = (0..=len).map(|first| vec![first, len]).collect();
        result.push((1..=len).collect());
        result
    }

    fn long_extension(len: usize) -> Vec<u8> {
        // ";" plus `len - 1` name bytes is an extension of exactly `len` bytes.
        let mut extension = vec![b';'];
        extension.resize(len, b'x');
        extension
    }

    fn chunk_with_extension(extension: &[u8]) -> Vec<u8> {
        let mut input = b"1".to_vec();
        input.extend_from_slice(extension);
        input.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
        input
    }

    /// Valid bodies with their decoded data and the limits to decode them with.
    fn valid_cases() -> Vec<(Vec<u8>, Vec<u8>, ChunkedLimits)> {
        let mut cases: Vec<(Vec<u8>, Vec<u8>, ChunkedLimits)> = [
            (&b"0\r\n\r\n"[..], &b""[..]),
            (b"000\r\n\r\n", b""),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
            (b"0005\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"00000000000000000001\r\nx\r\n0\r\n\r\n", b"x"),
            (b"3\r\n\r\n\r\r\n0\r\n\r\n", b"\r\n\r"),
            (b"3\r\n\x00\xff\n\r\n0\r\n\r\n", b"\x00\xff\n"),
            (b"5;a\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=b\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5 ; a = b ; c\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\t;\ta\t=\tb\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a;b=c;d\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"q\\\"x\"\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"\"\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"tab\there; =\"\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"\xe9\\\xe9\" ;b\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a=\"x\";b\r\nhello\r\n0\r\n\r\n", b"hello"),
            (
                b"5;!#$%&'*+-.^_`|~09azAZ=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n",
                b"hello",
            ),
            (b"0;last=1\r\n\r\n", b""),
            (b"0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n", b""),
            (b"2\r\nok\r\n0\r\nA: b\r\nC:\r\nD:  e f \t\r\n\r\n", b"ok"),
            (b"0\r\nX-Obs: caf\xe9\r\n\r\n", b""),
            (b"0\r\nX:\"quoted\" (comment) \\\r\n\r\n", b""),
        ]
        .into_iter()
        .map(|(input, data)| (input.to_vec(), data.to_vec(), DEFAULT_LIMITS))
        .collect();

        // Limits are inclusive: exactly the maximum is accepted.
        cases.push((
            chunk_with_extension(b";abcdefg"),
            b"z".to_vec(),
            SMALL_LIMITS,
        ));
        cases.push((
            chunk_with_extension(b"    ;a=b"),
            b"z".to_vec(),
            SMALL_LIMITS,
        ));
        cases.push((
            b"0\r\nAbcd: efgh\r\n\r\n".to_vec(),
            Vec::new(),
            SMALL_LIMITS,
        ));
        cases.push((
            chunk_with_extension(&long_extension(DEFAULT_MAX_EXTENSION_BYTES)),
            b"z".to_vec(),
            DEFAULT_LIMITS,
        ));
        // The extension limit and the digit limit apply to each chunk line on its own.
        cases.push((
            b"1;abcdefg\r\nx\r\n1;abcdefg\r\ny\r\n0;abcdefg\r\n\r\n".to_vec(),
            b"xy".to_vec(),
            SMALL_LIMITS,
        ));
        let mut padded_sizes = Vec::new();
        for data in [b'x', b'y'] {
            padded_sizes.extend_from_slice(&[b'0'; MAX_CHUNK_SIZE_DIGITS - 1]);
            padded_sizes.extend_from_slice(&[b'1', b'\r', b'\n', data, b'\r', b'\n']);
        }
        padded_sizes.extend_from_slice(LAST_CHUNK);
        cases.push((padded_sizes, b"xy".to_vec(), DEFAULT_LIMITS));
        // The final empty line is not part of the trailer limit.
        let zero_limits = ChunkedLimits {
            max_extension_bytes: 0,
            max_trailer_bytes: 0,
        };
        cases.push((b"1\r\nz\r\n0\r\n\r\n".to_vec(), b"z".to_vec(), zero_limits));
        cases
    }

    /// Invalid inputs with the error they must produce.
    fn invalid_cases() -> Vec<(Vec<u8>, ChunkedError, ChunkedLimits)> {
        use ChunkedError::*;

        let mut cases: Vec<(Vec<u8>, ChunkedError, ChunkedLimits)> = [
            // chunk-size
            (&b"\r\n"[..], InvalidChunkSize),
            (b";a\r\n", InvalidChunkSize),
            (b"0x5\r\nhello\r\n0\r\n\r\n", InvalidChunkSize),
            (b"+5\r\nhello\r\n", InvalidChunkSize),
            (b"-5\r\nhello\r\n", InvalidChunkSize),
            (b" 5\r\nhello\r\n", InvalidChunkSize),
            (b"\t5\r\nhello\r\n", InvalidChunkSize),
            (b"5 \r\nhello\r\n", InvalidChunkSize),
            (b"5\t\r\nhello\r\n", InvalidChunkSize),
            (b"5 x\r\nhello\r\n", InvalidChunkSize),
            (b"g\r\n", InvalidChunkSize),
            (b"5g\r\n", InvalidChunkSize),
            (b"5,6\r\n", InvalidChunkSize),
            (b"5\r\nhello\r\n\r\n", InvalidChunkSize),
            (b"10000000000000000\r\n", ChunkSizeOverflow),
            (b"fffffffffffffffff\r\n", ChunkSizeOverflow),
            (
                b"00000000000000000000000000000000000000000000000000000000000000001\r\n",
                ChunkSizeOverflow,
            ),
            // line endings and data length
            (b"5\nhello\r\n0\r\n\r\n", MissingCrlf),
            (b"5\rhello\r\n0\r\n\r\n", MissingCrlf),
            (b"5\r\r\nhello\r\n0\r\n\r\n", MissingCrlf),
            (b"5;a\nhello\r\n0\r\n\r\n", MissingCrlf),
            (b"5;a=\"x\nhello\r\n0\r\n\r\n", MissingCrlf),
            (b"5 \nhello\r\n0\r\n\r\n", MissingCrlf),
            (b"\n", MissingCrlf),
            (b"5\r\nhello!\r\n0\r\n\r\n", MissingCrlf),
            (b"5\r\nhell\r\n0\r\n\r\n", MissingCrlf),
            (b"5\r\nhello\n0\r\n\r\n", MissingCrlf),
            (b"5\r\nhello\r0\r\n\r\n", MissingCrlf),
            (b"5\r\nhello\r\r\n0\r\n\r\n", MissingCrlf),
            (b"0\r\n\n", MissingCrlf),
            (b"0\n\r\n", MissingCrlf),
            (b"0\r\n\rx", MissingCrlf),
            (b"0\r\nA: b\n\r\n", MissingCrlf),
            (b"0\r\nA: b\rc\r\n\r\n", MissingCrlf),
            (b"0\r\nA\n", MissingCrlf),
            // chunk extensions
            (b"5;\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5; \r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;;a\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;=b\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a =\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a \r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=b \r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\"b\" \r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=b=c\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a b\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a@b\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=b\"c\"\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\"b\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a\x01\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\x7f\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\"\x00\"\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            (b"5;\xe9\r\nhello\r\n0\r\n\r\n", InvalidExtension),
            // trailer section
            (b"0\r\n: v\r\n\r\n", InvalidTrailer),
            (b"0\r\nA : v\r\n\r\n", InvalidTrailer),
            (b"0\r\n A: v\r\n\r\n", InvalidTrailer),
            (b"0\r\nA: b\r\n c\r\n\r\n", InvalidTrailer),
            (b"0\r\nA: b\r\n\tc\r\n\r\n", InvalidTrailer),
            (b"0\r\nA\r\n\r\n", InvalidTrailer),
            (b"0\r\nA(: b\r\n\r\n", InvalidTrailer),
            (b"0\r\nA: b\x00c\r\n\r\n", InvalidTrailer),
            (b"0\r\nA: b\x7f\r\n\r\n", InvalidTrailer),
            (b"0\r\nA: b\x1bc\r\n\r\n", InvalidTrailer),
        ]
        .into_iter()
        .map(|(input, error)| (input.to_vec(), error, DEFAULT_LIMITS))
        .collect();

        // Limits: one byte over the maximum is rejected.
        cases.push((
            chunk_with_extension(b";abcdefgh"),
            ExtensionTooLong,
            SMALL_LIMITS,
        ));
        cases.push((
            chunk_with_extension(b"        ;a"),
            ExtensionTooLong,
            SMALL_LIMITS,
        ));
        cases.push((
            chunk_with_extension(&long_extension(DEFAULT_MAX_EXTENSION_BYTES + 1)),
            ExtensionTooLong,
            DEFAULT_LIMITS,
        ));
        cases.push((
            b"0\r\nAbcd: efghi\r\n\r\n".to_vec(),
            TrailersTooLong,
            SMALL_LIMITS,
        ));
        cases.push((
            b"0\r\nA: b\r\nC: de\r\n\r\n".to_vec(),
            TrailersTooLong,
            SMALL_LIMITS,
        ));
        let mut long_trailer = b"0\r\nX: ".to_vec();
        long_trailer.resize(3 + DEFAULT_MAX_TRAILER_BYTES - 1, b'v');
        long_trailer.extend_from_slice(b"\r\n\r\n");
        cases.push((long_trailer, TrailersTooLong, DEFAULT_LIMITS));
        let zero_limits = ChunkedLimits {
            max_extension_bytes: 0,
            max_trailer_bytes: 0,
        };
        cases.push((
            b"1;a\r\nz\r\n0\r\n\r\n".to_vec(),
            ExtensionTooLong,
            zero_limits,
        ));
        cases.push((b"0\r\nA:\r\n\r\n".to_vec(), TrailersTooLong, zero_limits));
        cases
    }

    #[test]
    fn valid_bodies_decode_at_every_split() {
        for (body, expected_data, limits) in valid_cases() {
            let mut input = body.clone();
            input.extend_from_slice(NEXT_MESSAGE);
            let expected = Decoded {
                data: expected_data,
                consumed: body.len(),
                done: true,
            };

            for out_len in OUT_LENS {
                for piece_ends in splits(input.len()) {
                    let decoded = decode_pieces(&input, &piece_ends, out_len, limits);
                    assert_eq!(
                        decoded,
                        Ok(expected.clone()),
                        "input {:?}, pieces ending at {piece_ends:?}, out_len {out_len}",
                        input.escape_ascii().to_string(),
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_bodies_fail_at_every_split() {
        for (input, error, limits) in invalid_cases() {
            for piece_ends in splits(input.len()) {
                let decoded = decode_pieces(&input, &piece_ends, 64, limits);
                assert_eq!(
                    decoded,
                    Err(error),
                    "input {:?}, pieces ending at {piece_ends:?}",
                    input.escape_ascii().to_string(),
                );
            }
        }
    }

    /// Feeds `input` to `decode_in_place` in pieces ending at `piece_ends`, each piece in a
    /// scratch copy as a relay's read buffer would hold it.
    fn decode_pieces_in_place(
        input: &[u8],
        piece_ends: &[usize],
        limits: ChunkedLimits,
    ) -> Result<Decoded, ChunkedError> {
        let mut decoder = ChunkedDecoder::new(limits);
        let mut data = Vec::new();
        let mut consumed = 0;
        for &end in piece_ends {
            if consumed >= end {
                continue;
            }
            let mut piece = input[consumed..end].to_vec();
            let progress = decoder.decode_in_place(&mut piece)?;
            assert_eq!(
                &piece[progress.written..],
                &input[consumed + progress.written..end],
                "bytes after the data changed"
            );
            data.extend_from_slice(&piece[..progress.written]);
            consumed += progress.consumed;
            if progress.done {
                return Ok(Decoded {
                    data,
                    consumed,
                    done: true,
                });
            }
            assert_eq!(
                consumed, end,
                "in-place decoding left input unconsumed before the end"
            );
        }
        Ok(Decoded {
            data,
            consumed,
            done: false,
        })
    }

    #[test]
    fn in_place_matches_copying_decode() {
        for (body, expected_data, limits) in valid_cases() {
            let mut input = body.clone();
            input.extend_from_slice(NEXT_MESSAGE);
            let expected = Decoded {
                data: expected_data,
                consumed: body.len(),
                done: true,
            };
            for piece_ends in splits(input.len()) {
                let decoded = decode_pieces_in_place(&input, &piece_ends, limits);
                assert_eq!(
                    decoded,
                    Ok(expected.clone()),
                    "input {:?}, pieces ending at {piece_ends:?}",
                    input.escape_ascii().to_string()
                );
            }
        }
        for (input, error, limits) in invalid_cases() {
            let decoded = decode_pieces_in_place(&input, &[input.len()], limits);
            assert_eq!(
                decoded,
                Err(error),
                "input {:?}",
                input.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn mutated_inputs_split_invariant() {
        // Bytes that drive the grammar. With this seed the mutations produce every
        // ChunkedError variant as well as complete and partial bodies.
        const ALPHABET: &[u8] = b"0019aF \t;=\"\\\r\n:xX\x00\x7f\xe9";
        const INPUT_COUNT: usize = 4000;
        const MAX_MUTATIONS: u64 = 3;

        // A fixed-seed linear congruential generator keeps failures reproducible.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next_random = move |bound: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % bound
        };

        let valid_bodies: Vec<Vec<u8>> = valid_cases()
            .into_iter()
            .map(|(body, _, _)| body)
            .filter(|body| body.len() <= 64)
            .collect();

        for _ in 0..INPUT_COUNT {
            // Replace, insert or delete one to three bytes of a valid body.
            let mut input = valid_bodies[next_random(valid_bodies.len())].clone();
            let mutation_count = 1 + next_random(MAX_MUTATIONS as usize);
            for _ in 0..mutation_count {
                let position = next_random(input.len() + 1);
                let byte = ALPHABET[next_random(ALPHABET.len())];
                match next_random(3) {
                    0 if position < input.len() => input[position] = byte,
                    1 if position < input.len() => {
                        input.remove(position);
                    }
                    _ => input.insert(position, byte),
                }
            }

            let whole = decode_pieces(&input, &[input.len()], 64, SMALL_LIMITS);
            let byte_at_a_time: Vec<usize> = (1..=input.len()).collect();
            let split = decode_pieces(&input, &byte_at_a_time, 1, SMALL_LIMITS);
            assert_eq!(whole, split, "input {:?}", input.escape_ascii().to_string());
        }
    }

    #[test]
    fn decode_reports_exact_progress() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 16];
        let progress = decoder
            .decode(b"5\r\nhello\r\n0\r\n\r\n", &mut out)
            .unwrap();
        assert_eq!(
            progress,
            DecodeProgress {
                consumed: 15,
                written: 5,
                done: true
            }
        );
        assert_eq!(&out[..5], b"hello");
        assert_eq!(decoder.data_bytes_total(), 5);
    }

    #[test]
    fn decode_stops_before_data_when_out_is_full() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let input = b"5;a=b\r\nhello\r\n0\r\n\r\n";

        let progress = decoder.decode(input, &mut []).unwrap();
        assert_eq!(
            progress.consumed, 7,
            "framing is consumed without output space"
        );
        assert_eq!(progress.written, 0);
        assert!(!progress.done);
        assert!(!decoder.is_between_chunks());

        let progress = decoder.decode(&input[7..], &mut []).unwrap();
        assert_eq!(progress.consumed, 0, "data waits for output space");

        let mut out = [0u8; 2];
        let progress = decoder.decode(&input[7..], &mut out).unwrap();
        assert_eq!(progress.consumed, 2);
        assert_eq!(progress.written, 2);
        assert_eq!(&out, b"he");
        assert_eq!(decoder.data_bytes_total(), 2);
    }

    #[test]
    fn decode_continues_past_full_out_to_end() {
        // Once the last data byte fills `out`, the closing framing is still consumed.
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 5];
        let progress = decoder
            .decode(b"5\r\nhello\r\n0\r\n\r\nGET", &mut out)
            .unwrap();
        assert_eq!(
            progress,
            DecodeProgress {
                consumed: 15,
                written: 5,
                done: true
            }
        );
    }

    #[test]
    fn decode_after_done_consumes_nothing() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 8];
        decoder.decode(b"0\r\n\r\n", &mut out).unwrap();
        assert!(decoder.is_done());

        let progress = decoder.decode(b"1\r\nz\r\n", &mut out).unwrap();
        assert_eq!(
            progress,
            DecodeProgress {
                consumed: 0,
                written: 0,
                done: true
            }
        );
    }

    #[test]
    fn decode_error_is_sticky() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 8];
        assert_eq!(
            decoder.decode(b"5\nhello", &mut out),
            Err(ChunkedError::MissingCrlf)
        );
        assert_eq!(
            decoder.decode(b"0\r\n\r\n", &mut out),
            Err(ChunkedError::MissingCrlf),
            "a valid continuation must not revive the decoder"
        );
        assert!(!decoder.is_done());
    }

    #[test]
    fn between_chunks_tracks_chunk_boundaries() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 8];
        assert!(decoder.is_between_chunks(), "before the first chunk");

        decoder.decode(b"2\r\nab", &mut out).unwrap();
        assert!(!decoder.is_between_chunks(), "before the data CRLF");

        decoder.decode(b"\r\n", &mut out).unwrap();
        assert!(decoder.is_between_chunks(), "after the data CRLF");

        decoder.decode(b"0\r\n", &mut out).unwrap();
        assert!(!decoder.is_between_chunks(), "inside the trailer section");
    }

    #[test]
    fn max_chunk_size_is_accepted() {
        // The decoder counts a chunk down instead of buffering it, so a u64::MAX size
        // is accepted like any other.
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 8];
        let progress = decoder
            .decode(b"ffffffffffffffff\r\nabc", &mut out)
            .unwrap();
        assert_eq!(progress.consumed, 21);
        assert_eq!(progress.written, 3);
        assert!(!progress.done);
        assert_eq!(decoder.data_bytes_total(), 3);
    }

    #[test]
    fn chunk_size_digit_limit() {
        let mut at_limit = vec![b'0'; MAX_CHUNK_SIZE_DIGITS - 1];
        at_limit.extend_from_slice(b"1\r\nz\r\n0\r\n\r\n");
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 8];
        let progress = decoder.decode(&at_limit, &mut out).unwrap();
        assert!(progress.done);
        assert_eq!(&out[..progress.written], b"z");

        let mut over_limit = vec![b'0'; MAX_CHUNK_SIZE_DIGITS];
        over_limit.extend_from_slice(b"1\r\nz\r\n0\r\n\r\n");
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        assert_eq!(
            decoder.decode(&over_limit, &mut out),
            Err(ChunkedError::ChunkSizeOverflow)
        );
    }

    #[test]
    fn chunk_size_leading_zeros_do_not_overflow() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 8];
        let progress = decoder
            .decode(b"0000ffffffffffffffff\r\nx", &mut out)
            .unwrap();
        assert_eq!(progress.written, 1);
        assert!(!progress.done);
    }

    #[test]
    fn data_bytes_total_counts_all_chunks() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 4];
        let input = b"3\r\nabc\r\n4\r\ndefg\r\n";
        let mut consumed = 0;
        while consumed < input.len() {
            consumed += decoder
                .decode(&input[consumed..], &mut out)
                .unwrap()
                .consumed;
        }
        assert_eq!(decoder.data_bytes_total(), 7);
    }

    #[test]
    fn encode_chunk_header_writes_lowercase_hex() {
        let cases: [(u64, &[u8]); 6] = [
            (1, b"1\r\n"),
            (15, b"f\r\n"),
            (16, b"10\r\n"),
            (0xabcdef, b"abcdef\r\n"),
            (65536, b"10000\r\n"),
            (u64::MAX, b"ffffffffffffffff\r\n"),
        ];
        for (len, expected) in cases {
            let mut header = [0u8; MAX_CHUNK_HEADER_BYTES];
            let header_len = encode_chunk_header(len, &mut header);
            assert_eq!(&header[..header_len], expected, "len {len}");
        }
    }

    #[test]
    fn encode_chunk_header_matches_format() {
        for shift in 0..u64::BITS {
            let power = 1u64 << shift;
            for len in [power, power - 1, power | 1]
                .into_iter()
                .filter(|&len| len > 0)
            {
                let mut header = [0u8; MAX_CHUNK_HEADER_BYTES];
                let header_len = encode_chunk_header(len, &mut header);
                assert_eq!(header[..header_len], *format!("{len:x}\r\n").as_bytes());
            }
        }
    }

    #[test]
    fn encoded_chunks_round_trip() {
        for len in [1usize, 15, 16, 65536] {
            let data: Vec<u8> = (0..len).map(|index| (index % 251) as u8).collect();
            let mut header = [0u8; MAX_CHUNK_HEADER_BYTES];
            let header_len = encode_chunk_header(len as u64, &mut header);

            let mut body = header[..header_len].to_vec();
            body.extend_from_slice(&data);
            body.extend_from_slice(CHUNK_TRAILER_CRLF);
            body.extend_from_slice(LAST_CHUNK);

            let decoded = decode_pieces(&body, &[body.len()], 4096, ChunkedLimits::default());
            assert_eq!(
                decoded,
                Ok(Decoded {
                    data,
                    consumed: body.len(),
                    done: true
                }),
                "len {len}"
            );
        }
    }

    #[test]
    fn encoded_max_header_round_trips() {
        let mut header = [0u8; MAX_CHUNK_HEADER_BYTES];
        let header_len = encode_chunk_header(u64::MAX, &mut header);
        assert_eq!(header_len, MAX_CHUNK_HEADER_BYTES);

        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut out = [0u8; 4];
        let progress = decoder.decode(&header, &mut out).unwrap();
        assert_eq!(progress.consumed, MAX_CHUNK_HEADER_BYTES);
        assert!(
            !decoder.is_between_chunks(),
            "the decoder expects data next"
        );

        let progress = decoder.decode(b"data", &mut out).unwrap();
        assert_eq!(progress.written, 4);
        assert!(!progress.done);
    }

    #[test]
    fn chunked_error_messages_are_distinct_lines() {
        use ChunkedError::*;

        let errors = [
            InvalidChunkSize,
            ChunkSizeOverflow,
            MissingCrlf,
            ExtensionTooLong,
            InvalidExtension,
            TrailersTooLong,
            InvalidTrailer,
        ];
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for (error, message) in errors.iter().zip(&messages) {
            assert!(!message.is_empty(), "{error:?} has an empty message");
            assert!(!message.contains('\n'), "{error:?} message spans lines");
            let duplicates = messages.iter().filter(|other| *other == message).count();
            assert_eq!(duplicates, 1, "{error:?} message is not unique");
        }
    }

    #[test]
    fn length_decoder_zero_length() {
        let mut decoder = LengthDecoder::new(0);
        assert!(decoder.is_done());
        assert_eq!(decoder.take(0), 0);
        assert_eq!(decoder.take(10), 0);
        assert_eq!(decoder.remaining(), 0);
    }

    #[test]
    fn length_decoder_exact_input() {
        let mut decoder = LengthDecoder::new(5);
        assert!(!decoder.is_done());
        assert_eq!(decoder.take(5), 5);
        assert!(decoder.is_done());
        assert_eq!(decoder.remaining(), 0);
    }

    #[test]
    fn length_decoder_partial_then_oversupplied() {
        let mut decoder = LengthDecoder::new(5);
        assert_eq!(decoder.take(3), 3);
        assert_eq!(decoder.remaining(), 2);
        assert!(!decoder.is_done());

        assert_eq!(
            decoder.take(100),
            2,
            "bytes of the next message are left alone"
        );
        assert!(decoder.is_done());
        assert_eq!(decoder.take(100), 0);
    }

    #[test]
    fn length_decoder_max_length() {
        let mut decoder = LengthDecoder::new(u64::MAX);
        assert_eq!(decoder.take(0), 0);
        assert_eq!(decoder.remaining(), u64::MAX);

        assert_eq!(decoder.take(65536), 65536);
        assert_eq!(decoder.remaining(), u64::MAX - 65536);

        let taken = decoder.take(usize::MAX);
        let expected = usize::try_from(u64::MAX - 65536).unwrap_or(usize::MAX);
        assert_eq!(taken, expected);
        assert_eq!(decoder.remaining(), u64::MAX - 65536 - taken as u64);
    }
}
