use std::collections::HashMap;
use std::fs;
use std::path::Path;

use super::*;

fn pp(text: &str) -> Preprocessed {
    pp_with(text, &Options::default())
}

fn pp_with(text: &str, opts: &Options) -> Preprocessed {
    match preprocess_str("test.cfg", text, opts) {
        Ok(p) => p,
        Err(errs) => panic!("unexpected errors: {errs:#?}"),
    }
}

fn errs(text: &str) -> Vec<PreprocessError> {
    errs_with(text, &Options::default())
}

fn errs_with(text: &str, opts: &Options) -> Vec<PreprocessError> {
    match preprocess_str("test.cfg", text, opts) {
        Ok(p) => panic!("expected errors, got text:\n{}", p.text),
        Err(e) => e,
    }
}

/// Output with blank lines removed, to compare the meaningful text.
fn code(p: &Preprocessed) -> String {
    p.text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_err(text: &str) -> PreprocessError {
    let e = errs(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

#[test]
fn define_and_substitute_whole_identifiers() {
    let p = pp(
        "#!define FLT_ACC 1\nmodparam(\"acc\", \"db_flag\", FLT_ACC)\nx = FLT_ACCX; y=FLT_ACC+1;\n",
    );
    assert_eq!(
        code(&p),
        "modparam(\"acc\", \"db_flag\", 1)\nx = FLT_ACCX; y=1+1;"
    );
    // directive lines become empty lines: line numbers are preserved
    assert_eq!(p.text.lines().count(), 3);
    assert!(p.defines.is_defined("FLT_ACC"));
    assert_eq!(p.defines.value("FLT_ACC"), Some("1"));
}

#[test]
fn no_substitution_in_strings_comments_and_pvs() {
    let p = pp(concat!(
        "#!define X 42\n",
        "a = \"X\"; b = 'X'; # X\n",
        "// X\n",
        "/* X\n X */ c = X;\n",
        "$var(X) = $X; $(avp(X)) = X;\n",
        "\"esc \\\" X\" X\n",
    ));
    assert_eq!(
        code(&p),
        concat!(
            "a = \"X\"; b = 'X'; # X\n",
            "// X\n",
            "/* X\n X */ c = 42;\n",
            "$var(X) = $X; $(avp(X)) = 42;\n",
            "\"esc \\\" X\" 42",
        )
    );
}

#[test]
fn quoted_define_values_keep_quotes() {
    let p = pp("#!define DBURL \"mysql://kamailio:kamailiorw@localhost/kamailio\"\nmodparam(\"usrloc\",\"db_url\",DBURL)\n");
    assert_eq!(
        code(&p),
        "modparam(\"usrloc\",\"db_url\",\"mysql://kamailio:kamailiorw@localhost/kamailio\")"
    );
}

#[test]
fn define_without_value_expands_to_nothing() {
    let p = pp("#!define WITH_X\na WITH_X b\n");
    assert_eq!(code(&p), "a  b");
    assert_eq!(p.defines.value("WITH_X"), None);
    assert!(p.defines.is_defined("WITH_X"));
}

#[test]
fn values_expand_recursively_at_use() {
    let p = pp("#!define A B + 1\n#!define B C\n#!define C 7\nx = A;\n#!redefine C 8\ny = A;\n");
    assert_eq!(code(&p), "x = 7 + 1;\ny = 8 + 1;");
}

#[test]
fn recursive_define_is_an_error() {
    let e = one_err("#!define A B\n#!define B A\n  x = A;\n");
    assert_eq!((e.line, e.column), (3, 7));
    assert!(e.message.contains("A -> B -> A"), "{}", e.message);
}

#[test]
fn multiline_define() {
    let p = pp("#!define LONG a \\\n  b \\\n  c\nx LONG y\nz\n");
    assert_eq!(p.defines.value("LONG"), Some("a   b   c"));
    assert_eq!(code(&p), "x a   b   c y\nz");
    // consumed continuation lines keep their newlines
    let loc = p.map.locate(p.text.find('z').unwrap());
    assert_eq!((loc.line, loc.column), (5, 1));
}

#[test]
fn define_twice_is_an_error_trydef_and_redefine_are_not() {
    let e = one_err("#!define A 1\n#!define A 2\n");
    assert_eq!((e.line, e.column), (2, 10));
    assert!(e.message.contains("already defined"), "{}", e.message);
    assert!(e.message.contains("test.cfg:1"), "{}", e.message);

    let p = pp("#!define A 1\n#!trydef A 2\n#!trydef B 3\nA B\n#!redefine A 4\n#!redef B\nA B\n");
    assert_eq!(code(&p), "1 3\n4 ");
}

#[test]
fn short_forms_and_legacy_prefix() {
    let p = pp("!!define A 1\n#!def B 2\n!!ifdef A\nA B\n!!endif\n");
    assert_eq!(code(&p), "1 2");
}

#[test]
fn undef() {
    let p = pp("#!define A 1\n#!undef A\nA\n#!tryundef Q\n#!ifndef A\nok\n#!endif\n");
    assert_eq!(code(&p), "A\nok");
    let e = one_err("#!undef NOPE\n");
    assert_eq!((e.line, e.column), (1, 9));
}

#[test]
fn ifdef_nesting_and_else() {
    let text = concat!(
        "#!define A\n",
        "#!ifdef A\n",
        "a\n",
        "  #!ifdef B\n",
        "ab\n",
        "    #!define SKIPPED 1\n",
        "    #!ifndef A\n",
        "never\n",
        "    #!else\n",
        "never2\n",
        "    #!endif\n",
        "  #!else\n",
        "a-not-b\n",
        "  #!endif\n",
        "#!else\n",
        "not-a\n",
        "#!endif\n",
        "end\n",
    );
    let p = pp(text);
    assert_eq!(code(&p), "a\na-not-b\nend");
    assert!(!p.defines.is_defined("SKIPPED"));
    assert_eq!(p.text.lines().count(), 18);
    let loc = p.map.locate(p.text.find("end").unwrap());
    assert_eq!((loc.line, loc.column), (18, 1));
}

#[test]
fn skipped_blocks_ignore_other_directives_and_bad_includes() {
    let p = pp("#!ifdef NOPE\n#!define A 1\n#!undef NEVER\ninclude_file \"/does/not/exist\"\n#!subst \"/(/x/\"\n#!endif\nA\n");
    assert_eq!(code(&p), "A");
}

#[test]
fn conditional_errors_have_locations() {
    let e = one_err("a\n#!endif\n");
    assert_eq!((e.line, e.column), (2, 1));
    let e = one_err("a\n  #!else\n");
    assert_eq!((e.line, e.column), (2, 3));
    let e = one_err("#!ifdef A\nx\n#!else\n#!else\n#!endif\n");
    assert_eq!(e.line, 4);
    let e = one_err("x\n\t#!ifndef A\nb\n");
    assert_eq!((e.line, e.column), (2, 2));
    assert!(e.message.contains("not closed"), "{}", e.message);
    let e = one_err("#!ifdef A-B\n#!endif\n");
    assert_eq!((e.line, e.column), (1, 10));
    let e = one_err("#!ifdef A # comment\n#!endif\n");
    assert_eq!((e.line, e.column), (1, 11));
    let e = one_err("#!ifdef A\n#!endif // c\n");
    assert_eq!((e.line, e.column), (2, 9));
}

#[test]
fn error_display() {
    let e = one_err("x\n\t#!undef  NOPE\n");
    assert_eq!(
        e.to_string(),
        "test.cfg:2:11: error: `NOPE` is not defined, cannot undefine it (use #!tryundef)\n  | \t#!undef  NOPE\n  | \t         ^"
    );
}

#[test]
fn unknown_bang_lines_are_comments() {
    let p = pp("#!KAMAILIO\n#!foo bar\nx\n");
    assert_eq!(code(&p), "#!KAMAILIO\n#!foo bar\nx");
}

#[test]
fn directives_inside_block_comments_are_ignored() {
    let p = pp("/*\n#!define A 1\n*/\nA\n");
    assert_eq!(code(&p), "/*\n#!define A 1\n*/\nA");
    assert!(!p.defines.is_defined("A"));
    // nested block comments, as in Kamailio
    let p = pp("/* /* */\n#!define A 1\n*/ A\n");
    assert!(!p.defines.is_defined("A"));
}

#[test]
fn subst_rewrites_strings_and_pvs_only() {
    let p = pp(concat!(
        "#!subst \"/MY_HOST/example.com/g\"\n",
        "a = \"sip:MY_HOST;x=MY_HOST\"; MY_HOST; # MY_HOST\n",
        "$var(MY_HOST) = 'MY_HOST';\n",
    ));
    assert_eq!(
        code(&p),
        "a = \"sip:example.com;x=example.com\"; MY_HOST; # MY_HOST\n$var(example.com) = 'example.com';"
    );
    assert!(!p.defines.is_defined("MY_HOST"));
}

#[test]
fn substdef_defines_and_substitutes() {
    let p = pp(concat!(
        "#!substdef \"!MY_IP_ADDR!127.0.0.1!g\"\n",
        "#!substdefs \"|MY_DOMAIN|example\\.com|\"\n",
        "listen=udp:MY_IP_ADDR:5060\n",
        "alias=\"MY_IP_ADDR\" d=MY_DOMAIN s=\"MY_DOMAIN MY_DOMAIN\"\n",
    ));
    assert_eq!(p.defines.value("MY_IP_ADDR"), Some("127.0.0.1"));
    assert_eq!(p.defines.value("MY_DOMAIN"), Some("\"example\\.com\""));
    assert_eq!(
        code(&p),
        "listen=udp:127.0.0.1:5060\nalias=\"127.0.0.1\" d=\"example\\.com\" s=\"example.com MY_DOMAIN\""
    );
}

#[test]
fn subst_flags_and_backrefs() {
    let p = pp("#!subst \"/(a+)b/<\\1>/i\"\nx = \"AAbab\";\n#!subst \"#x#y#g\"\ny = \"xx\";\n");
    assert_eq!(code(&p), "x = \"<AA>ab\";\ny = \"yy\";");
}

#[test]
fn subst_errors() {
    let e = one_err("\n#!subst \"/a(/b/\"\n");
    assert_eq!((e.line, e.column), (2, 9));
    assert!(
        e.message.contains("bad regular expression"),
        "{}",
        e.message
    );
    let e = one_err("#!subst \"/a/b/z\"\n");
    assert!(e.message.contains("flag"), "{}", e.message);
    let e = one_err("#!subst /a/b/\n");
    assert_eq!((e.line, e.column), (1, 9));
}

#[test]
fn defenv() {
    let opts = Options {
        env: Some(HashMap::from([
            ("HOME_IP".to_string(), "10.0.0.1".to_string()),
            ("SHELL".to_string(), "/bin/sh".to_string()),
        ])),
        ..Options::default()
    };
    let p = pp_with(
        "#!defenv IP=HOME_IP\n#!defenvs SHELL\n#!trydefenv NOPE\n#!trydefenvs Q=NOPE\nIP SHELL NOPE\n",
        &opts,
    );
    assert_eq!(code(&p), "10.0.0.1 \"/bin/sh\" NOPE");
    let e = errs_with("x\n#!defenv X=NOPE\n", &opts);
    assert_eq!((e[0].line, e[0].column), (2, 10));
    assert!(e[0].message.contains("NOPE"));
}

#[test]
fn defexp_and_ifexp() {
    let p = pp(concat!(
        "#!define N 4\n",
        "#!defexp TWICE N * 2\n",
        "#!defexps ADDR \"udp:\" + \"1.2.3.4\"\n",
        "#!defexp SUM (1 + 2) * 3\n",
        "#!ifexp TWICE > 7 && defined_nope == 0\n",
        "yes TWICE ADDR SUM\n",
        "#!else\n",
        "no\n",
        "#!endif\n",
    ));
    assert_eq!(code(&p), "yes 8 \"udp:1.2.3.4\" 9");
    let e = one_err("#!defexp X 1 +\n");
    assert_eq!((e.line, e.column), (1, 12));
}

#[test]
fn command_line_defines() {
    let mut opts = Options::default();
    opts.define_arg("WITH_MYSQL")
        .define_arg("DBURL=\"sqlite:///x.db\"")
        .define_arg("EMPTY=");
    let p = pp_with(
        "#!ifdef WITH_MYSQL\n#!trydef DBURL \"mysql://x\"\n#!endif\nmodparam(\"a\",\"db_url\",DBURL) EMPTY.\n",
        &opts,
    );
    assert_eq!(code(&p), "modparam(\"a\",\"db_url\",\"sqlite:///x.db\") .");
    assert_eq!(
        p.defines.get("DBURL").unwrap().origin,
        DefineOrigin::CommandLine
    );
    // a plain #!define of a command-line name is an error, as in Kamailio
    let e = errs_with("#!define WITH_MYSQL\n", &opts);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].message.contains("on the command line"),
        "{}",
        e[0].message
    );
    let mut dup = Options::default();
    dup.define_arg("A").define_arg("A=1");
    let e = errs_with("", &dup);
    assert_eq!(e[0].line, 0);
}

#[test]
fn source_map_exact_and_substituted() {
    let text = "#!define LONGNAME v\nab LONGNAME cd \"s\"\n";
    let p = pp(text);
    assert_eq!(p.text, "\nab v cd \"s\"\n");
    let at = |needle: &str| p.map.locate(p.text.find(needle).unwrap());
    let l = at("ab");
    assert_eq!((l.line, l.column, l.exact), (2, 1, true));
    let l = at("v");
    assert_eq!((l.line, l.column, l.exact), (2, 4, false));
    let l = at("cd");
    assert_eq!((l.line, l.column, l.exact), (2, 13, true));
    assert_eq!(p.map.source_line(&l), Some("ab LONGNAME cd \"s\""));
    assert_eq!(l.file, Path::new("test.cfg"));
    // columns count characters, not bytes
    let p = pp("\"é\" x\n");
    let l = p.map.locate(p.text.find('x').unwrap());
    assert_eq!(l.column, 5);
}

#[test]
fn line_continuation_becomes_space() {
    let p = pp("a \\\nb\n");
    assert_eq!(p.text, "a  \nb\n");
}

#[test]
fn unterminated_string_is_reported() {
    let e = one_err("x\n  a = \"abc\n");
    assert_eq!((e.line, e.column), (2, 7));
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn includes_relative_to_includer_with_source_map() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "main.cfg", "#!define A 1\ninclude_file \"sub/inc.cfg\" # trailing\nafter\n#!include_file \"sub/inc2.cfg\"\n");
    write(d, "sub/inc.cfg", "#!define B 2\nin A B");
    // relative to its own directory (sub/), not main's
    write(d, "sub/inc2.cfg", "import_file \"deeper.cfg\"\n");
    write(d, "sub/deeper.cfg", "deep B\n");
    let p = preprocess_file(&d.join("main.cfg"), &Options::default()).unwrap();
    assert_eq!(code(&p), "in 1 2\n # trailing\nafter\ndeep 2");
    let l = p.map.locate(p.text.find("in").unwrap());
    assert_eq!(l.file, d.join("sub/inc.cfg"));
    assert_eq!((l.line, l.column), (2, 1));
    assert_eq!(p.map.source_line(&l), Some("in A B"));
    let l = p.map.locate(p.text.find("after").unwrap());
    assert_eq!(
        (l.file.as_path(), l.line),
        (d.join("main.cfg").as_path(), 3)
    );
    let l = p.map.locate(p.text.find("deep").unwrap());
    assert_eq!(l.file, d.join("sub/deeper.cfg"));
    assert_eq!(p.map.files().count(), 4);
}

