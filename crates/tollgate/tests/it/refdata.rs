//! `tollgate refdata`: reference data is versioned history; every change names who made it;
//! applying the same file twice changes nothing; a bad file names the entry and field.

use crate::support::{Sandbox, path_str};

const FILE: &str = r#"
[[api_key]]
key = "key_search_prod"
team = "team-search"
cost_center = "CC-1001"

[[project]]
key = "proj_abc"
team = "team-support"

[[model]]
key = "gpt-4o-2024-08-06"
model = "gpt-4o"
provider = "openai"

[[approver]]
key = "key_cfo"
"#;

#[test]
fn changes_are_logged_with_who_and_versions_and_imports_are_idempotent() {
    let sb = Sandbox::new();
    let f = sb.write("ref.toml", FILE);
    let out = sb.run(&["refdata", "import", path_str(&f), "--by", "ana"]);
    assert!(
        out.ok()
            .contains("4 entries, 4 changes recorded, 0 unchanged"),
        "{}",
        out.stdout
    );
    // The same file again records nothing.
    let again = sb.run(&["refdata", "import", path_str(&f), "--by", "ana"]);
    assert!(
        again.ok().contains("0 changes recorded, 4 unchanged"),
        "{}",
        again.stdout
    );
    // A key moves to another team: a new version; the old one stays in the history.
    sb.run(&[
        "refdata",
        "set",
        "api_key",
        "key_search_prod",
        "--team",
        "team-growth",
        "--cost-center",
        "CC-1004",
        "--by",
        "ben",
    ])
    .ok();
    let list = sb
        .run(&["refdata", "list", "--kind", "api_key", "--format", "json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["team"], "team-growth");
    assert_eq!(list[0]["changed_by"], "ben");
    // As of version 4 (the import's last row) the key still belonged to search.
    let then = sb
        .run(&[
            "refdata", "list", "--kind", "api_key", "--as-of", "4", "--format", "json",
        ])
        .json();
    assert_eq!(then[0]["team"], "team-search");
    assert_eq!(then[0]["changed_by"], "ana");
    let hist = sb
        .run(&[
            "refdata",
            "history",
            "--key",
            "key_search_prod",
            "--format",
            "json",
        ])
        .json();
    let who: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["changed_by"].as_str().unwrap())
        .collect();
    assert_eq!(who, vec!["ana", "ben"]);
    // Removing is a change too.
    sb.run(&["refdata", "remove", "project", "proj_abc", "--by", "ben"])
        .ok();
    let list = sb.run(&["refdata", "list", "--format", "json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(sb.sql("SELECT COUNT(*) AS n FROM refdata")[0]["n"], 6);
}

#[test]
fn a_bad_entry_names_the_file_entry_and_field_and_writes_nothing() {
    let sb = Sandbox::new();
    let f = sb.write(
        "bad.toml",
        "[[api_key]]\nkey = \"k1\"\nteam = \"a\"\n[[model]]\nkey = \"gpt-x\"\nmodel = \"gpt-4o\"\n",
    );
    let err = sb
        .run(&["refdata", "import", path_str(&f)])
        .fails()
        .to_string();
    assert!(
        err.contains("bad.toml: model[0].provider: missing"),
        "{err}"
    );
    let list = sb.run(&["refdata", "list", "--format", "json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 0);
    let err = sb
        .run(&["refdata", "set", "team", "k1"])
        .fails()
        .to_string();
    assert!(
        err.contains("unknown reference data kind \"team\""),
        "{err}"
    );
}
