use super::*;

const SRC: &str = "[server]\nmax_connections = 5\n\n[[route]]\nname = \"a\"\n\n[[route]]\nname = \"b\"\n[route.limit]\nmin_limit = 9\n[[route.rate_limit]]\nrate = 1\n[[route.rate_limit]]\nrate = 0\n";

#[test]
fn finds_keys_in_array_tables() {
    assert_eq!(find_field(SRC, "server.max_connections"), Some((2, 1)));
    assert_eq!(find_field(SRC, "route[1].name"), Some((8, 1)));
    assert_eq!(find_field(SRC, "route[1].limit.min_limit"), Some((10, 1)));
    assert_eq!(
        find_field(SRC, "route[1].rate_limit[1].rate"),
        Some((14, 1))
    );
    // Unset key: the table's header.
    assert_eq!(find_field(SRC, "route[1].limit.max_limit"), Some((9, 1)));
}

#[test]
fn inline_tables_point_at_the_key() {
    let src = "[[route]]\nlimit = { min_limit = 9, max_limit = 2 }\n";
    assert_eq!(find_field(src, "route[0].limit.max_limit"), Some((2, 26)));
}

#[test]
fn line_and_column_of_offsets() {
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("ab", 0), (1, 1));
}

#[test]
fn columns_count_characters_after_multi_byte_utf8() {
    // "é" is two bytes, "→" three, "🦀" four: the column is in characters.
    let src = "[server]\nname = \"é→🦀\" x = 1\n";
    let offset = src.find('x').unwrap();
    assert_eq!(offset, 9 + 10 + 9);
    assert_eq!(line_col(src, offset), (2, 14));
    // A byte offset inside a multi-byte character is that character's.
    let at = src.find('é').unwrap();
    assert_eq!(line_col(src, at + 1), line_col(src, at));
    assert_eq!(line_col(src, at), (2, 9));
    // Keys after multi-byte text on earlier lines keep their line.
    let src = "# ünïcödé\n[[route]]\nname = \"ß\"\nlimit = 0\n";
    assert_eq!(find_field(src, "route[0].limit"), Some((4, 1)));
    // An inline table after multi-byte text: the column of the key, in characters.
    let src = "[[route]]\nlimit = { note = \"ü\", max_limit = 2 }\n";
    assert_eq!(find_field(src, "route[0].limit.max_limit"), Some((2, 23)));
}

#[test]
fn field_at_names_the_key_on_the_line_with_its_table() {
    let src = "[server]\nmax_connections = 5\n[[route]]\nname = \"a\"\n[[route]]\nbogus = 1\n";
    assert_eq!(field_at(src, 2, "5"), "server.max_connections");
    assert_eq!(field_at(src, 6, "bogus"), "route[1].bogus");
    // A table's own error spans its header: the field is the table, indexed.
    let src = "[[route]]\nname = \"a\"\n[route.limit]\nlimit = 1\n[[route]]\n";
    assert_eq!(field_at(src, 3, "[route.limit]"), "route[0].limit");
    assert_eq!(field_at(src, 5, "[[route]]"), "route[1]");
}

#[test]
fn unknown_fields_fall_back_to_their_table() {
    let src = "name = \"x\"\n[[phase]]\nduration = \"1s\"\n[[phase]]\nduration = \"2s\"\n";
    // `load` is not written in phase[1]: its header's line.
    assert_eq!(find_field(src, "phase[1].load"), Some((4, 1)));
    assert_eq!(find_field(src, "name"), Some((1, 1)));
    assert_eq!(find_field(src, "nowhere.at_all"), None);
    assert_eq!(find_field(src, ""), None);
}
