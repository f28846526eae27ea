//! Lingering close, as nginx's `lingering_close`: after answering early a request whose
//! body the proxy did not read (413, 400, 408, a shed 503 …), stop writing (a FIN after
//! the answer) and read and discard what the client still sends, until it closes, for at
//! most [`LINGER_TIME`] in all and [`LINGER_IDLE`] of silence.
//!
//! Why: closing a socket with unread bytes makes the kernel send a reset, which fails the
//! client's writes and can destroy the answer before the client reads it; a client still
//! uploading would never see its 413. The lean path lingers itself (`h1`); connections
//! hyper serves linger in [`SendDeadline`](crate::send_deadline::SendDeadline)'s shutdown
//! when the request's handler marked the connection ([`Conn::linger`](crate::conn::Conn)).

use std::time::Duration;

/// Longest lingering close (nginx's `lingering_time` is 30 s; a client that wants its
/// answer reads it well within this).
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);

/// Longest silence during a lingering close (nginx's `lingering_timeout`).
pub(crate) const LINGER_IDLE: Duration = Duration::from_secs(1);
