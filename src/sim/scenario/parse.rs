//! The line parser behind [`Scenario::parse`]: one directive at a time into [`Parser`],
//! then [`Parser::finish`] checks the whole (names, counts, ticks) at once.

use super::{Action, DEFAULT_SEED, DEFAULT_TICKS, DomainSpec, Event, MAX_PCPUS, Scenario};
use crate::cpumap::CpuMap;

/// The header values, each with the line that set it (to report a second one).
#[derive(Default)]
pub(super) struct Parser {
    pcpus: Option<(usize, usize)>,
    ticks: Option<(u64, usize)>,
    noise: Option<(f64, usize)>,
    seed: Option<(u64, usize)>,
    delay: Option<(bool, usize)>,
    domains: Vec<(DomainSpec, usize)>,
    events: Vec<Event>,
}

impl Parser {
    pub(super) fn directive(&mut self, line: usize, words: &[&str]) -> Result<(), String> {
        let (keyword, args) = words.split_first().ok_or("empty line")?;
        match *keyword {
            "pcpus" => {
                let n = one_arg(keyword, args)?;
                let n = parse_int(n, "pcpus")?;
                let n = usize::try_from(n)
                    .ok()
                    .filter(|n| (1..=MAX_PCPUS).contains(n))
                    .ok_or_else(|| format!("pcpus {n} is outside 1-{MAX_PCPUS}"))?;
                set_once(&mut self.pcpus, n, line, "pcpus")
            }
            "ticks" => {
                let n = parse_int(one_arg(keyword, args)?, "ticks")?;
                if n == 0 {
                    return Err("ticks must be at least 1".into());
                }
                set_once(&mut self.ticks, n, line, "ticks")
            }
            "noise" => {
                let n = parse_pct(one_arg(keyword, args)?, "noise")?;
                set_once(&mut self.noise, n, line, "noise")
            }
            "seed" => {
                let n = parse_int(one_arg(keyword, args)?, "seed")?;
                set_once(&mut self.seed, n, line, "seed")
            }
            "delay" => {
                let on = match one_arg(keyword, args)? {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("delay {other:?}: expected on or off")),
                };
                set_once(&mut self.delay, on, line, "delay")
            }
            "vm" => {
                let pcpus = self.pcpus_for("vm")?;
                let d = domain_spec(args, pcpus, "vm")?;
                if let Some((_, first)) = self.domains.iter().find(|(o, _)| o.name == d.name) {
                    return Err(format!("vm {:?} already defined on line {first}", d.name));
                }
                self.domains.push((d, line));
                Ok(())
            }
            "at" => {
                let pcpus = self.pcpus_for("at")?;
                let (tick, rest) = args.split_first().ok_or("at needs a tick and an action")?;
                let tick = parse_int(tick, "tick")?;
                if tick == 0 {
                    return Err("at 0: ticks count from 1 (use a vm line for the start)".into());
                }
                let action = event_action(rest, pcpus)?;
                self.events.push(Event { tick, line, action });
                Ok(())
            }
            other => Err(format!(
                "unknown keyword {other:?} (expected pcpus, ticks, noise, seed, delay, vm or at)"
            )),
        }
    }

    fn pcpus_for(&self, keyword: &str) -> Result<usize, String> {
        self.pcpus
            .map(|(n, _)| n)
            .ok_or_else(|| format!("{keyword} before pcpus: the pcpus line must come first"))
    }

    /// Checks that need the whole file: ticks in range, and every event against the
    /// domains running at its tick. Errors carry the line to blame (`None`: the end).
    pub(super) fn finish(mut self) -> Result<Scenario, (Option<usize>, String)> {
        let pcpus = self.pcpus.ok_or((None, "missing pcpus line".to_owned()))?.0;
        let (ticks, default) = match self.ticks {
            Some((t, _)) => (t, ""),
            None => (DEFAULT_TICKS, ", the default"),
        };
        // Stable: events of one tick keep their file order.
        self.events.sort_by_key(|e| e.tick);
        if let Some(e) = self.events.iter().find(|e| e.tick > ticks) {
            return Err((
                Some(e.line),
                format!(
                    "at {} is past the last tick (ticks {ticks}{default})",
                    e.tick
                ),
            ));
        }
        // Name and vCPU count of each running domain, as the events unfold.
        let mut running: Vec<(&str, usize)> = self
            .domains
            .iter()
            .map(|(d, _)| (d.name.as_str(), d.demands_pct.len()))
            .collect();
        for e in &self.events {
            let at = |msg: String| (Some(e.line), msg);
            match &e.action {
                Action::Start(d) => {
                    if running.iter().any(|(n, _)| *n == d.name) {
                        return Err(at(format!(
                            "start of {:?}, which is already running at tick {}",
                            d.name, e.tick
                        )));
                    }
                    running.push((&d.name, d.demands_pct.len()));
                }
                Action::Load { name, demands_pct } => {
                    let Some(&(_, vcpus)) = running.iter().find(|(n, _)| n == name) else {
                        return Err(at(format!(
                            "load of unknown vm {name:?} (not running at tick {})",
                            e.tick
                        )));
                    };
                    if vcpus != demands_pct.len() {
                        return Err(at(format!(
                            "load gives {} demands but vm {name:?} has {vcpus} vcpus",
                            demands_pct.len()
                        )));
                    }
                }
                Action::Vcpus { name, demands_pct } => {
                    let Some(slot) = running.iter_mut().find(|(n, _)| n == name) else {
                        return Err(at(format!(
                            "vcpus of unknown vm {name:?} (not running at tick {})",
                            e.tick
                        )));
                    };
                    slot.1 = demands_pct.len();
                }
                Action::Stop { name } => {
                    let Some(i) = running.iter().position(|(n, _)| n == name) else {
                        return Err(at(format!(
                            "stop of unknown vm {name:?} (not running at tick {})",
                            e.tick
                        )));
                    };
                    running.remove(i);
                }
            }
        }
        Ok(Scenario {
            pcpus,
            ticks,
            noise_pct: self.noise.map_or(0.0, |(n, _)| n),
            seed: self.seed.map_or(DEFAULT_SEED, |(s, _)| s),
            reports_delay: self.delay.is_none_or(|(on, _)| on),
            domains: self.domains.into_iter().map(|(d, _)| d).collect(),
            events: self.events,
        })
    }
}