#[test]
fn import_tolerates_missing_include_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ok.cfg", "import_file \"kamailio-local.cfg\"\nx\n");
    let p = preprocess_file(&d.join("ok.cfg"), &Options::default()).unwrap();
    assert_eq!(code(&p), "x");
    write(d, "bad.cfg", "x\n  include_file \"missing.cfg\"\n");
    let e = preprocess_file(&d.join("bad.cfg"), &Options::default()).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].line, e[0].column), (2, 16));
    assert_eq!(e[0].file, d.join("bad.cfg"));
    assert!(e[0].message.contains("missing.cfg"), "{}", e[0].message);
}

#[test]
fn include_errors_point_into_included_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "main.cfg", "include_file \"inc.cfg\"\n");
    write(d, "inc.cfg", "\n\n#!endif\n");
    let e = preprocess_file(&d.join("main.cfg"), &Options::default()).unwrap_err();
    assert_eq!(e[0].file, d.join("inc.cfg"));
    assert_eq!((e[0].line, e[0].column), (3, 1));
}

#[test]
fn include_cycle_and_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.cfg", "include_file \"b.cfg\"\n");
    write(d, "b.cfg", "include_file \"a.cfg\"\n");
    let e = preprocess_file(&d.join("a.cfg"), &Options::default()).unwrap_err();
    assert!(e[0].message.contains("includes itself"), "{}", e[0].message);
    assert_eq!(e[0].file, d.join("b.cfg"));

    for i in 0..5 {
        write(
            d,
            &format!("n{i}.cfg"),
            &format!("include_file \"n{}.cfg\"\n", i + 1),
        );
    }
    write(d, "n5.cfg", "leaf\n");
    let opts = Options {
        max_include_depth: 3,
        ..Options::default()
    };
    let e = preprocess_file(&d.join("n0.cfg"), &opts).unwrap_err();
    assert!(
        e[0].message.contains("too many nested includes"),
        "{}",
        e[0].message
    );
    assert_eq!(e[0].file, d.join("n3.cfg"));
    let p = preprocess_file(&d.join("n0.cfg"), &Options::default()).unwrap();
    assert_eq!(code(&p), "leaf");
}

