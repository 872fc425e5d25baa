//! The layout holds: no import circle between the top-level modules of
//! `src/`, and none between files; no source file over 700 lines.
//!
//! Dependencies are read from the `crate::` and `super::` paths of the source,
//! unit-test modules left out (tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Module path of a source file: `src/registry/db.rs` is `["registry", "db"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(SRC).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::a::b` and `super::c` paths used by one file, as module paths.
fn paths_used(module: &[String], code: &str) -> Vec<Vec<String>> {
    // `super` of module `a::b` (`a/b.rs` or `a/b/mod.rs`) is `a`.
    let parent = module[..module.len().saturating_sub(1)].to_vec();
    let mut found = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        for (i, _) in code.match_indices(prefix) {
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            let mut path = base.clone();
            path.extend(
                rest.split("::")
                    .map(|s| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_'))
                    .map(String::from_iter)
                    .take_while(|s| !s.is_empty()),
            );
            found.push(path);
        }
    }
    found
}

/// The dependency graph between modules cut to `depth` path segments.
fn graph(depth: usize) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    sources(Path::new(SRC), &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        let text = code(&fs::read_to_string(file).unwrap());
        for path in paths_used(&me, &text) {
            // The longest prefix of the path that is a module of a file.
            let Some(target) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let (from, to) = (cut(&me, depth), cut(&target, depth));
            if from != to && !from.is_empty() && !to.is_empty() {
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    edges
}

fn cut(module: &[String], depth: usize) -> Vec<String> {
    module[..module.len().min(depth)].to_vec()
}

/// A cycle of the graph, if there is one (depth-first search).
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, bool>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        state.insert(node.clone(), false);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(false) => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle: Vec<String> =
                        stack[start..].iter().map(|m| m.join("::")).collect();
                    cycle.push(next.join("::"));
                    return Some(cycle);
                }
                Some(true) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node)
            && let Some(c) = visit(node, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let edges = graph(1);
    assert!(
        edges.contains_key(&vec!["web".to_string()]),
        "the graph was not read"
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn no_import_circle_between_files() {
    if let Some(cycle) = find_cycle(&graph(usize::MAX)) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn web_writes_no_sql_and_calls_no_cli_code() {
    let edges = graph(1);
    let web = &edges[&vec!["web".to_string()]];
    assert!(!web.contains(&vec!["cli".to_string()]), "web uses cli");
    let mut files = Vec::new();
    sources(&Path::new(SRC).join("web"), &mut files);
    for file in files {
        let text = code(&fs::read_to_string(&file).unwrap());
        assert!(
            !text.contains("sqlx::query") && !text.contains("rusqlite"),
            "{} runs SQL",
            file.display()
        );
    }
}

#[test]
fn no_source_file_over_700_lines() {
    let mut files = Vec::new();
    sources(Path::new(SRC), &mut files);
    for file in files {
        let lines = fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 700, "{} has {lines} lines", file.display());
    }
}