fn set_once<T>(slot: &mut Option<(T, usize)>, v: T, line: usize, what: &str) -> Result<(), String> {
    if let Some((_, first)) = slot {
        return Err(format!("{what} given twice (first on line {first})"));
    }
    *slot = Some((v, line));
    Ok(())
}

fn one_arg<'a>(keyword: &str, args: &[&'a str]) -> Result<&'a str, String> {
    match args {
        [a] => Ok(a),
        [] => Err(format!("{keyword} needs a value")),
        [_, extra, ..] => Err(format!("unexpected {extra:?} after {keyword} value")),
    }
}

fn parse_int(s: &str, what: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("bad number {s:?} for {what}"))
}

/// A percentage, 0–100, as a plain decimal (no `inf`, `nan` or exponent tricks).
fn parse_pct(s: &str, what: &str) -> Result<f64, String> {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let v = s
        .parse::<f64>()
        .ok()
        .filter(|_| plain)
        .ok_or_else(|| format!("bad number {s:?} for {what}"))?;
    if v > 100.0 {
        return Err(format!("{what} {s} is outside 0-100"));
    }
    Ok(v)
}

/// `NAME DEMANDS [pin CPULIST]`, the tail of `vm` and `at T start`.
fn domain_spec(args: &[&str], pcpus: usize, keyword: &str) -> Result<DomainSpec, String> {
    let (name, demands, rest) = match args {
        [name, demands, rest @ ..] => (*name, *demands, rest),
        _ => {
            return Err(format!(
                "{keyword} needs a name and demands, e.g. `{keyword} web 100,40`"
            ));
        }
    };
    check_name(name)?;
    let demands_pct = parse_demands(demands)?;
    let affinity = match rest {
        [] => CpuMap::all(pcpus),
        ["pin", list] => CpuMap::parse_list(list, pcpus)
            .map_err(|e| format!("bad cpulist {list:?} for pin: {e}"))?,
        ["pin"] => return Err("pin needs a cpulist, e.g. `pin 0-3`".into()),
        ["pin", _, extra, ..] => return Err(format!("unexpected {extra:?} after the cpulist")),
        [extra, ..] => return Err(format!("unexpected {extra:?} after the demands (pin?)")),
    };
    Ok(DomainSpec {
        name: name.to_owned(),
        demands_pct,
        affinity,
    })
}

