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

/// Every `#[derive(.. Deserialize ..)] pub struct Name { .. }` with named fields (every
/// `pub struct` with named fields when `any`).
fn parse_structs(src: &str, any: bool) -> BTreeMap<String, Struct> {
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
        if (derives || any) && !fields.is_empty() {
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

/// One variant of a tagged table: its tag value, doc and the struct of its keys.
#[derive(Debug, Clone)]
struct Variant {
    tag: String,
    doc: String,
    payload: Option<String>,
}

/// A table tagged by one key (`[route.limit]`, tagged by `algorithm`): a `pub enum` whose
/// variants hold the struct of their keys.
#[derive(Debug, Clone)]
struct Tagged {
    doc: String,
    variants: Vec<Variant>,
}

/// The tag value of a variant: its name in kebab case (`Gradient2CorrectedFast` →
/// `gradient2-corrected-fast`), as tailwater-core spells the names.
fn kebab(ident: &str) -> String {
    let mut out = String::new();
    for (i, c) in ident.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Every `pub enum Name { .. }` of the sources whose variants hold a struct (`Aimd(AimdLimit)`).
fn parse_tagged(src: &str) -> BTreeMap<String, Tagged> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line
            .strip_prefix("pub enum ")
            .and_then(|r| r.strip_suffix(" {"))
        else {
            continue;
        };
        let mut doc = Vec::new();
        for prev in lines[..i].iter().rev() {
            let prev = prev.trim();
            if let Some(d) = prev.strip_prefix("///") {
                doc.push(d.trim().to_owned());
            } else if !prev.starts_with("#[") {
                break;
            }
        }
        doc.reverse();
        let (mut variants, mut vdoc) = (Vec::new(), Vec::<String>::new());
        for t in lines[i + 1..].iter().take_while(|l| **l != "}") {
            let t = t.trim();
            if let Some(d) = t.strip_prefix("///") {
                vdoc.push(d.trim().to_owned());
            } else if let Some(v) = t.strip_suffix(',') {
                let (ident, payload) = match v.split_once('(') {
                    Some((ident, p)) => (ident, Some(p.trim_end_matches(')').to_owned())),
                    None => (v, None),
                };
                variants.push(Variant {
                    tag: kebab(ident),
                    doc: vdoc.join(" "),
                    payload,
                });
                vdoc.clear();
            }
        }
        let structs = parse_structs(src, true);
        let payloads = variants.iter().filter_map(|v| v.payload.as_ref());
        if variants.iter().any(|v| v.payload.is_some())
            && payloads.clone().all(|p| structs.contains_key(p))
        {
            out.insert(
                name.to_owned(),
                Tagged {
                    doc: doc.join(" "),
                    variants,
                },
            );
        }
    }
    out
}

/// `[route.limit]`: the tag, then each variant's keys.
fn render_tagged(out: &mut String, path: &str, name: &str, t: &Tagged, src: &str) {
    let payloads = parse_structs(src, true);
    out.push_str(&format!("## `[{path}]`\n\n{} (`{name}`)\n\n", t.doc));
    let tags: Vec<String> = t.variants.iter().map(|v| format!("`{}`", v.tag)).collect();
    out.push_str(&format!(
        "| key | type | | meaning |\n|---|---|---|---|\n\
         | `algorithm` | `AlgorithmName` | optional | One of {}; the other keys are those of the algorithm named, below. |\n\n",
        tags.join(", ")
    ));
    for v in &t.variants {
        out.push_str(&format!("### `algorithm = \"{}\"`\n\n{}", v.tag, v.doc));
        let fields = v.payload.as_ref().map(|p| {
            let s = payloads.get(p).unwrap_or_else(|| panic!("no struct {p}"));
            (p, s)
        });
        match fields {
            None => out.push_str("\n\n"),
            Some((p, s)) => {
                out.push_str(&format!(
                    " (`{p}`)\n\n| key | type | | meaning |\n|---|---|---|---|\n"
                ));
                for f in &s.fields {
                    out.push_str(&format!(
                        "| `{}` | `{}` | {} | {} |\n",
                        f.key,
                        f.ty,
                        if f.ty.starts_with("Option<") {
                            "optional"
                        } else {
                            "**required**"
                        },
                        f.doc.replace('|', "\\|")
                    ));
                }
                out.push('\n');
            }
        }
    }
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
    let tagged = parse_tagged(&sources());
    let mut tagged_children = Vec::new();
    for f in &s.fields {
        let child = nested(&f.ty, structs);
        let inner =
            f.ty.strip_prefix("Option<")
                .map_or(f.ty.as_str(), |t| t.trim_end_matches('>'));
        let tag = tagged.get_key_value(inner);
        let ty = match child {
            Some((_, true)) => "array of tables".to_owned(),
            Some(_) => "table".to_owned(),
            None if tag.is_some() => "table".to_owned(),
            None => f.ty.replace('|', "\\|"),
        };
        if let Some((name, t)) = tag {
            tagged_children.push((f.key.clone(), name.clone(), t.clone()));
        }
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
    for (key, name, t) in tagged_children {
        render_tagged(out, &format!("{path}.{key}"), &name, &t, &sources());
    }
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
    let structs = parse_structs(&sources(), false);
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
    let structs = parse_structs(&sources(), false);
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

#[test]
fn every_documented_algorithm_and_its_keys_are_known_to_the_parser() {
    let src = sources();
    let tagged = parse_tagged(&src);
    let limit = &tagged["LimitConfig"];
    let payloads = parse_structs(&src, true);
    let tags: Vec<&str> = limit.variants.iter().map(|v| v.tag.as_str()).collect();
    assert_eq!(tags, tailwater_core::names::AlgorithmName::NAMES);
    for v in &limit.variants {
        let mut toml = format!(
            "[[route]]\nupstream = \"http://127.0.0.1:9\"\n[route.limit]\nalgorithm = \"{}\"\n",
            v.tag
        );
        let fields = v
            .payload
            .as_ref()
            .map_or(&[][..], |p| &payloads[p].fields[..]);
        for f in fields {
            let value = match f.ty.as_str() {
                "Option<Duration>" => "\"2s\"",
                "Option<f64>" => "0.9",
                _ => "10",
            };
            toml.push_str(&format!("{} = {value}\n", f.key));
        }
        tailwater_proxy::Config::from_toml(&toml, Some(Path::new("t.toml")))
            .unwrap_or_else(|e| panic!("{}: {e}", v.tag));
    }
}
