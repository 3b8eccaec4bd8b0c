//! Which domains the scheduler manages: shell-style globs on the domain name, and the
//! owners' own pins.
//!
//! Hosts run domains that must not be touched: another tool owns their pins (OpenStack
//! Nova's dedicated CPUs are `<cputune><vcpupin>` in the domain XML), or an operator
//! pinned them with `virsh vcpupin --config`. Only managed domains are ever pinned; the
//! load of the others still counts on the pCPUs it runs on.

/// Include and exclude patterns, and whether configured pins are overridden. No include
/// pattern means "every domain".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    include: Vec<String>,
    exclude: Vec<String>,
    /// `--repin-configured`: manage domains pinned in their configuration too.
    repin_configured: bool,
}

/// Why a domain is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftAlone {
    /// Its name does not match `--domain`, or matches `--exclude-domain`.
    NotSelected,
    /// Its owner pinned it in its persistent configuration.
    ConfigPinned,
}

impl LeftAlone {
    pub fn describe(self) -> &'static str {
        match self {
            LeftAlone::NotSelected => "not selected by --domain/--exclude-domain",
            LeftAlone::ConfigPinned => "pinned in its configuration",
        }
    }
}

impl Selection {
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Self {
        Selection {
            include,
            exclude,
            repin_configured: false,
        }
    }

    /// Manage domains whose owner pinned them in their configuration as well.
    pub fn repin_configured(mut self, yes: bool) -> Self {
        self.repin_configured = yes;
        self
    }

    /// The include patterns (`--domain`), the exclude ones (`--exclude-domain`), and
    /// whether configured pins are overridden (`--repin-configured`).
    pub fn parts(&self) -> (&[String], &[String], bool) {
        (&self.include, &self.exclude, self.repin_configured)
    }

    /// Does the scheduler manage the domain called `name`? Allocation-free.
    pub fn manages(&self, name: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|p| glob_match(p, name));
        included && !self.exclude.iter().any(|p| glob_match(p, name))
    }

    /// Why the domain called `name` is left alone, if it is.
    pub fn left_alone(&self, name: &str, config_pinned: bool) -> Option<LeftAlone> {
        if !self.manages(name) {
            Some(LeftAlone::NotSelected)
        } else if config_pinned && !self.repin_configured {
            Some(LeftAlone::ConfigPinned)
        } else {
            None
        }
    }
}

/// Shell-style match of the whole `name`: `*` is any run of characters, `?` any one
/// character, anything else itself. Iterative with one backtrack point, so it runs in
/// O(len(pattern) * len(name)) and never allocates.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (pat, txt) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern index after it, text index it ate to).
    let mut star: Option<(usize, usize)> = None;
    while t < txt.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p + 1, t));
            p += 1;
        } else if p < pat.len() && (pat[p] == b'?' || pat[p] == txt[t]) {
            // `?` consumes one whole UTF-8 character, not one byte.
            let step = if pat[p] == b'?' { utf8_len(txt[t]) } else { 1 };
            p += 1;
            t += step;
        } else if let Some((sp, st)) = star {
            p = sp;
            t = st + utf8_len(txt[st]);
            star = Some((sp, t));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("aos_*", "aos_vm1"));
        assert!(!glob_match("aos_*", "xaos_vm1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("vm?", "vm1"));
        assert!(!glob_match("vm?", "vm10"));
        assert!(glob_match("*-db", "prod-web-db"));
        assert!(glob_match("é?", "éü"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn configured_pins_are_left_alone_unless_overridden() {
        let s = Selection::default();
        assert_eq!(s.left_alone("nova-1", true), Some(LeftAlone::ConfigPinned));
        assert_eq!(s.left_alone("nova-1", false), None);
        let s = s.repin_configured(true);
        assert_eq!(s.left_alone("nova-1", true), None);
        let s = Selection::new(vec![], vec!["nova-*".into()]).repin_configured(true);
        assert_eq!(s.left_alone("nova-1", true), Some(LeftAlone::NotSelected));
    }

    #[test]
    fn exclude_wins_over_include() {
        let s = Selection::new(vec!["aos_*".into()], vec!["aos_keep*".into()]);
        assert!(s.manages("aos_1"));
        assert!(!s.manages("aos_keep1"));
        assert!(!s.manages("web"));
        assert!(Selection::default().manages("anything"));
    }
}