/// `load NAME DEMANDS`, `start NAME DEMANDS [pin LIST]` or `stop NAME`.
fn event_action(args: &[&str], pcpus: usize) -> Result<Action, String> {
    match args {
        ["load", name, demands] => {
            check_name(name)?;
            Ok(Action::Load {
                name: (*name).to_owned(),
                demands_pct: parse_demands(demands)?,
            })
        }
        ["vcpus", name, demands] => {
            check_name(name)?;
            let demands_pct = parse_demands(demands)?;
            if demands_pct.is_empty() {
                return Err("vcpus needs at least one demand".into());
            }
            Ok(Action::Vcpus {
                name: (*name).to_owned(),
                demands_pct,
            })
        }
        ["load" | "vcpus", _, _, extra, ..] => {
            Err(format!("unexpected {extra:?} after the demands"))
        }
        ["vcpus", ..] => {
            Err("vcpus needs a name and demands, e.g. `at 10 vcpus web 20,20,20`".into())
        }
        ["load", ..] => Err("load needs a name and demands, e.g. `at 10 load web 20,20`".into()),
        ["start", rest @ ..] => Ok(Action::Start(domain_spec(rest, pcpus, "start")?)),
        ["stop", name] => {
            check_name(name)?;
            Ok(Action::Stop {
                name: (*name).to_owned(),
            })
        }
        ["stop", _, extra, ..] => Err(format!("unexpected {extra:?} after the name")),
        ["stop"] => Err("stop needs a name".into()),
        [other, ..] => Err(format!(
            "unknown action {other:?} (expected load, vcpus, start or stop)"
        )),
        [] => Err("at needs a tick and an action".into()),
    }
}

/// Names as libvirt allows them in practice, minus anything the format itself uses.
fn check_name(name: &str) -> Result<(), String> {
    let ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(format!(
            "bad vm name {name:?}: use letters, digits, '.', '_', '-'"
        ));
    }
    Ok(())
}

