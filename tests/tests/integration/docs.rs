//! The documentation stands alone and keeps in step with the code.

use std::process::Command;

use streamreel_tests::repo_root;

fn read(relative: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(repo_root().join(relative))?)
}

#[test]
fn no_tracked_file_refers_outside_the_repository() -> anyhow::Result<()> {
    let output = Command::new("git")
        .current_dir(repo_root())
        .args([
            "grep",
            "-l",
            "-F",
            &format!("..{}shared", '/'),
            "--",
            ".",
            ":!*.lock",
        ])
        .output()?;
    let found = String::from_utf8_lossy(&output.stdout);
    assert!(
        found.trim().is_empty(),
        "files referring outside the repository:\n{found}"
    );
    Ok(())
}

#[test]
fn the_contract_documents_every_config_key_and_route() -> anyhow::Result<()> {
    let contract = read("docs/contract.md")?;
    let template = read("cluster-config/template.toml")?;
    for line in template.lines() {
        let line = line.trim_start_matches('#').trim();
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(' ') {
            continue;
        }
        assert!(
            contract.contains(&format!("`{key}`")),
            "docs/contract.md does not document the config key `{key}`"
        );
    }
    for file in ["admin.rs", "live.rs"] {
        let source = read(&format!("node/src/http/{file}"))?;
        for route in source.split(".route(\"").skip(1) {
            let path = route.split('"').next().unwrap_or_default();
            assert!(
                contract.contains(path),
                "docs/contract.md does not document the route {path}"
            );
        }
    }
    Ok(())
}
