//! The layers of `src/` (ARCHITECTURE.md, "Layers"): a module imports only from its own layer
//! or a lower one, and no two files import each other, directly or round a circle.
//!
//! The test reads every `src/**/*.rs` and collects the `crate::…` and `super::…` paths of each
//! line that is not a comment — in `use` declarations and in bodies alike, brace groups
//! expanded (`use crate::model::{event::Alarm, Device}`). Each path is resolved to the file
//! that defines its longest module prefix (`crate::model::event::Alarm` → `src/model/event.rs`,
//! `crate::model::Device` → `src/model/mod.rs`), and a file's layer is that of its top-level
//! module. A parent's relative paths into its own child modules (`mod x;` then `x::f` or
//! `pub use x::Y`) are not collected: a module split over files is one module to the rest of
//! the crate.
//!
//! **Test code is exempt** from both rules: `tests.rs` files and `#[cfg(test)] mod … { … }`
//! blocks may import from any layer (an engine test opens a journal, a config test loads a
//! file), since nothing but the test binary links them.
//!
//! `ALLOWED` lists the imports that still break a rule, each with why and where it should go;
//! an entry that no longer matches anything fails the test, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may import from its own layer and those before it.
const LAYERS: &[(&str, &[&str])] = &[
    // The vocabulary every layer shares, and utilities that import nothing of the gateway.
    (
        "ground floor",
        &["model", "clock", "backoff", "stats", "schema", "notify"],
    ),
    // Pure logic over readings and time (DESIGN §2): imports only the ground floor.
    ("core", &["core"]),
    // Configuration and the sources; `mqtt` is the MQTT plumbing the source and sink share.
    // They import one another (config builds Modbus bindings, the MQTT options read config's
    // settings): the cycle check keeps their files from going round in circles.
    // `encode` is the line-protocol and JSON forms that the stage, sinks, http and report share
    // (it reads `core::response` for an alarm's timeliness).
    (
        "config and sources",
        &["config", "source", "mqtt", "encode"],
    ),
    // The core stage, the sinks, the journal, and the replay of the tape into a journal (the
    // stage records the tape with `replay::Recorder`).
    (
        "stage and sinks",
        &["stage", "sink", "journal", "replay", "wal", "intake"],
    ),
    ("http and report", &["http", "report", "hub"]),
    ("wiring", &["run", "doctor"]),
    ("demo and simulator", &["demo", "sim"]),
    // The crate root declares every module; `main.rs` is the binary (it reaches the library
    // as `estate_gateway::…`).
    ("crate root and CLI", &["lib", "main"]),
];

/// Imports that still break a rule: (file, imported path as resolved, why). The path is the
/// absolute module path without `crate::`, as the failure message prints it.
const ALLOWED: &[(&str, &str, &str)] = &[];

/// One import: `file:line` refers to `path`, defined in `target`.
#[derive(Debug, Clone)]
struct Import {
    file: String,
    line: usize,
    path: String,
    target: String,
    in_test: bool,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as a path relative to `src/` with `/` separators.
fn rust_files(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, base, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(base).expect("under src");
            let parts: Vec<_> = rel.iter().map(|c| c.to_string_lossy()).collect();
            out.insert(parts.join("/"));
        }
    }
}

/// The module path of a file: `core/engine/time.rs` → `[core, engine, time]`,
/// `model/mod.rs` → `[model]`, `lib.rs` → `[]`.
fn module_of(file: &str) -> Vec<String> {
    let mut segs: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The top-level module a file belongs to (`lib` and `main` for the crate roots).
fn top_module(file: &str) -> &str {
    let first = file.split('/').next().unwrap_or(file);
    first.trim_end_matches(".rs")
}

/// The file defining the longest module prefix of `path`.
fn resolve(path: &[String], files: &BTreeSet<String>) -> String {
    for n in (1..=path.len()).rev() {
        let base = path[..n].join("/");
        for candidate in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if files.contains(&candidate) {
                return candidate;
            }
        }
    }
    "lib.rs".to_owned()
}

