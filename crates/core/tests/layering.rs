//! The core's modules import one way: shared nouns and leaves at the bottom, upstream clients
//! above them, then the domain, the reconcile loop, the handlers, and the wiring on top. A
//! module may use only modules of a lower layer (or its own), so no import circle can form.
//! Read from the sources: `crate::MODULE` paths outside `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first. Each module's layer; a module may import from strictly lower layers only.
const LAYERS: &[&[&str]] = &[
    // Shared nouns and leaves: depend on nothing of ours.
    &["model", "pii", "http", "telemetry"],
    &["upstream"],
    // Upstream clients.
    &["kktix", "notify", "remote", "contacts", "campaign"],
    &["access", "mail", "selection", "deidentify"],
    // The domain.
    &["intake"],
    &["store", "aws"],
    &["sales", "report", "metrics"],
    &["reconcile"],
    // Handlers.
    &["discord"],
    &["api"],
    // Wiring.
    &["config"],
    &["app"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::NAME` occurrences in code (not comments), outside the unit-test module.
fn imports(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = tail;
        }
    }
    found
}

#[test]
fn every_import_points_down_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for import in imports(&text) {
            if import != top {
                graph.entry(top.clone()).or_default().insert(import);
            }
        }
    }
    let mut problems = Vec::new();
    for (module, uses) in &graph {
        let Some(own) = layer_of(module) else {
            problems.push(format!("module `{module}` has no layer in LAYERS"));
            continue;
        };
        for used in uses {
            match layer_of(used) {
                Some(layer) if layer < own => {}
                Some(_) => problems.push(format!(
                    "`{module}` imports `{used}`, which is not in a lower layer"
                )),
                None => problems.push(format!("`{module}` imports unknown `{used}`")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The leaves really are leaves.
    for leaf in LAYERS[0] {
        assert!(
            graph.get(*leaf).is_none_or(|uses| uses.is_empty()),
            "`{leaf}` must depend on nothing of ours: {:?}",
            graph.get(*leaf)
        );
    }
}
