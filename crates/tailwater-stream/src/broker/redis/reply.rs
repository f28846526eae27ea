//! Parsing the stream commands' replies from `redis::Value`, RESP2 and RESP3 alike.

use redis::Value;

use super::Message;
use crate::broker::BrokerError;

fn protocol(op: &'static str, detail: impl Into<String>) -> BrokerError {
    BrokerError::Protocol {
        op,
        detail: detail.into(),
    }
}

fn text(op: &'static str, v: &Value) -> Result<String, BrokerError> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::VerbatimString { text, .. } => Ok(text.clone()),
        other => Err(protocol(op, format!("expected a string, got {other:?}"))),
    }
}

fn bytes(op: &'static str, v: Value) -> Result<Vec<u8>, BrokerError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(protocol(op, format!("expected bytes, got {other:?}"))),
    }
}

fn items(op: &'static str, v: Value) -> Result<Vec<Value>, BrokerError> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        Value::Nil => Ok(Vec::new()),
        other => Err(protocol(op, format!("expected an array, got {other:?}"))),
    }
}

/// Entries as `[id, [field, value, ...]]`; an entry whose fields are nil was deleted from
/// the stream while pending: its id goes to `deleted`.
pub(super) fn entries(
    op: &'static str,
    v: Value,
    redelivered: bool,
    out: &mut Vec<Message>,
    deleted: &mut Vec<String>,
) -> Result<(), BrokerError> {
    for entry in items(op, v)? {
        let mut parts = items(op, entry)?.into_iter();
        let id = parts
            .next()
            .ok_or_else(|| protocol(op, "an entry without an id"))?;
        let id = text(op, &id)?;
        match parts.next() {
            None | Some(Value::Nil) => deleted.push(id),
            Some(Value::Map(pairs)) => {
                let fields = pairs
                    .into_iter()
                    .map(|(k, v)| Ok((bytes(op, k)?, bytes(op, v)?)))
                    .collect::<Result<Vec<_>, BrokerError>>()?;
                out.push(Message::new(id, fields, redelivered));
            }
            Some(flat) => {
                let flat = items(op, flat)?;
                if flat.len() % 2 != 0 {
                    return Err(protocol(op, "an odd number of field names and values"));
                }
                let mut fields = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    fields.push((bytes(op, k)?, bytes(op, v)?));
                }
                out.push(Message::new(id, fields, redelivered));
            }
        }
    }
    Ok(())
}

/// `XREADGROUP ... STREAMS key id`: nil on timeout, else `[[key, entries]]` (RESP3: a map).
pub(super) fn read_group(
    v: Value,
    redelivered: bool,
    out: &mut Vec<Message>,
    deleted: &mut Vec<String>,
) -> Result<(), BrokerError> {
    const OP: &str = "XREADGROUP";
    match v {
        Value::Nil => Ok(()),
        Value::Map(streams) => {
            for (_, e) in streams {
                entries(OP, e, redelivered, out, deleted)?;
            }
            Ok(())
        }
        other => {
            for stream in items(OP, other)? {
                let mut parts = items(OP, stream)?.into_iter();
                let _key = parts.next();
                if let Some(e) = parts.next() {
                    entries(OP, e, redelivered, out, deleted)?;
                }
            }
            Ok(())
        }
    }
}

/// `XAUTOCLAIM`: `[next-cursor, entries, deleted-ids]` (Redis 7; 6.2 has no third part).
/// Returns the next cursor.
pub(super) fn auto_claim(
    v: Value,
    out: &mut Vec<Message>,
    deleted: &mut Vec<String>,
) -> Result<String, BrokerError> {
    const OP: &str = "XAUTOCLAIM";
    let mut parts = items(OP, v)?.into_iter();
    let cursor = parts
        .next()
        .ok_or_else(|| protocol(OP, "no cursor in the reply"))?;
    let cursor = text(OP, &cursor)?;
    if let Some(e) = parts.next() {
        entries(OP, e, true, out, deleted)?;
    }
    if let Some(gone) = parts.next() {
        for id in items(OP, gone)? {
            deleted.push(text(OP, &id)?);
        }
    }
    Ok(cursor)
}

/// One group's lag and pending count from `XINFO GROUPS key`.
pub(super) fn group_info(v: Value, group: &str) -> Result<(Option<u64>, Option<u64>), BrokerError> {
    const OP: &str = "XINFO GROUPS";
    for g in items(OP, v)? {
        let pairs: Vec<(Value, Value)> = match g {
            Value::Map(pairs) => pairs,
            other => {
                let flat = items(OP, other)?;
                let mut pairs = Vec::with_capacity(flat.len() / 2);
                let mut it = flat.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                pairs
            }
        };
        let (mut name, mut lag, mut pending) = (None, None, None);
        for (k, v) in pairs {
            match text(OP, &k)?.as_str() {
                "name" => name = Some(text(OP, &v)?),
                "lag" => lag = number(&v),
                "pending" => pending = number(&v),
                _ => {}
            }
        }
        if name.as_deref() == Some(group) {
            return Ok((lag, pending));
        }
    }
    Err(protocol(OP, format!("no group `{group}` on the stream")))
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_read_claim_and_info_replies() {
        let entry =
            |id: &str| Value::Array(vec![bulk(id), Value::Array(vec![bulk("n"), bulk("7")])]);
        let read = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                entry("1-0"),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let (mut out, mut gone) = (Vec::new(), Vec::new());
        read_group(read, false, &mut out, &mut gone).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].id(), "1-0");
        assert_eq!(out[0].field("n"), Some(&b"7"[..]));
        assert!(!out[0].is_redelivery());
        assert_eq!(gone, ["2-0"]);

        let claim = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![entry("3-0")]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let (mut out, mut gone) = (Vec::new(), Vec::new());
        assert_eq!(auto_claim(claim, &mut out, &mut gone).unwrap(), "0-0");
        assert!(out[0].is_redelivery());
        assert_eq!(gone, ["4-0"]);

        let info = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("g"),
            bulk("pending"),
            Value::Int(3),
            bulk("lag"),
            Value::Int(12),
        ])]);
        assert_eq!(group_info(info.clone(), "g").unwrap(), (Some(12), Some(3)));
        assert!(matches!(
            group_info(info, "other"),
            Err(BrokerError::Protocol { .. })
        ));
        assert!(matches!(
            read_group(Value::Int(1), false, &mut Vec::new(), &mut Vec::new()),
            Err(BrokerError::Protocol { .. })
        ));
    }
}
