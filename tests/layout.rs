//! The tree keeps the shape the README's code map describes: `src/` itself holds at
//! most 8 files (the rest lives in folders by layer), and no hand-written Rust file is
//! over 600 lines (a file that long holds two subjects; split it where they part).

use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;
const MAX_SRC_FILES: usize = 8;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let path = e.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn src_holds_at_most_eight_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<String> = fs::read_dir(&src)
        .expect("read src/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(
        files.contains(&"lib.rs".to_owned()),
        "src/ without lib.rs: {files:?}"
    );
    assert!(
        files.len() <= MAX_SRC_FILES,
        "src/ holds {} files, at most {MAX_SRC_FILES}: {files:?}",
        files.len()
    );
}

#[test]
fn no_rust_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.push(root.join("build.rs"));
    // src/, tests/ and examples/ each hold dozens: a walk that found few went wrong.
    assert!(files.len() > 50, "only {} Rust files found", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|p| {
            let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let n = text.lines().count();
            let name = p.strip_prefix(root).unwrap_or(p).display().to_string();
            (n > MAX_LINES).then(|| format!("{name}: {n} lines"))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

/// The module path of a file under `src/` (`policy::cost` for `src/policy/cost.rs`, the
/// folder's for a `mod.rs`, the crate's, empty, for `lib.rs` and `main.rs`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e` (whitespace removed).
fn expand(tree: &str) -> Vec<String> {
    let t: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = t.find('{') else {
        return vec![t];
    };
    let (prefix, inner) = (&t[..open], &t[open + 1..t.len() - 1]);
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    items.push(cur);
    items
        .iter()
        .filter(|i| !i.is_empty())
        .flat_map(|i| expand(i))
        .map(|i| match i.as_str() {
            "self" => prefix.trim_end_matches("::").to_owned(),
            _ => format!("{prefix}{i}"),
        })
        .collect()
}

/// The file-level module a `crate::`, `self::` or `super::` path imports from (the
/// longest prefix that is a module of `modules`); `None` for other crates.
fn target(from: &[String], path: &str, modules: &[Vec<String>]) -> Option<Vec<String>> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = match segs.first()? {
        &"crate" => Vec::new(),
        &"self" | &"super" => from.to_vec(),
        _ => return None,
    };
    if segs[0] == "self" || segs[0] == "crate" {
        segs.remove(0);
    }
    while segs.first() == Some(&"super") {
        base.pop();
        segs.remove(0);
    }
    (0..=segs.len())
        .rev()
        .map(|k| {
            let mut m = base.clone();
            m.extend(segs[..k].iter().map(|s| s.to_string()));
            m
        })
        .find(|m| modules.contains(m))
}

/// No two files import each other, directly or round a longer loop. A file's own
/// ancestors (the `mod.rs` that declares it, whose types it fills in) are left out: the
/// parent names its children in `mod` lines, not imports. Test modules are left out.
#[test]
fn no_import_circle_between_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let modules: Vec<Vec<String>> = files
        .iter()
        .map(|p| module_of(p.strip_prefix(&root).unwrap_or(p)))
        .collect();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    let mut count = 0;
    for (i, p) in files.iter().enumerate() {
        let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // Up to an inline test module: its imports are the tests'.
        let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
        for stmt in text.split(';') {
            let line = stmt.trim_start();
            let line = line.strip_prefix("pub(crate) ").unwrap_or(line);
            let line = line.strip_prefix("pub(super) ").unwrap_or(line);
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let Some(tree) = line.strip_prefix("use ") else {
                continue;
            };
            for path in expand(tree) {
                let Some(t) = target(&modules[i], &path, &modules) else {
                    continue;
                };
                let to = modules.iter().position(|m| *m == t).expect("a module");
                let ancestor = modules[i].starts_with(&t);
                if to != i && !ancestor && !edges[i].contains(&to) {
                    edges[i].push(to);
                    count += 1;
                }
            }
        }
    }
    // The crate's files import each other a few hundred times: a parse that found few
    // went wrong.
    assert!(count > 100, "only {count} imports between files found");
    let name = |i: usize| {
        files[i]
            .strip_prefix(&root)
            .unwrap_or(&files[i])
            .display()
            .to_string()
    };
    // Depth-first: a file met again while still on the stack closes a loop.
    fn visit(
        u: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[u] = 1;
        stack.push(u);
        for &v in &edges[u] {
            if state[v] == 1 {
                let at = stack.iter().position(|&s| s == v).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(v);
                return Some(cycle);
            }
            if state[v] == 0
                && let Some(c) = visit(v, edges, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[u] = 2;
        None
    }
    let mut state = vec![0u8; files.len()];
    for u in 0..files.len() {
        if state[u] == 0 {
            let cycle = visit(u, &edges, &mut state, &mut Vec::new());
            let shown: Option<Vec<String>> = cycle.map(|c| c.into_iter().map(name).collect());
            assert!(shown.is_none(), "import circle: {shown:?}");
        }
    }
}
