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
