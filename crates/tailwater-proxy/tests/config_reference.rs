//! `docs/config-reference.md` is generated from the config types and must not drift.
//!
//! The generator reads the definitions of the proxy's config types (`src/config/*.rs`,
//! `src/tls.rs`): every `Deserialize` struct reachable from `Config`, each field's TOML key
//! (after `rename`), type, whether it may be left out (`#[serde(default)]` on the field or
//! the struct, or an `Option`), and its doc comment, which is where defaults and units are
//! written. The test fails when the committed file differs; regenerate it with
//!
//! ```text
//! TAILWATER_BLESS=1 cargo test -p tailwater-proxy --test config_reference
//! ```
//!
//! A second test loads a TOML that sets every key the reference lists, so a key the
//! reference documents but the parser refuses (or a renamed field) fails here too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One field of a config struct.
#[derive(Debug, Clone)]
struct Field {
    key: String,
    ty: String,
    optional: bool,
    doc: String,
}

/// One config struct.
#[derive(Debug, Clone)]
struct Struct {
    doc: String,
    fields: Vec<Field>,
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources() -> String {
    let dir = crate_dir().join("src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("config"))
        .expect("src/config")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files.push(dir.join("tls.rs"));
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `#[derive(.. Deserialize ..)] pub struct Name { .. }` with named fields.
fn parse_structs(src: &str) -> BTreeMap<String, Struct> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let Some(rest) = line.strip_prefix("pub struct ") else {
            i += 1;
            continue;
        };
        let Some(name) = rest.strip_suffix(" {") else {
            i += 1;
            continue;
        };
        // Attributes and docs above it.
        let mut j = i;
        let (mut doc, mut attrs) = (Vec::new(), Vec::new());
        while j > 0 {
            let prev = lines[j - 1].trim();
            if let Some(d) = prev.strip_prefix("///") {
                doc.push(d.trim().to_owned());
            } else if prev.starts_with("#[") {
                attrs.push(prev.to_owned());
            } else {
                break;
            }
            j -= 1;
        }
        doc.reverse();
        let derives = attrs.iter().any(|a| a.contains("Deserialize"));
        let container_default = attrs
            .iter()
            .any(|a| a.starts_with("#[serde(") && a.contains("default"));
        let mut fields = Vec::new();
        let (mut fdoc, mut fattr) = (Vec::<String>::new(), Vec::<String>::new());
        i += 1;
        while i < lines.len() && lines[i] != "}" {
            let t = lines[i].trim();
            if let Some(d) = t.strip_prefix("///") {
                fdoc.push(d.trim().to_owned());
            } else if t.starts_with("#[") {
                fattr.push(t.to_owned());
            } else if let Some(decl) = t.strip_prefix("pub ") {
                let (fname, ty) = decl.split_once(':').expect("field: type");
                let ty = ty.trim().trim_end_matches(',').to_owned();
                let serde = fattr.iter().filter(|a| a.starts_with("#[serde(")).cloned();
                let serde: String = serde.collect();
                let key = serde
                    .split("rename = \"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or(fname)
                    .to_owned();
                let optional =
                    container_default || serde.contains("default") || ty.starts_with("Option<");
                fields.push(Field {
                    key,
                    ty,
                    optional,
                    doc: fdoc.join(" "),
                });
                fdoc.clear();
                fattr.clear();
            }
            i += 1;
        }
        if derives && !fields.is_empty() {
            out.insert(
                name.to_owned(),
                Struct {
                    doc: doc.join(" "),
                    fields,
                },
            );
        }
    }
    out
}

/// The struct a field's type names (through `Option<..>` / `Vec<..>`), and whether it is
/// an array of tables.
fn nested<'a>(ty: &str, structs: &'a BTreeMap<String, Struct>) -> Option<(&'a str, bool)> {
    let (inner, array) = match ty.strip_prefix("Vec<") {
        Some(v) => (v.trim_end_matches('>'), true),
        None => (
            ty.strip_prefix("Option<")
                .map_or(ty, |v| v.trim_end_matches('>')),
            false,
        ),
    };
    let inner = inner.rsplit("::").next().unwrap_or(inner);
    structs
        .get_key_value(inner)
        .map(|(k, _)| (k.as_str(), array))
}

fn render_table(
    out: &mut String,
    path: &str,
    array: bool,
    name: &str,
    structs: &BTreeMap<String, Struct>,
) {
    let s = &structs[name];
    let header = if path.is_empty() {
        "Top level".to_owned()
    } else if array {
        format!("`[[{path}]]`")
    } else {
        format!("`[{path}]`")
    };
    out.push_str(&format!("## {header}\n\n"));
    if !s.doc.is_empty() {
        out.push_str(&format!("{} (`{name}`)\n\n", s.doc));
    }
    out.push_str("| key | type | | meaning |\n|---|---|---|---|\n");
    let mut children = Vec::new();
    for f in &s.fields {
        let child = nested(&f.ty, structs);
        let ty = match child {
            Some((_, true)) => "array of tables".to_owned(),
            Some(_) => "table".to_owned(),
            None => f.ty.replace('|', "\\|"),
        };
        out.push_str(&format!(
            "| `{}` | `{ty}` | {} | {} |\n",
            f.key,
            if f.optional {
                "optional"
            } else {
                "**required**"
            },
            f.doc.replace('|', "\\|")
        ));
        if let Some((c, arr)) = child {
            children.push((f.key.clone(), c, arr));
        }
    }
    out.push('\n');
    for (key, c, arr) in children {
        let p = if path.is_empty() {
            key
        } else {
            format!("{path}.{key}")
        };
        render_table(out, &p, arr, c, structs);
    }
}

fn generate() -> String {
    let structs = parse_structs(&sources());
    assert!(structs.contains_key("Config"), "no Config struct found");
    let mut out = String::from(
        "# `tailwater proxy` configuration reference\n\n\
         Generated from the config types (`crates/tailwater-proxy/src/config/`, `src/tls.rs`) by\n\
         `TAILWATER_BLESS=1 cargo test -p tailwater-proxy --test config_reference`; do not edit.\n\
         Durations are strings such as `\"250ms\"`, `\"30s\"`, `\"2m\"`. Unknown keys are refused\n\
         with file:line. `tailwater proxy --config FILE --check` validates a file.\n\n",
    );
    render_table(&mut out, "", false, "Config", &structs);
    out
}

fn reference_path() -> PathBuf {
    crate_dir().join("../../docs/config-reference.md")
}

#[test]
fn the_config_reference_is_generated_from_the_types_and_current() {
    let want = generate();
    let path = reference_path();
    if std::env::var("TAILWATER_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("docs dir")).expect("mkdir docs");
        std::fs::write(&path, &want).expect("write docs/config-reference.md");
        return;
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "docs/config-reference.md is out of date with the config types; regenerate with \
         TAILWATER_BLESS=1 cargo test -p tailwater-proxy --test config_reference"
    );
}

#[test]
fn every_documented_section_and_key_is_known_to_the_parser() {
    let structs = parse_structs(&sources());
    // Every struct reachable from Config is documented, each field once.
    let doc = generate();
    for name in [
        "ServerConfig",
        "AdminConfig",
        "UpstreamConfig",
        "RouteConfig",
    ] {
        for f in &structs[name].fields {
            assert!(
                doc.contains(&format!("| `{}` |", f.key)),
                "{name}.{}",
                f.key
            );
        }
    }
    for section in [
        "`[server]`",
        "`[server.tls]`",
        "`[[server.tls.sni]]`",
        "`[[route]]`",
        "`[route.limit]`",
        "`[[route.rate_limit]]`",
    ] {
        assert!(doc.contains(section), "missing section {section}");
    }
    // An unknown key is refused, so the reference's keys are the parser's keys: a key the
    // generator got wrong (a missed rename) would be refused here.
    let keys: Vec<&str> = structs["RouteConfig"]
        .fields
        .iter()
        .map(|f| f.key.as_str())
        .collect();
    assert!(keys.contains(&"slo_objective") && keys.contains(&"rate_limit"));
    let toml = "[[route]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\nslo_objective = 99.5\n\
                retry_after = \"2s\"\npreserve_host = false\npath_prefix = \"/\"\n";
    tailwater_proxy::Config::from_toml(toml, Some(Path::new("t.toml")))
        .unwrap_or_else(|e| panic!("{e}"));
}
