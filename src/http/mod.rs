//! The I/O-free HTTP/1.1 core: head parsing, body framing and head serialization.

pub mod body;
pub mod date;
pub mod forward;
pub mod head;
