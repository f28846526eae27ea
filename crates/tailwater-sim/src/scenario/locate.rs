//! Where a scenario error is in the TOML text: line and column of a byte offset, of a field
//! named in a serde message, or of a dotted field path.

/// 1-based line and column of byte `offset`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// Pulls the field name out of a serde message such as "unknown field `foo`, expected ...".
pub(super) fn field_in_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Finds the line of a dotted field path (`server.workers`, `phase[2].load`) in TOML text;
/// falls back to the enclosing table.
pub(super) fn locate(text: &str, field: &str) -> Option<(usize, usize)> {
    let mut path: Vec<&str> = field.split('.').collect();
    while !path.is_empty() {
        if let Some(found) = locate_exact(text, &path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

pub(super) fn locate_exact(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    // Split "phase[2]" into ("phase", Some(2)).
    let parse = |seg: &str| -> (String, Option<usize>) {
        match seg.find('[') {
            Some(i) => (
                seg[..i].to_string(),
                seg[i + 1..seg.len().saturating_sub(1)].parse().ok(),
            ),
            None => (seg.to_string(), None),
        }
    };
    let (key, key_index) = parse(path[path.len() - 1]);
    let table: Vec<(String, Option<usize>)> =
        path[..path.len() - 1].iter().map(|s| parse(s)).collect();
    let table_name: Vec<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
    let table_name = table_name.join(".");
    let wanted_index = table.last().and_then(|(_, i)| *i);
    let mut current = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut current_index: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            current = h.trim().to_string();
            let c = counts.entry(current.clone()).or_insert(0);
            current_index = Some(*c);
            *c += 1;
            if table.is_empty() && current == key {
                let idx = current_index.unwrap_or(0);
                if key_index.is_none_or(|k| k == idx) {
                    return Some((n + 1, 1));
                }
            }
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = h.trim().to_string();
            current_index = None;
            if table.is_empty() && current == key {
                return Some((n + 1, 1));
            }
            continue;
        }
        let in_table =
            current == table_name && (wanted_index.is_none() || wanted_index == current_index);
        if in_table
            && let Some(rest) = line.strip_prefix(key.as_str())
            && rest.trim_start().starts_with('=')
        {
            let col = raw.find(key.as_str()).unwrap_or(0) + 1;
            return Some((n + 1, col));
        }
    }
    None
}
