//! The line parser behind [`Scenario::parse`]: one directive at a time into [`Parser`],
//! then [`Parser::finish`] checks the whole (names, counts, ticks) at once.

use super::{
    Action, DEFAULT_SEED, DEFAULT_TICKS, DomainSpec, Event, MAX_NODES, MAX_PCPUS, MAX_THREADS,
    Scenario, Shape,
};
use crate::cpumap::CpuMap;

/// The header values, each with the line that set it (to report a second one).
#[derive(Default)]
pub(super) struct Parser {
    pcpus: Option<(usize, usize)>,
    topology: Option<(Shape, usize)>,
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
                set_once(&mut self.pcpus, n, line, "pcpus")?;
                match self.topology {
                    Some((shape, at)) if shape.pcpus() != n => Err(format!(
                        "pcpus {n} contradicts topology {shape} on line {at} ({} pcpus)",
                        shape.pcpus()
                    )),
                    _ => Ok(()),
                }
            }
            "topology" => {
                let shape = parse_shape(args)?;
                set_once(&mut self.topology, shape, line, "topology")?;
                match self.pcpus {
                    Some((n, at)) if shape.pcpus() != n => Err(format!(
                        "topology {shape} makes {} pcpus, but pcpus is {n} (line {at})",
                        shape.pcpus()
                    )),
                    _ => Ok(()),
                }
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
                "unknown keyword {other:?} (expected pcpus, topology, ticks, noise, seed, delay, vm or at)"
            )),
        }
    }

    /// pCPUs from the `pcpus` line, else from the `topology` line (they agree).
    fn pcpus(&self) -> Option<usize> {
        self.pcpus
            .map(|(n, _)| n)
            .or(self.topology.map(|(shape, _)| shape.pcpus()))
    }

    fn pcpus_for(&self, keyword: &str) -> Result<usize, String> {
        self.pcpus().ok_or_else(|| {
            format!("{keyword} before pcpus: the pcpus line must come first (or a topology line)")
        })
    }

    /// Checks that need the whole file: ticks in range, and every event against the
    /// domains running at its tick. Errors carry the line to blame (`None`: the end).
    pub(super) fn finish(mut self) -> Result<Scenario, (Option<usize>, String)> {
        let pcpus = self
            .pcpus()
            .ok_or((None, "missing pcpus line (or a topology line)".to_owned()))?;
        // `mem` is checked here, so a topology line may follow the domains that use it.
        let nodes = self.topology.map_or(1, |(shape, _)| shape.sockets);
        let starts = self.events.iter().filter_map(|e| match &e.action {
            Action::Start(d) => Some((d, e.line)),
            _ => None,
        });
        for (d, line) in self.domains.iter().map(|(d, l)| (d, *l)).chain(starts) {
            if let Some(node) = d.mem_node.filter(|&n| usize::from(n) >= nodes) {
                let has = if self.topology.is_some() {
                    format!("the host has nodes 0-{}", nodes - 1)
                } else {
                    "without a topology line the host has one node, 0".to_owned()
                };
                return Err((Some(line), format!("mem {node}: no such node ({has})")));
            }
        }
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
            topology: self.topology.map(|(shape, _)| shape),
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

/// `NAME DEMANDS [pin CPULIST] [mem NODE]` (options in either order), the tail of `vm`
/// and `at T start`. Whether the node exists is checked at the end, against the
/// topology.
fn domain_spec(args: &[&str], pcpus: usize, keyword: &str) -> Result<DomainSpec, String> {
    let (name, demands, mut rest) = match args {
        [name, demands, rest @ ..] => (*name, *demands, rest),
        _ => {
            return Err(format!(
                "{keyword} needs a name and demands, e.g. `{keyword} web 100,40`"
            ));
        }
    };
    check_name(name)?;
    let demands_pct = parse_demands(demands)?;
    let (mut pin, mut mem_node) = (None, None);
    let mut after = "the demands (pin or mem?)";
    while let [option, tail @ ..] = rest {
        rest = match (*option, tail) {
            ("pin", [list, tail @ ..]) if pin.is_none() => {
                let map = CpuMap::parse_list(list, pcpus)
                    .map_err(|e| format!("bad cpulist {list:?} for pin: {e}"))?;
                pin = Some(map);
                after = "the cpulist";
                tail
            }
            ("mem", [node, tail @ ..]) if mem_node.is_none() => {
                let n = parse_int(node, "mem")?;
                let n = u16::try_from(n)
                    .ok()
                    .filter(|&n| usize::from(n) < MAX_PCPUS)
                    .ok_or_else(|| {
                        format!("mem {n}: no such node (a host has at most {MAX_PCPUS})")
                    })?;
                mem_node = Some(n);
                after = "the mem node";
                tail
            }
            ("pin" | "mem", [_, ..]) => return Err(format!("{option} given twice")),
            ("pin", []) => return Err("pin needs a cpulist, e.g. `pin 0-3`".into()),
            ("mem", []) => return Err("mem needs a node number, e.g. `mem 0`".into()),
            (extra, _) => return Err(format!("unexpected {extra:?} after {after}")),
        };
    }
    Ok(DomainSpec {
        name: name.to_owned(),
        demands_pct,
        affinity: pin.unwrap_or_else(|| CpuMap::all(pcpus)),
        mem_node,
    })
}

/// `SOCKETS CORES THREADS` of a `topology` line.
fn parse_shape(args: &[&str]) -> Result<Shape, String> {
    let [sockets, cores, threads] = match args {
        [s, c, t] => [*s, *c, *t],
        [_, _, _, extra, ..] => {
            return Err(format!("unexpected {extra:?} after topology values"));
        }
        _ => {
            return Err("topology needs SOCKETS CORES THREADS, e.g. `topology 2 4 2`".into());
        }
    };
    let mut n = [0usize; 3];
    for ((slot, word), what) in n
        .iter_mut()
        .zip([sockets, cores, threads])
        .zip(["sockets", "cores", "threads"])
    {
        let v = parse_int(word, what)?;
        if v == 0 {
            return Err(format!("topology {what} 0: each number must be at least 1"));
        }
        *slot = usize::try_from(v).unwrap_or(usize::MAX);
    }
    let shape = Shape {
        sockets: n[0],
        cores: n[1],
        threads: n[2],
    };
    if shape.sockets > MAX_NODES {
        return Err(format!(
            "topology sockets {} is over {MAX_NODES} (one node each, in a 64-bit node mask)",
            shape.sockets
        ));
    }
    if shape.threads > MAX_THREADS {
        return Err(format!(
            "topology threads {} is over {MAX_THREADS} per core",
            shape.threads
        ));
    }
    let total = n.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x));
    match total {
        Some(t) if t <= MAX_PCPUS => Ok(shape),
        _ => Err(format!(
            "topology {} {} {} makes more than {MAX_PCPUS} pcpus",
            sockets, cores, threads
        )),
    }
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
    fn topology_sets_or_agrees_with_pcpus_and_mem_round_trips() {
        let s = parse("topology 2 2 2\nvm a 50 mem 1\nvm b 50,50 mem 0 pin 0-3\n").unwrap();
        assert_eq!(s.pcpus, 8, "a topology line alone sets pcpus");
        let shape = Shape {
            sockets: 2,
            cores: 2,
            threads: 2,
        };
        assert_eq!((s.topology, s.nodes()), (Some(shape), 2));
        assert_eq!(s.domains[0].mem_node, Some(1));
        assert_eq!(s.domains[0].affinity.count(), 8);
        assert_eq!(s.domains[1].mem_node, Some(0));
        assert_eq!(s.domains[1].affinity.count(), 4, "pin after mem");
        // Before or after pcpus, as long as they agree; a topology after the vm lines
        // that use its nodes is fine too.
        let after = parse("pcpus 8\nvm a 50 mem 1\ntopology 2 2 2\n").unwrap();
        assert_eq!((after.pcpus, after.topology), (8, Some(shape)));
        let before = parse("topology 2 2 2\npcpus 8\n").unwrap();
        assert_eq!(before.topology, Some(shape));
        // Without a topology line: one node, and mem 0 is allowed.
        let flat = parse("pcpus 2\nvm a 50 mem 0\nat 2 start b 10 mem 0\n").unwrap();
        assert_eq!((flat.topology, flat.nodes()), (None, 1));
        assert!(matches!(&flat.events[0].action, Action::Start(d) if d.mem_node == Some(0)));

        for sc in [&s, &flat] {
            let text = sc.to_string();
            let back = parse(&text).unwrap();
            let without_lines = |mut s: Scenario| {
                s.events.iter_mut().for_each(|e| e.line = 0);
                s
            };
            assert_eq!(without_lines(back), without_lines(sc.clone()), "{text}");
        }
        assert!(s.to_string().starts_with("pcpus 8\ntopology 2 2 2\n"));
        assert!(s.to_string().contains("vm a 50 mem 1\n"));
        assert!(s.to_string().contains("vm b 50,50 pin 0-3 mem 0\n"));
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
                "t.scn:2: unexpected \"on\" after the demands (pin or mem?)",
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
            // topology and mem
            (
                "pcpus 8\ntopology 2 2 1\n",
                "t.scn:2: topology 2 2 1 makes 4 pcpus, but pcpus is 8 (line 1)",
            ),
            (
                "topology 2 2 1\n\npcpus 8\n",
                "t.scn:3: pcpus 8 contradicts topology 2 2 1 on line 1 (4 pcpus)",
            ),
            (
                "topology 1 2 2\ntopology 1 2 2\n",
                "t.scn:2: topology given twice (first on line 1)",
            ),
            (
                "topology 0 2 2\n",
                "t.scn:1: topology sockets 0: each number must be at least 1",
            ),
            (
                "topology 1 0 2\n",
                "t.scn:1: topology cores 0: each number must be at least 1",
            ),
            (
                "topology 1 2 0\n",
                "t.scn:1: topology threads 0: each number must be at least 1",
            ),
            (
                "topology 1 2 9\n",
                "t.scn:1: topology threads 9 is over 8 per core",
            ),
            (
                "topology 65 1 1\n",
                "t.scn:1: topology sockets 65 is over 64",
            ),
            (
                "topology 64 64 4\n",
                "t.scn:1: topology 64 64 4 makes more than 8192 pcpus",
            ),
            (
                "topology 64 99999999999999999 8\n",
                "t.scn:1: topology 64 99999999999999999 8 makes more than 8192 pcpus",
            ),
            (
                "topology 2 2\n",
                "t.scn:1: topology needs SOCKETS CORES THREADS",
            ),
            (
                "topology 2 2 1 1\n",
                "t.scn:1: unexpected \"1\" after topology values",
            ),
            ("topology 2 x 1\n", "t.scn:1: bad number \"x\" for cores"),
            (
                "topology 2 2 1\nvm a 50 mem 2\n",
                "t.scn:2: mem 2: no such node (the host has nodes 0-1)",
            ),
            (
                "pcpus 4\nvm a 50 mem 1\n",
                "t.scn:2: mem 1: no such node (without a topology line the host has one node, 0)",
            ),
            (
                "pcpus 4\nvm a 50 mem 1\ntopology 1 4 1\n",
                "t.scn:2: mem 1: no such node (the host has nodes 0-0)",
            ),
            (
                "topology 2 2 1\nvm a 50\nat 3 start b 50 pin 1 mem 3\n",
                "t.scn:3: mem 3: no such node (the host has nodes 0-1)",
            ),
            (
                "pcpus 4\nvm a 50 mem 70000\n",
                "t.scn:2: mem 70000: no such node (a host has at most 8192)",
            ),
            (
                "pcpus 4\nvm a 50 mem x\n",
                "t.scn:2: bad number \"x\" for mem",
            ),
            ("pcpus 4\nvm a 50 mem\n", "t.scn:2: mem needs a node number"),
            ("pcpus 4\nvm a 50 mem 0 mem 0\n", "t.scn:2: mem given twice"),
            ("pcpus 4\nvm a 50 pin 0 pin 1\n", "t.scn:2: pin given twice"),
            (
                "pcpus 4\nvm a 50 mem 0 x\n",
                "t.scn:2: unexpected \"x\" after the mem node",
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