/// The paths that start at byte `i` of `s` (just after `crate::` or `super::`), under
/// `prefix`; brace groups are expanded. Returns the paths and where they end.
fn expand(s: &[u8], mut i: usize, prefix: &[String]) -> (Vec<Vec<String>>, usize) {
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let mut segs = prefix.to_vec();
    let mut out = Vec::new();
    loop {
        skip_ws(&mut i);
        if i < s.len() && s[i] == b'{' {
            i += 1;
            loop {
                let (sub, end) = expand(s, i, &segs);
                out.extend(sub);
                i = end;
                skip_ws(&mut i);
                match s.get(i) {
                    Some(b',') => {
                        i += 1;
                        skip_ws(&mut i);
                        if s.get(i) == Some(&b'}') {
                            return (out, i + 1);
                        }
                    }
                    Some(b'}') => return (out, i + 1),
                    // The group goes on past this line (or is malformed): take what we have.
                    _ => return (out, i),
                }
            }
        }
        let start = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
            i += 1;
        }
        if i == start {
            out.push(segs);
            return (out, i);
        }
        segs.push(String::from_utf8_lossy(&s[start..i]).into_owned());
        if s[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(segs);
            return (out, i);
        }
    }
}

/// The line numbers (1-based) of test code: all of a `tests.rs` file, else every
/// `#[cfg(test)] mod … {` block (to its closing brace, or the end of the file).
fn test_lines(file: &str, lines: &[&str]) -> BTreeSet<usize> {
    if file == "tests.rs" || file.ends_with("/tests.rs") {
        return (1..=lines.len()).collect();
    }
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < lines.len() {
        let opens_mod = |l: &str| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            l.starts_with("mod ") && l.trim_end().ends_with('{')
        };
        if lines[i].trim() == "#[cfg(test)]" && lines.get(i + 1).is_some_and(|l| opens_mod(l)) {
            let mut depth = 0i64;
            let mut j = i + 1;
            while j < lines.len() {
                if !lines[j].trim_start().starts_with("//") {
                    depth += lines[j].matches('{').count() as i64;
                    depth -= lines[j].matches('}').count() as i64;
                }
                out.insert(j + 1);
                if depth <= 0 {
                    break;
                }
                j += 1;
            }
            i = j;
        }
        i += 1;
    }
    out
}

/// Every import of every file under `src/`.
fn imports(files: &BTreeSet<String>) -> Vec<Import> {
    let src = src_dir();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(src.join(file)).expect("readable source");
        let lines: Vec<&str> = text.lines().collect();
        let tests = test_lines(file, &lines);
        let module = module_of(file);
        for (n, line) in lines.iter().enumerate() {
            let n = n + 1;
            if line.trim_start().starts_with("//") {
                continue;
            }
            let b = line.as_bytes();
            let in_test = tests.contains(&n);
            let starts = line
                .match_indices("crate::")
                .chain(line.match_indices("super::"));
            for (at, kw) in starts {
                // A whole word: not `my_crate::` nor the second `super::` of `super::super::`.
                if at > 0 && (b[at - 1].is_ascii_alphanumeric() || b"_:".contains(&b[at - 1])) {
                    continue;
                }
                let prefix: Vec<String> = if kw == "crate::" {
                    Vec::new()
                } else if in_test {
                    // `super` of an inline `mod tests` is the file's own module.
                    module.clone()
                } else {
                    module[..module.len().saturating_sub(1)].to_vec()
                };
                let (paths, _) = expand(b, at + kw.len(), &prefix);
                for p in paths {
                    let target = resolve(&p, files);
                    if target != *file {
                        out.push(Import {
                            file: file.clone(),
                            line: n,
                            path: p.join("::"),
                            target,
                            in_test,
                        });
                    }
                }
            }
        }
    }
    out
}

fn layer_of(file: &str) -> Option<(usize, &'static str)> {
    let top = top_module(file);
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, mods))| mods.contains(&top))
        .map(|(i, (name, _))| (i, *name))
}

fn allowed(i: &Import) -> bool {
    ALLOWED
        .iter()
        .any(|(file, path, _)| *file == format!("src/{}", i.file) && i.path.starts_with(path))
}

