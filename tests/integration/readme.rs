//! The README's configuration table and the CLI's own settings never disagree: every
//! `ARCHIVER_*` variable the commands accept is documented, and nothing documented is
//! unknown to them.

use std::collections::BTreeSet;

use crate::support::{archiver, repo_root, run};

/// `ARCHIVER_*` names in `text`, as clap prints them (`[env: NAME=...]` or `[env: NAME]`).
fn env_names_in_help(text: &str) -> BTreeSet<String> {
    // clap may wrap a long `[env: NAME=value]` after the colon.
    text.split("[env:")
        .skip(1)
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_matches_the_cli() {
    let mut accepted = BTreeSet::new();
    for command in [
        "worker", "archive", "refetch", "get", "topology", "validate", "webhook", "list", "erase", "audit",
    ] {
        let mut help = archiver();
        help.args([command, "--help"]).env("COLUMNS", "400");
        let output = run(help, None);
        assert_eq!(output.status.code(), Some(0), "archiver {command} --help");
        accepted.extend(env_names_in_help(&String::from_utf8_lossy(&output.stdout)));
    }
    assert!(
        accepted.contains("ARCHIVER_S3_BUCKET"),
        "clap's help format changed: {accepted:?}"
    );

    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let documented: BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `ARCHIVER_"))
        .map(|rest| format!("ARCHIVER_{}", rest.split('`').next().unwrap_or_default()))
        .collect();

    let undocumented: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        undocumented.is_empty(),
        "settings missing from README.md's table: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "README.md documents settings the CLI does not have: {unknown:?}"
    );
}
