//! Domain names as a recording writes them: made to fit the scenario format, or
//! anonymized, the same way for the whole recording.

/// Domain names as the file writes them: the format takes `[A-Za-z0-9._-]`, so every
/// other character becomes `_`, and a name that then clashes with another gets `-2`,
/// `-3`, ...; with `--anonymize`, `d1`, `d2`, ... in order of appearance. The same
/// original name is always written the same way, across restarts too.
pub struct Names {
    anonymize: bool,
    /// (original, as written), in order of appearance.
    list: Vec<(String, String)>,
}

impl Names {
    pub fn new(anonymize: bool) -> Names {
        Names {
            anonymize,
            list: Vec::new(),
        }
    }

    /// The index of `original`, added if new (allocates only then).
    pub fn index(&mut self, original: &str) -> usize {
        if let Some(i) = self.list.iter().position(|(o, _)| o == original) {
            return i;
        }
        let safe = if self.anonymize {
            format!("d{}", self.list.len() + 1)
        } else {
            let base: String = original
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let base = if base.is_empty() {
                "_".to_owned()
            } else {
                base
            };
            let taken = |s: &str| self.list.iter().any(|(_, w)| w == s);
            let mut safe = base.clone();
            let mut n = 2;
            while taken(&safe) {
                safe = format!("{base}-{n}");
                n += 1;
            }
            safe
        };
        self.list.push((original.to_owned(), safe));
        self.list.len() - 1
    }

    pub fn safe(&self, i: usize) -> &str {
        self.list.get(i).map_or("_", |(_, s)| s.as_str())
    }

    /// (as written, original) of the names that had to change, when not anonymized.
    pub fn renamed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list
            .iter()
            .filter(|(o, s)| !self.anonymize && o != s)
            .map(|(o, s)| (s.as_str(), o.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_consistently_and_never_clash() {
        let mut n = Names::new(false);
        let a = n.index("web prod");
        let b = n.index("web_prod");
        let c = n.index("café");
        assert_eq!(n.safe(a), "web_prod");
        assert_eq!(n.safe(b), "web_prod-2");
        assert_eq!(n.safe(c), "caf_");
        assert_eq!(n.index("web prod"), a, "the same name, the same index");
        let p = n.index("plain-1.x");
        assert_eq!(n.safe(p), "plain-1.x");
        let renamed: Vec<_> = n.renamed().collect();
        assert_eq!(
            renamed,
            [
                ("web_prod", "web prod"),
                ("web_prod-2", "web_prod"),
                ("caf_", "café")
            ]
        );
        let mut anon = Names::new(true);
        let x = anon.index("secret-db");
        let y = anon.index("secret web");
        assert_eq!((anon.safe(x), anon.safe(y)), ("d1", "d2"));
        assert_eq!(anon.index("secret-db"), x);
        assert_eq!(anon.renamed().count(), 0);
    }
}