#[test]
fn include_dirs_and_subst_in_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "lib/common.cfg", "common\n");
    let opts = Options {
        include_dirs: vec![d.join("lib")],
        ..Options::default()
    };
    let p = pp_with(
        "#!subst \"/@NAME@/common/\"\ninclude_file \"@NAME@.cfg\"\n",
        &opts,
    );
    assert_eq!(code(&p), "common");
}

/// The distribution's stock config must preprocess with no feature defines
/// and with every `WITH_*` feature it tests for.
#[test]
fn stock_kamailio_cfg() {
    let path = Path::new("/etc/kamailio/kamailio.cfg");
    if !path.exists() {
        eprintln!("note: {} not installed, skipping", path.display());
        return;
    }
    let text = fs::read_to_string(path).unwrap();
    let p = preprocess_file(path, &Options::default()).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(p.text.contains("request_route"));
    assert!(p.defines.is_defined("FLT_ACC"));

    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("#!ifdef ")
                .or_else(|| l.strip_prefix("#!ifndef "))
        })
        .map(str::trim)
        .filter(|n| n.starts_with("WITH_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(!names.is_empty());
    let mut opts = Options::default();
    for n in &names {
        opts.define_arg(n);
    }
    let p = preprocess_file(path, &opts).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(p.defines.is_defined("DBURL"));
    assert!(!p
        .text
        .lines()
        .any(|l| l.trim_start().starts_with("#!ifdef")));
}

#[test]
fn crlf_line_endings() {
    let p = pp("#!define A 1\r\n#!ifdef A\r\nx A\r\n#!endif\r\n");
    assert_eq!(p.defines.value("A"), Some("1"));
    // directive lines keep only their newline; text lines keep their CR
    assert_eq!(p.text, "\n\nx 1\r\n\n");
}
