//! Named scenarios and properties for command templates.

use super::*;
use proptest::prelude::*;

fn words(ws: &[&str]) -> Vec<OsString> {
    ws.iter().map(OsString::from).collect()
}

fn render(ws: &[&str], values: &[&str]) -> Vec<String> {
    let t = Template::parse(&words(ws), values.len()).expect("valid template");
    let values: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
    t.render(&values, 7, 2).into_iter().map(|w| w.into_string().expect("utf-8")).collect()
}

#[test]
fn every_replacement_string() {
    let out = render(&["x", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}"], &["dir/a.tar.gz"]);
    assert_eq!(out, ["x", "dir/a.tar.gz", "dir/a.tar", "a.tar.gz", "dir", "a.tar", "7", "2"]);
}

#[test]
fn substitution_inside_a_word() {
    assert_eq!(
        render(&["convert", "{}", "{.}.png"], &["img/cat.jpg"]),
        ["convert", "img/cat.jpg", "img/cat.png"]
    );
    assert_eq!(render(&["--out=out/{/.}-{#}.txt"], &["a/b.c"]), ["--out=out/b-7.txt"]);
}

#[test]
fn no_replacement_appends_each_value() {
    assert_eq!(render(&["echo", "hi"], &["a b", "c"]), ["echo", "hi", "a b", "c"]);
}

#[test]
fn numbered_sources() {
    assert_eq!(render(&["{2}", "{1/}", "{}"], &["x/one", "two"]), ["two", "one", "x/one two"]);
}

#[test]
fn numbered_source_out_of_range_is_an_error() {
    let err = Template::parse(&words(&["echo", "{3}"]), 2).expect_err("only two sources");
    assert_eq!(err.to_string(), "replacement string {3} refers to input source 3, but there are only 2");
}

#[test]
fn unknown_braces_stay_literal() {
    assert_eq!(
        render(&["awk", "{print $1}", "{", "}{}", "{{}}"], &["v"]),
        ["awk", "{print $1}", "{", "}v", "{v}"]
    );
}

#[test]
fn dirname_and_extension_edge_cases() {
    assert_eq!(render(&["{//}", "{.}", "{/.}"], &["file"]), [".", "file", "file"]);
    assert_eq!(render(&["{//}", "{.}"], &["/top"]), ["/", "/top"]);
    assert_eq!(render(&["{.}", "{/.}"], &["dir.d/.bashrc"]), ["dir.d/.bashrc", ".bashrc"]);
}

#[test]
fn empty_command_is_an_error() {
    assert_eq!(Template::parse(&[], 1), Err(TemplateError::Empty));
}

#[test]
fn shell_mode_quotes_inputs() {
    let t = Template::parse(&words(&["echo", "{}", ">", "out"]), 1).expect("valid").shell(true);
    let argv = t.render(&[b"it's; rm -rf /".to_vec()], 1, 1);
    assert_eq!(argv[..2], [OsString::from("sh"), OsString::from("-c")]);
    assert_eq!(argv[2], OsString::from("echo 'it'\\''s; rm -rf /' > out"));
}

#[test]
fn shell_mode_really_passes_hostile_inputs_as_one_word() {
    let hostile = "a'b\"c $(touch /tmp/never) `x` ; | & \\ \n end";
    let t = Template::parse(&words(&["printf", "%s", "{}"]), 1).expect("valid").shell(true);
    let argv = t.render(&[hostile.as_bytes().to_vec()], 1, 1);
    let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().expect("sh runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
}

#[test]
fn display_shows_the_template() {
    let t = Template::parse(&words(&["convert", "{}", "{1.}.png", "{#}"]), 1).expect("valid");
    assert_eq!(t.display(), "convert {} {1.}.png {#}");
}

/// Undoes [`shell_quote`] the way `sh` reads single-quoted words.
fn unquote(quoted: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut i = 0;
    while i < quoted.len() {
        match (quoted[i], in_quotes) {
            (b'\'', _) => in_quotes = !in_quotes,
            (b'\\', false) => {
                i += 1;
                out.push(quoted[i]);
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    out
}

proptest! {
    #[test]
    fn a_standalone_placeholder_passes_any_bytes_through(value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let t = Template::parse(&words(&["cmd", "{}"]), 1).expect("valid");
        let argv = t.render(std::slice::from_ref(&value), 1, 1);
        prop_assert_eq!(argv.len(), 2);
        prop_assert_eq!(argv[1].as_encoded_bytes(), value.as_slice());
    }

    #[test]
    fn shell_quoting_round_trips(value in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(unquote(&shell_quote(&value)), value);
    }

    #[test]
    fn dirname_slash_basename_is_the_path(dir in "[a-z.]{1,8}(/[a-z.]{1,8}){0,3}", base in "[a-z.]{1,8}") {
        let path = format!("{dir}/{base}");
        let out = render(&["{//}", "{/}"], &[&path]);
        prop_assert_eq!(format!("{}/{}", out[0], out[1]), path);
    }

    #[test]
    fn no_extension_is_a_prefix(path in "[a-z./]{0,20}") {
        let out = render(&["{.}"], &[&path]);
        prop_assert!(path.starts_with(&out[0]));
    }
}
