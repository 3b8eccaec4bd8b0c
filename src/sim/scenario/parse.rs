//! The line parser behind [`Scenario::parse`]: one directive at a time into [`Parser`],
//! then [`Parser::finish`] checks the whole (names, counts, ticks) at once.

use std::collections::HashMap;

use super::{
    Action, DEFAULT_SEED, DEFAULT_TICKS, DomainSpec, Event, HostLoad, MAX_DOMAIN_VCPUS, MAX_NODES,
    MAX_PCPUS, MAX_THREADS, MAX_TICKS, MAX_VCPUS, Scenario, Shape,
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
    /// `host PCPU PCT` lines, each with its line.
    host: Vec<(HostLoad, usize)>,
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
                if n > MAX_TICKS {
                    return Err(format!("ticks {n} is over {MAX_TICKS}"));
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
            "host" => {
                let pcpus = self.pcpus_for("host")?;
                let load = host_load(args, pcpus)?;
                if let Some((_, first)) = self.host.iter().find(|(h, _)| h.pcpu == load.pcpu) {
                    return Err(format!(
                        "host load of pcpu {} already given on line {first} (use at T host to change it)",
                        load.pcpu
                    ));
                }
                self.host.push((load, line));
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
                "unknown keyword {other:?} (expected pcpus, topology, ticks, noise, seed, delay, vm, host or at)"
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
        // vCPU count of each running domain, and of all of them, as the events unfold.
        let mut running: HashMap<&str, usize> = HashMap::new();
        let mut vcpus_now = 0usize;
        let too_many = |line: usize, n: usize| {
            (
                Some(line),
                format!("{n} vcpus would run at once, over {MAX_VCPUS}"),
            )
        };
        for (d, line) in &self.domains {
            running.insert(d.name.as_str(), d.demands_pct.len());
            vcpus_now += d.demands_pct.len();
            if vcpus_now > MAX_VCPUS {
                return Err(too_many(*line, vcpus_now));
            }
        }
        for e in &self.events {
            let at = |msg: String| (Some(e.line), msg);
            match &e.action {
                Action::Start(d) => {
                    if running.contains_key(d.name.as_str()) {
                        return Err(at(format!(
                            "start of {:?}, which is already running at tick {}",
                            d.name, e.tick
                        )));
                    }
                    running.insert(&d.name, d.demands_pct.len());
                    vcpus_now += d.demands_pct.len();
                }
                Action::Load { name, demands_pct } => {
                    let Some(&vcpus) = running.get(name.as_str()) else {
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
                    let Some(slot) = running.get_mut(name.as_str()) else {
                        return Err(at(format!(
                            "vcpus of unknown vm {name:?} (not running at tick {})",
                            e.tick
                        )));
                    };
                    vcpus_now = vcpus_now - *slot + demands_pct.len();
                    *slot = demands_pct.len();
                }
                Action::Stop { name } => {
                    let Some(vcpus) = running.remove(name.as_str()) else {
                        return Err(at(format!(
                            "stop of unknown vm {name:?} (not running at tick {})",
                            e.tick
                        )));
                    };
                    vcpus_now -= vcpus;
                }
                Action::Host(_) => {}
            }
            if vcpus_now > MAX_VCPUS {
                return Err(too_many(e.line, vcpus_now));
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
            host: self.host.into_iter().map(|(h, _)| h).collect(),
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
        ["host", rest @ ..] => Ok(Action::Host(host_load(rest, pcpus)?)),
        ["stop", _, extra, ..] => Err(format!("unexpected {extra:?} after the name")),
        ["stop"] => Err("stop needs a name".into()),
        [other, ..] => Err(format!(
            "unknown action {other:?} (expected load, vcpus, start, stop or host)"
        )),
        [] => Err("at needs a tick and an action".into()),
    }
}

/// `PCPU PCT` of a `host` line: load from outside any domain on that pCPU.
fn host_load(args: &[&str], pcpus: usize) -> Result<HostLoad, String> {
    match args {
        [pcpu, pct] => {
            let p = parse_int(pcpu, "host pcpu")?;
            let pcpu = usize::try_from(p)
                .ok()
                .filter(|&p| p < pcpus)
                .ok_or_else(|| format!("host pcpu {p} is out of range 0-{}", pcpus - 1))?;
            let pct = parse_pct(pct, "host load")?;
            Ok(HostLoad { pcpu, pct })
        }
        [_, _, extra, ..] => Err(format!("unexpected {extra:?} after the host load")),
        _ => Err("host needs a pcpu and a load %, e.g. `host 0 80`".into()),
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

/// Comma-separated percentages, one per vCPU (at most [`MAX_DOMAIN_VCPUS`]).
fn parse_demands(s: &str) -> Result<Vec<f64>, String> {
    let n = s.split(',').count();
    if n > MAX_DOMAIN_VCPUS {
        return Err(format!(
            "{n} demands: a domain has at most {MAX_DOMAIN_VCPUS} vcpus"
        ));
    }
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
mod tests;
