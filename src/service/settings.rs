//! The settings file (`--config FILE`; the service reads `/etc/default/vcpu-scheduler`):
//! `KEY=VALUE` lines, `#` comments, values optionally in double or single quotes, as a
//! shell would source them. Each key stands for a command-line option; the command
//! line wins where both say something.
//!
//! ```text
//! INTERVAL=2
//! CPUS=2-7
//! EXCLUDE_DOMAINS="db-* backup"
//! REPIN_CONFIGURED=no
//! ```
//!
//! A key the program does not know is reported (one line each) and ignored, so a file
//! written for a newer release still starts an older one. A bad value is an error.

use std::fmt;
use std::path::Path;

/// A key, the option it stands for, and how its value turns into arguments.
struct Key {
    name: &'static str,
    option: &'static str,
    kind: Kind,
}

enum Kind {
    /// `--option VALUE`.
    Value,
    /// One `--option GLOB` per whitespace-separated word.
    Words,
    /// `yes` gives `--option`; `no` nothing.
    Flag,
    /// The free argument (INTERVAL).
    Free,
}

const KEYS: &[Key] = &[
    Key {
        name: "INTERVAL",
        option: "",
        kind: Kind::Free,
    },
    Key {
        name: "CONNECT",
        option: "connect",
        kind: Kind::Value,
    },
    Key {
        name: "THRESHOLD",
        option: "threshold",
        kind: Kind::Value,
    },
    Key {
        name: "POLICY",
        option: "policy",
        kind: Kind::Value,
    },
    Key {
        name: "DOMAINS",
        option: "domain",
        kind: Kind::Words,
    },
    Key {
        name: "EXCLUDE_DOMAINS",
        option: "exclude-domain",
        kind: Kind::Words,
    },
    Key {
        name: "CPUS",
        option: "cpus",
        kind: Kind::Value,
    },
    Key {
        name: "REPIN_CONFIGURED",
        option: "repin-configured",
        kind: Kind::Flag,
    },
    Key {
        name: "DRY_RUN",
        option: "dry-run",
        kind: Kind::Flag,
    },
    Key {
        name: "SUMMARY",
        option: "summary",
        kind: Kind::Value,
    },
    Key {
        name: "METRICS_FILE",
        option: "metrics-file",
        kind: Kind::Value,
    },
];

/// What a settings file says, as command-line arguments, and what it said wrong.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FromFile {
    /// Per option name (`""` for INTERVAL): the arguments it gives.
    pub args: Vec<(&'static str, Vec<String>)>,
    /// One line per unknown key, `FILE:LINE: ...`.
    pub warnings: Vec<String>,
}

/// A settings file that cannot be used: `FILE:LINE: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn load(path: &Path) -> Result<FromFile, SettingsError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| SettingsError(format!("cannot read settings file {file}: {e}")))?;
    parse(&text, &file)
}

/// Parse the text of a settings file; `file` names it in messages.
pub fn parse(text: &str, file: &str) -> Result<FromFile, SettingsError> {
    let mut out = FromFile::default();
    for (i, raw) in text.lines().enumerate() {
        let at = |msg: String| SettingsError(format!("{file}:{}: {msg}", i + 1));
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(format!("expected KEY=VALUE, got {line:?}")));
        };
        let key = key.trim();
        let value = unquote(value.trim()).map_err(at)?;
        let Some(k) = KEYS.iter().find(|k| k.name == key) else {
            out.warnings
                .push(format!("{file}:{}: unknown setting {key:?} ignored", i + 1));
            continue;
        };
        if value.is_empty() {
            continue; // unset, as in a shell
        }
        let args: Vec<String> = match k.kind {
            Kind::Free => vec![value.to_owned()],
            Kind::Value => vec![format!("--{}", k.option), value.to_owned()],
            Kind::Words => value
                .split_whitespace()
                .flat_map(|w| [format!("--{}", k.option), w.to_owned()])
                .collect(),
            Kind::Flag => match value {
                "yes" | "true" | "1" => vec![format!("--{}", k.option)],
                "no" | "false" | "0" => Vec::new(),
                _ => return Err(at(format!("{key} must be yes or no, not {value:?}"))),
            },
        };
        // A key given twice: the later line wins, as in a shell.
        out.args.retain(|(o, _)| *o != k.option);
        out.args.push((k.option, args));
    }
    Ok(out)
}

fn unquote(v: &str) -> Result<&str, String> {
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            return rest
                .strip_suffix(q)
                .ok_or_else(|| format!("unterminated quote in {v:?}"));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: &FromFile, option: &str) -> Vec<String> {
        f.args
            .iter()
            .find(|(o, _)| *o == option)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }

    #[test]
    fn keys_become_arguments() {
        let f = parse(
            "# comment\nINTERVAL=2\nCPUS=\"2-7\"\nEXCLUDE_DOMAINS='db-* backup'\n\
             REPIN_CONFIGURED=yes\nDRY_RUN=no\nexport THRESHOLD=3\nPOLICY=\n",
            "f",
        )
        .unwrap();
        assert_eq!(args(&f, ""), ["2"]);
        assert_eq!(args(&f, "cpus"), ["--cpus", "2-7"]);
        assert_eq!(
            args(&f, "exclude-domain"),
            ["--exclude-domain", "db-*", "--exclude-domain", "backup"]
        );
        assert_eq!(args(&f, "repin-configured"), ["--repin-configured"]);
        assert!(args(&f, "dry-run").is_empty());
        assert_eq!(args(&f, "threshold"), ["--threshold", "3"]);
        assert!(f.args.iter().all(|(o, _)| *o != "policy"), "empty = unset");
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn unknown_keys_warn_and_bad_lines_fail_with_file_and_line() {
        let f = parse("INTERVAL=1\nFROB=3\n", "/etc/default/x").unwrap();
        assert_eq!(
            f.warnings,
            ["/etc/default/x:2: unknown setting \"FROB\" ignored"]
        );
        let e = parse("INTERVAL=1\njust words\n", "x").unwrap_err();
        assert_eq!(e.0, "x:2: expected KEY=VALUE, got \"just words\"");
        let e = parse("DRY_RUN=maybe\n", "x").unwrap_err();
        assert_eq!(e.0, "x:1: DRY_RUN must be yes or no, not \"maybe\"");
        let e = parse("CPUS=\"1-3\n", "x").unwrap_err();
        assert!(e.0.starts_with("x:1: unterminated quote"), "{e}");
    }
}
