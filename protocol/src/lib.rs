//! Wire types of StreamReel: what crosses a topic, a table or a node boundary.
//!
//! Pure code: no I/O, no async runtime.
//!
//! # Layout
//! - [`event`]: the input event and its validation against the data contract.
//! - `plain_json`: the fast reader for plain input events (serde_json is the reference).
//! - [`rejection`]: why an input event was refused (the dead-letter `error` header).
//! - [`pseudonym`]: `user_key` = HMAC-SHA256(secret, user_id), first 16 bytes, hex.
//! - [`bronze`]: the bronze row, also the JSON value written to `clean-events`.
//! - [`checkpoint`]: per-partition progress exchanged between node components.
//! - [`codec`]: the bincode codec for internal messages.
//! - [`time`]: RFC 3339 <-> microseconds since the Unix epoch.
//! - [`error_text`]: an error and its causes as one line.

pub mod bronze;
pub mod checkpoint;
pub mod codec;
pub mod error_text;
pub mod event;
mod plain_json;
pub mod pseudonym;
pub mod rejection;
pub mod time;

pub use bronze::{BronzeRow, BronzeRowView, CleanEvent};
pub use checkpoint::{PartitionCheckpoint, PartitionCounters};
pub use codec::{CodecError, decode, encode};
pub use error_text::error_chain_text;
pub use event::{
    EngagementEvent, EventType, MAX_POSITION_S, OPTIONAL_MEMBERS, REQUIRED_MEMBERS, id_hash,
    parse_event,
};
pub use pseudonym::{UserKey, UserKeyer};
pub use rejection::Rejection;