/// Comma-separated percentages, one per vCPU.
fn parse_demands(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .enumerate()
        .map(|(vcpu, d)| {
            parse_pct(d, "demand").map_err(|e| {
                if e.contains("outside") {
                    format!("demand {d} of vcpu {vcpu} is outside 0-100")
                } else {
                    format!("bad number {d:?} in demands {s:?}")
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(text, "t.scn").map_err(|e| e.to_string())
    }

    const EXAMPLE: &str = "\
pcpus 4                       # number of pCPUs
ticks 30                      # how long to run
noise 5                       # optional: ± % relative noise on measured usage
seed 7                        # optional: RNG seed
vm web 100,40 pin 0           # a domain: one demand % per vCPU
vm db 60,60,60,60             # no pin: affinity to every pCPU

# events, out of order on purpose
at 15 stop db                 # a domain disappears
at 10 load web 20,20          # from tick 10: new demands
at 12 start cache 90 pin 1    # a domain appears
";

    #[test]
    fn the_documented_example_parses() {
        let s = parse(EXAMPLE).unwrap();
        assert_eq!((s.pcpus, s.ticks, s.noise_pct, s.seed), (4, 30, 5.0, 7));
        assert_eq!(s.domains.len(), 2);
        assert_eq!(s.domains[0].name, "web");
        assert_eq!(s.domains[0].demands_pct, vec![100.0, 40.0]);
        assert_eq!(s.domains[0].affinity.only(), Some(0));
        assert_eq!(s.domains[1].affinity.count(), 4);
        let ticks: Vec<u64> = s.events.iter().map(|e| e.tick).collect();
        assert_eq!(ticks, vec![10, 12, 15], "sorted by tick");
        assert_eq!(s.events[0].line, 10);
        assert_eq!(
            s.events[0].action,
            Action::Load {
                name: "web".into(),
                demands_pct: vec![20.0, 20.0]
            }
        );
        assert!(matches!(&s.events[1].action, Action::Start(d) if d.affinity.only() == Some(1)));
        assert_eq!(s.events[2].action, Action::Stop { name: "db".into() });
    }

    #[test]
    fn defaults_cpulists_and_round_trip() {
        let s = parse("pcpus 8\nvm a 0,12.5,100 pin 0,2,5-7\nvm b 50 pin all\n").unwrap();
        assert_eq!(
            (s.ticks, s.noise_pct, s.seed),
            (DEFAULT_TICKS, 0.0, DEFAULT_SEED)
        );
        assert_eq!(
            s.domains[0].affinity.iter().collect::<Vec<_>>(),
            vec![0, 2, 5, 6, 7]
        );
        assert_eq!(s.domains[0].demands_pct, vec![0.0, 12.5, 100.0]);
        assert_eq!(s.domains[1].affinity.count(), 8);
        let text = s.to_string();
        assert_eq!(parse(&text).unwrap(), s, "{text}");
        // Lines differ (the output has no comments); everything else comes back.
        let without_lines = |mut s: Scenario| {
            s.events.iter_mut().for_each(|e| e.line = 0);
            s
        };
        let full = without_lines(parse(EXAMPLE).unwrap());
        assert_eq!(without_lines(parse(&full.to_string()).unwrap()), full);
    }

    #[test]
    fn same_tick_events_keep_file_order_and_restart_is_allowed() {
        let s = parse("pcpus 2\nvm a 50\nat 3 stop a\nat 3 start a 70,70\nat 4 load a 10,10\n")
            .unwrap();
        assert!(matches!(s.events[0].action, Action::Stop { .. }));
        assert!(matches!(s.events[1].action, Action::Start(_)));
    }

    /// Each way a file can be wrong, with the line blamed and the reason.
    #[test]
    fn every_error_names_file_line_and_reason() {
        let cases: &[(&str, &str)] = &[
            ("pcpus 4\nbogus 3\n", "t.scn:2: unknown keyword \"bogus\""),
            ("pcpus four\n", "t.scn:1: bad number \"four\" for pcpus"),
            ("pcpus 0\n", "t.scn:1: pcpus 0 is outside 1-8192"),
            (
                "pcpus 4\npcpus 4\n",
                "t.scn:2: pcpus given twice (first on line 1)",
            ),
            ("pcpus\n", "t.scn:1: pcpus needs a value"),
            ("pcpus 4 5\n", "t.scn:1: unexpected \"5\" after pcpus value"),
            ("pcpus 4\nticks 0\n", "t.scn:2: ticks must be at least 1"),
            (
                "pcpus 4\nticks -3\n",
                "t.scn:2: bad number \"-3\" for ticks",
            ),
            (
                "pcpus 4\nnoise 101\n",
                "t.scn:2: noise 101 is outside 0-100",
            ),
            (
                "pcpus 4\nnoise nan\n",
                "t.scn:2: bad number \"nan\" for noise",
            ),
            ("pcpus 4\nseed x\n", "t.scn:2: bad number \"x\" for seed"),
            (
                "pcpus 4\nvm a 120\n",
                "t.scn:2: demand 120 of vcpu 0 is outside 0-100",
            ),
            (
                "pcpus 4\nvm a 50,-1\n",
                "t.scn:2: bad number \"-1\" in demands \"50,-1\"",
            ),
            (
                "pcpus 4\nvm a 50,,50\n",
                "t.scn:2: bad number \"\" in demands \"50,,50\"",
            ),
            (
                "pcpus 4\nvm a 5e1\n",
                "t.scn:2: bad number \"5e1\" in demands \"5e1\"",
            ),
            ("pcpus 4\nvm a\n", "t.scn:2: vm needs a name and demands"),
            (
                "pcpus 4\nvm a 50 pin 4\n",
                "t.scn:2: bad cpulist \"4\" for pin: pcpu 4 does not",
            ),
            (
                "pcpus 4\nvm a 50 pin 0-9\n",
                "t.scn:2: bad cpulist \"0-9\" for pin",
            ),
            (
                "pcpus 4\nvm a 50 pin 3-1\n",
                "t.scn:2: bad cpulist \"3-1\" for pin: range",
            ),
            ("pcpus 4\nvm a 50 pin\n", "t.scn:2: pin needs a cpulist"),
            (
                "pcpus 4\nvm a 50 on 1\n",
                "t.scn:2: unexpected \"on\" after the demands (pin?)",
            ),
            (
                "pcpus 4\nvm a 50 pin 1 2\n",
                "t.scn:2: unexpected \"2\" after the cpulist",
            ),
            ("pcpus 4\nvm a,b 50\n", "t.scn:2: bad vm name \"a,b\""),
            (
                "pcpus 4\nvm a 50\n\nvm a 60\n",
                "t.scn:4: vm \"a\" already defined on line 2",
            ),
            (
                "vm a 50\npcpus 4\n",
                "t.scn:1: vm before pcpus: the pcpus line must come first",
            ),
            ("at 3 stop a\n", "t.scn:1: at before pcpus"),
            ("# nothing\nticks 5\n", "t.scn:2: missing pcpus line"),
            ("", "t.scn:1: missing pcpus line"),
            (
                "pcpus 4\nvm a 50\nat 3 load b 50\n",
                "t.scn:3: load of unknown vm \"b\"",
            ),
            (
                "pcpus 4\nvm a 50\nat 3 stop b\n",
                "t.scn:3: stop of unknown vm \"b\"",
            ),
            (
                "pcpus 4\nvm a 50\nat 3 stop a\nat 5 load a 10\n",
                "t.scn:4: load of unknown vm \"a\" (not running at tick 5)",
            ),
            (
                "pcpus 4\nat 3 load c 10\nat 5 start c 50\n",
                "t.scn:2: load of unknown vm \"c\" (not running at tick 3)",
            ),
            (
                "pcpus 4\nvm a 50,50\nat 3 load a 10\n",
                "t.scn:3: load gives 1 demands but vm",
            ),
            (
                "pcpus 4\nvm a 50\nat 3 start a 10\n",
                "t.scn:3: start of \"a\", which is already running at tick 3",
            ),
            (
                "pcpus 4\nvm a 50\nat 31 stop a\n",
                "t.scn:3: at 31 is past the last tick (ticks 30, the default)",
            ),
            (
                "pcpus 4\nvm a 50\nat 9 stop a\nticks 8\n",
                "t.scn:3: at 9 is past the last tick (ticks 8)",
            ),
            (
                "pcpus 4\nvm a 50\nat 0 stop a\n",
                "t.scn:3: at 0: ticks count from 1",
            ),
            (
                "pcpus 4\nat x stop a\n",
                "t.scn:2: bad number \"x\" for tick",
            ),
            ("pcpus 4\nat 3\n", "t.scn:2: at needs a tick and an action"),
            ("pcpus 4\nat\n", "t.scn:2: at needs a tick and an action"),
            ("pcpus 4\nat 3 jump a\n", "t.scn:2: unknown action \"jump\""),
            (
                "pcpus 4\nat 3 load a\n",
                "t.scn:2: load needs a name and demands",
            ),
            (
                "pcpus 4\nat 3 load a 1 2\n",
                "t.scn:2: unexpected \"2\" after the demands",
            ),
            ("pcpus 4\nat 3 stop\n", "t.scn:2: stop needs a name"),
            (
                "pcpus 4\nat 3 stop a b\n",
                "t.scn:2: unexpected \"b\" after the name",
            ),
            (
                "pcpus 4\nat 3 start c 50 pin 7\n",
                "t.scn:2: bad cpulist \"7\" for pin",
            ),
        ];
        for (text, want) in cases {
            let got = parse(text).expect_err(text);
            assert!(
                got.starts_with(want),
                "{text:?}\n  got:  {got}\n  want: {want}"
            );
            assert!(!got.contains('\n'), "one line: {got}");
        }
    }

    #[test]
    fn a_missing_file_is_one_line_too() {
        let e = Scenario::load(std::path::Path::new("/nonexistent/x.scn")).unwrap_err();
        assert_eq!(e.line, None);
        let msg = e.to_string();
        assert!(
            msg.starts_with("/nonexistent/x.scn: cannot read: "),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }
}
