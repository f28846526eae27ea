//! A lean-path request as the admission steps see it: the parsed head over the read buffer.

use super::head::{Framing, RequestHead};
use crate::admit::RequestView;

/// A lean-path request as the admission steps see it.
pub(super) struct View<'a> {
    pub(super) head: &'a RequestHead,
    pub(super) buf: &'a [u8],
}

impl RequestView for View<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .fields
            .list
            .iter()
            .find(|f| self.buf[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|f| std::str::from_utf8(&self.buf[f.value.clone()]).ok())
    }

    fn may_state_deadline(&self, header: Option<&http::HeaderName>) -> bool {
        header.is_some() || self.head.fields.grpc_timeout
    }

    fn path(&self) -> &str {
        let target = std::str::from_utf8(&self.buf[self.head.target.clone()]).unwrap_or("/");
        // Origin form `/p?q`, or absolute form `http://host/p?q`.
        let path = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => target,
        };
        path.split_once('?').map_or(path, |(p, _)| p)
    }

    fn content_length(&self) -> Option<u64> {
        match self.head.body() {
            Ok(Framing::Length(n)) => Some(n),
            _ => None,
        }
    }
}
