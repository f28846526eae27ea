//! Finds the line of a key in a YAML spec, for errors found after parsing (a value that
//! parses but is out of range). serde gives positions only for syntax errors, and the specs
//! are small, so a scan of the text by indentation is enough.

/// 1-based line of the first top-level (unindented) `key:`.
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| is_key(l, key) && indent(l) == 0)
        .map(|i| i + 1)
}

/// 1-based line of `key:` inside the `index`-th item of the top-level `list` (e.g. `slos`),
/// searching nested keys by the given `path` (`["alerting", "name"]`). Falls back to the
/// item's own line, then to the list's line.
pub fn item_line(text: &str, list: &str, index: usize, path: &[&str]) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let Some(list_at) = lines.iter().position(|l| is_key(l, list) && indent(l) == 0) else {
        return 1;
    };
    // Items are the lines starting with "- " at the first item's indentation.
    let mut items = Vec::new();
    let mut item_indent = None;
    for (i, l) in lines.iter().enumerate().skip(list_at + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if indent(l) == 0 {
            break;
        }
        if t.starts_with("- ") || t == "-" {
            let ind = indent(l);
            match item_indent {
                None => {
                    item_indent = Some(ind);
                    items.push(i);
                }
                Some(x) if x == ind => items.push(i),
                _ => {}
            }
        }
    }
    let Some(&start) = items.get(index) else {
        return list_at + 1;
    };
    let end = items.get(index + 1).copied().unwrap_or_else(|| {
        lines
            .iter()
            .enumerate()
            .skip(start + 1)
            .find(|(_, l)| {
                indent(l) == 0 && !l.trim().is_empty() && !l.trim_start().starts_with('#')
            })
            .map(|(i, _)| i)
            .unwrap_or(lines.len())
    });
    let mut from = start;
    for key in path {
        match (from..end).find(|&i| is_key(lines[i], key)) {
            Some(i) => from = i,
            None => return from + 1,
        }
    }
    from + 1
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_key(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
    let t = t.trim_start_matches(['"', '\'']);
    t.strip_prefix(key).is_some_and(|rest| {
        rest.trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "version: v\nservice: s\nslos:\n  # first\n  - name: a\n    objective: 99\n    alerting:\n      name: A\n  - name: b\n    objective: 101\n    sli:\n      raw: {}\nother: 1\n";

    #[test]
    fn finds_keys_in_items() {
        assert_eq!(key_line(SPEC, "service"), Some(2));
        assert_eq!(key_line(SPEC, "name"), None);
        assert_eq!(item_line(SPEC, "slos", 0, &["objective"]), 6);
        assert_eq!(item_line(SPEC, "slos", 0, &["alerting", "name"]), 8);
        assert_eq!(item_line(SPEC, "slos", 1, &["objective"]), 10);
        assert_eq!(item_line(SPEC, "slos", 1, &["name"]), 9);
        // Missing keys fall back to the item, missing items to the list.
        assert_eq!(item_line(SPEC, "slos", 1, &["alerting"]), 9);
        assert_eq!(item_line(SPEC, "slos", 5, &["name"]), 3);
        assert_eq!(item_line(SPEC, "nope", 0, &["name"]), 1);
    }
}