/// A circle in the file graph, found by depth-first search: the imports that go round it.
fn find_cycle(edges: &BTreeMap<&str, Vec<&Import>>) -> Option<Vec<Import>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        file: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a Import>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a Import>,
    ) -> Option<Vec<Import>> {
        marks.insert(file, Mark::Open);
        for &imp in edges.get(file).map_or(&[][..], Vec::as_slice) {
            match marks.get(imp.target.as_str()) {
                Some(Mark::Open) => {
                    let start = stack
                        .iter()
                        .position(|i| i.file == imp.target)
                        .unwrap_or(stack.len());
                    let mut cycle: Vec<Import> =
                        stack[start..].iter().map(|&i| i.clone()).collect();
                    cycle.push(imp.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    stack.push(imp);
                    if let Some(c) = visit(&imp.target, edges, marks, stack) {
                        return Some(c);
                    }
                    stack.pop();
                }
            }
        }
        marks.insert(file, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for &file in edges.keys() {
        if !marks.contains_key(file) {
            if let Some(c) = visit(file, edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_layer_imports_from_a_higher_one_and_no_files_import_in_a_circle() {
    let mut files = BTreeSet::new();
    rust_files(&src_dir(), &src_dir(), &mut files);
    let imports = imports(&files);

    // The scan sees what it should (else every check below would pass vacuously).
    for (file, path) in [
        ("stage.rs", "core::engine::Engine"),
        ("core/engine.rs", "model::event"),
        ("config/inventory.rs", "model::"),
    ] {
        assert!(
            imports
                .iter()
                .any(|i| i.file == file && i.path.starts_with(path)),
            "the scan found no import of `crate::{path}` in src/{file}"
        );
    }

    let mut problems = Vec::new();
    for f in &files {
        if layer_of(f).is_none() {
            problems.push(format!(
                "src/{f}: module `{}` is in no layer; add it to LAYERS in tests/layers.rs \
                 (and to ARCHITECTURE.md)",
                top_module(f)
            ));
        }
    }
    for i in imports.iter().filter(|i| !i.in_test && !allowed(i)) {
        let (Some((from, from_name)), Some((to, to_name))) =
            (layer_of(&i.file), layer_of(&i.target))
        else {
            continue;
        };
        if to > from {
            problems.push(format!(
                "src/{}:{}: `crate::{}` imports from layer \"{to_name}\" (src/{}) into the \
                 lower layer \"{from_name}\"",
                i.file, i.line, i.path, i.target
            ));
        }
    }
    for (file, path, why) in ALLOWED {
        if !imports
            .iter()
            .any(|i| format!("src/{}", i.file) == *file && i.path.starts_with(path))
        {
            problems.push(format!(
                "{file}: the allowed import of `crate::{path}` ({why}) is gone; remove it \
                 from ALLOWED in tests/layers.rs"
            ));
        }
    }

    let mut edges: BTreeMap<&str, Vec<&Import>> = BTreeMap::new();
    for i in imports.iter().filter(|i| !i.in_test && !allowed(i)) {
        let list = edges.entry(i.file.as_str()).or_default();
        // One import per file pair is enough to name the circle.
        if !list.iter().any(|j| j.target == i.target) {
            list.push(i);
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let steps: Vec<String> = cycle
            .iter()
            .map(|i| {
                format!(
                    "src/{}:{} (`crate::{}`) → src/{}",
                    i.file, i.line, i.path, i.target
                )
            })
            .collect();
        problems.push(format!(
            "files import each other in a circle:\n    {}",
            steps.join("\n    ")
        ));
    }

    assert!(
        problems.is_empty(),
        "layer rules broken (ARCHITECTURE.md, \"Layers\"):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_scan_reads_groups_super_and_bodies() {
    let files: BTreeSet<String> = [
        "lib.rs",
        "model/mod.rs",
        "model/event.rs",
        "core/mod.rs",
        "core/engine.rs",
        "core/engine/time.rs",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let module = module_of("core/engine/time.rs");
    let line = "use crate::model::{event::{Alarm, Event}, Device};";
    let at = line.find("crate::").unwrap() + "crate::".len();
    let (paths, _) = expand(line.as_bytes(), at, &[]);
    let resolved: Vec<String> = paths.iter().map(|p| resolve(p, &files)).collect();
    assert_eq!(
        resolved,
        ["model/event.rs", "model/event.rs", "model/mod.rs"],
        "{paths:?}"
    );
    let body = "let x = super::Engine::new(crate::core::engine::time::f());";
    let at = body.find("super::").unwrap() + "super::".len();
    let (paths, _) = expand(body.as_bytes(), at, &module[..module.len() - 1]);
    assert_eq!(resolve(&paths[0], &files), "core/engine.rs");
    assert_eq!(module, ["core", "engine", "time"]);
    assert_eq!(top_module("core/engine/time.rs"), "core");
    assert_eq!(top_module("run.rs"), "run");

    let src = "fn a() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\nfn b() {}";
    let lines: Vec<&str> = src.lines().collect();
    assert_eq!(
        test_lines("x.rs", &lines),
        BTreeSet::from([3, 4, 5]),
        "the test module, not what follows it"
    );
}
