//! The mechanical invariants of ARCHITECTURE.md, checked on the source:
//! - no module imports a module of a layer above its own, and the files' imports form no
//!   circle;
//! - only `src/store/` runs SQL;
//! - only the Microsoft client crate and `src/sink_http.rs` build HTTP clients;
//! - the Microsoft client and the simulator depend on no crate of the workspace.
//!
//! Unit tests (`#[cfg(test)] mod tests`, at the end of a file) are left out.

#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    reason = "tests: a failed unwrap is a failed test, and the numbers they cast are small"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The daemon's layers, bottom first: a module may import modules of lower layers, and
/// of its own layer as long as the files stay free of circles.
const LAYERS: &[&[&str]] = &[
    &["domain", "failpoint"],
    &["config"],
    &["crypto", "telemetry", "sink_http", "store", "notify"],
    &["context", "health", "target"],
    &["registry", "checks", "rotation", "alerts"],
    &["jobs", "scheduler", "http", "app"],
    &["cli"],
];

/// The features: each stands on the layers below, none imports another (what two of them
/// share lives below them: the outbox in the store, webhook signing in `sink_http`, opening
/// a sealed secret in `context`).
const FEATURES: &[&str] = &["registry", "checks", "rotation", "alerts"];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// The file's code without its unit tests and without comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `src/checks/run.rs` -> ["checks", "run"]; `src/store/mod.rs` -> ["store"].
fn module_path(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(Path::new(ROOT).join("src")).unwrap();
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The file a path like `crate::checks::verdict::State` lives in: the longest prefix that
/// is a module file.
fn resolve(segments: &[&str], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<PathBuf> {
    (1..=segments.len()).rev().find_map(|n| {
        let key: Vec<String> = segments[..n].iter().map(|s| s.to_string()).collect();
        modules.get(&key).cloned()
    })
}

/// The `crate::…` paths a file names, as segments (`crate::{a, b}` groups included).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let path: Vec<String> = item
                    .trim()
                    .split("::")
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if !path.is_empty() {
                    paths.push(path);
                }
            }
            continue;
        }
        let path: Vec<String> = rest
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .next()
            .unwrap_or("")
            .split("::")
            .filter(|s| !s.is_empty() && s.chars().next().is_some_and(|c| c.is_lowercase()))
            .map(str::to_string)
            .collect();
        if !path.is_empty() {
            paths.push(path);
        }
    }
    paths
}

#[test]
fn no_module_imports_a_layer_above_it_and_the_files_form_no_circle() {
    let sources = files(&Path::new(ROOT).join("src"));
    let modules: BTreeMap<Vec<String>, PathBuf> = sources
        .iter()
        .map(|file| (module_path(file), file.clone()))
        .collect();
    let mut upward = Vec::new();
    let mut sideways = Vec::new();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in &sources {
        let own = module_path(file);
        let Some(top) = own.first() else { continue };
        if top == "lib" || top == "main" {
            continue;
        }
        let own_layer = layer(top).unwrap_or_else(|| panic!("{top} has no layer in LAYERS"));
        for path in crate_paths(&code(file)) {
            let target = &path[0];
            if target == top {
                // Inside the module: only the file graph matters.
            } else if target == "microsoft" || target == "secret_buf" {
                continue; // the client crate, below everything
            } else {
                let target_layer = layer(target)
                    .unwrap_or_else(|| panic!("{}: crate::{target} has no layer", file.display()));
                if FEATURES.contains(&top.as_str()) && FEATURES.contains(&target.as_str()) {
                    sideways.push(format!(
                        "{} imports crate::{}",
                        file.display(),
                        path.join("::")
                    ));
                }
                if target_layer > own_layer {
                    upward.push(format!(
                        "{} imports crate::{}",
                        file.display(),
                        path.join("::")
                    ));
                }
            }
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(to) = resolve(&segments, &modules)
                && &to != file
            {
                edges.entry(file.clone()).or_default().insert(to);
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a lower layer up: {upward:#?}"
    );
    assert!(
        sideways.is_empty(),
        "one feature imports another: {sideways:#?}"
    );

    // Depth-first search for a circle among the files.
    fn visit(
        file: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        state: &mut BTreeMap<PathBuf, bool>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        match state.get(file) {
            Some(true) => return None,
            Some(false) => {
                let start = stack.iter().position(|f| f == file).unwrap();
                return Some(stack[start..].to_vec());
            }
            None => {}
        }
        state.insert(file.clone(), false);
        stack.push(file.clone());
        for next in edges.get(file).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, state, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        state.insert(file.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    for file in edges.keys() {
        let circle = visit(file, &edges, &mut state, &mut Vec::new());
        assert!(circle.is_none(), "an import circle: {circle:#?}");
    }
}

#[test]
fn only_the_store_runs_sql() {
    let mut found = Vec::new();
    for file in files(&Path::new(ROOT).join("src")) {
        if file.starts_with(Path::new(ROOT).join("src/store")) {
            continue;
        }
        let code = code(&file);
        for needle in ["sqlx::query", "sqlx::raw_sql", "sqlx::migrate!"] {
            if code.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "SQL outside src/store/: {found:#?}");
}

#[test]
fn only_the_microsoft_client_and_the_sinks_build_http_clients() {
    let mut found = Vec::new();
    for file in files(&Path::new(ROOT).join("src")) {
        if file.ends_with("src/sink_http.rs") {
            continue;
        }
        let code = code(&file);
        for needle in [
            "reqwest::Client::builder",
            "reqwest::Client::new",
            "ClientBuilder",
        ] {
            if code.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "HTTP clients outside kodo-microsoft and sink_http: {found:#?}"
    );
}

#[test]
fn the_microsoft_client_and_the_simulator_depend_on_no_crate_of_ours() {
    for manifest in ["crates/microsoft/Cargo.toml", "crates/simulator/Cargo.toml"] {
        let text = std::fs::read_to_string(Path::new(ROOT).join(manifest)).unwrap();
        let value: toml::Table = text.parse().unwrap();
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            for (name, spec) in value
                .get(section)
                .and_then(|s| s.as_table())
                .into_iter()
                .flatten()
            {
                assert!(
                    !name.starts_with("kodo") && spec.get("path").is_none(),
                    "{manifest} [{section}] {name} is a crate of the workspace"
                );
            }
        }
        // Nor does its code name one (its own library, from its binary, is its own).
        let own = if manifest.contains("simulator") {
            "kodo_simulator"
        } else {
            "kodo_microsoft"
        };
        let dir = Path::new(ROOT).join(manifest).parent().unwrap().join("src");
        for file in files(&dir) {
            let code = code(&file);
            for other in [
                "kodo_access",
                "kodo_microsoft",
                "kodo_simulator",
                "kodo_dev",
            ] {
                assert!(
                    other == own || !code.contains(&format!("{other}::")),
                    "{} names {other}, a crate of the workspace",
                    file.display()
                );
            }
        }
    }
}
