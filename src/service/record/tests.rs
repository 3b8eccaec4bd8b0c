// Compiled only under #[cfg(test)], from the parent module: a simulated host recorded
// as `record` records a live one, its file parsed back and replayed.
use super::*;
use crate::cpumap::CpuMap;
use crate::policy::Policy;
use crate::service::simulate::{INTERVAL_NS, SimOptions, run_scenario};
use crate::sim::SimHost;
use crate::sim::scenario::{Action, DomainSpec, Scenario};

/// Record `sc` played on the simulated host, with no scheduler: what `record` would
/// write of a live host behaving so. Returns the file's text.
fn record(sc: &Scenario, select: Selection, anonymize: bool) -> String {
    record_with(sc, select, anonymize, |_, _| ())
}

/// [`record`], calling `between(tick, recorder)` before each tick's measurement.
fn record_with(
    sc: &Scenario,
    select: Selection,
    anonymize: bool,
    mut between: impl FnMut(u64, &mut Recorder),
) -> String {
    let mut host = SimHost::from_scenario(sc).unwrap();
    let about = About::new(
        "sim://test",
        anonymize,
        Duration::from_secs(1),
        host.topology(),
    );
    let mut rec = Recorder::new(select, about, sc.pcpus);
    rec.measure(&mut host, 0).unwrap();
    let mut fractions = Vec::new();
    let mut events = sc.events.iter().peekable();
    for tick in 1..=sc.ticks {
        while let Some(e) = events.next_if(|e| e.tick <= tick) {
            host.apply(&e.action, &mut fractions).unwrap();
        }
        host.advance(INTERVAL_NS);
        between(tick, &mut rec);
        rec.measure(&mut host, tick).unwrap();
    }
    let (head, body) = rec.text(Status::Done);
    format!("{head}{body}")
}

fn parse(text: &str) -> Scenario {
    Scenario::parse(text, "recorded").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The half-width of the noise band at its floor, in percent: what a recording may
/// differ by from the truth.
const BAND_PCT: f64 = JUMP_FLOOR_PCT;
const JUMP_FLOOR_PCT: f64 = crate::scheduler::sample::JUMP_FLOOR * 100.0;

fn assert_demands_within(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: vcpu counts {a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= BAND_PCT, "{what}: demands {a:?} vs {b:?}");
    }
}

fn assert_same_domain(a: &DomainSpec, b: &DomainSpec) {
    assert_eq!(a.name, b.name);
    assert_demands_within(&a.demands_pct, &b.demands_pct, &a.name);
    assert_eq!(a.affinity, b.affinity, "pins of {}", a.name);
    assert_eq!(a.mem_node, b.mem_node, "mem of {}", a.name);
}

/// Events as (tick, what, name), sorted: the order within a tick may differ.
fn events(sc: &Scenario) -> Vec<(u64, String, String, Vec<f64>)> {
    let mut out: Vec<_> = sc
        .events
        .iter()
        .map(|e| {
            let (kind, name, d) = match &e.action {
                Action::Load { name, demands_pct } => ("load", name.clone(), demands_pct.clone()),
                Action::Vcpus { name, demands_pct } => ("vcpus", name.clone(), demands_pct.clone()),
                Action::Start(d) => ("start", d.name.clone(), d.demands_pct.clone()),
                Action::Stop { name } => ("stop", name.clone(), Vec::new()),
                Action::Host(h) => ("host", h.pcpu.to_string(), vec![h.pct]),
            };
            (e.tick, kind.to_owned(), name, d)
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    out
}

/// Same host, domains, pins, memory nodes and events; demands within the band.
fn assert_same_scenario(truth: &Scenario, rec: &Scenario) {
    assert_eq!(rec.pcpus, truth.pcpus);
    assert_eq!(rec.topology, truth.topology);
    assert_eq!(rec.ticks, truth.ticks);
    assert_eq!(rec.reports_delay, truth.reports_delay);
    assert_eq!(rec.domains.len(), truth.domains.len());
    for (a, b) in truth.domains.iter().zip(&rec.domains) {
        assert_same_domain(a, b);
    }
    let (te, re) = (events(truth), events(rec));
    assert_eq!(
        te.iter().map(|e| (e.0, &e.1, &e.2)).collect::<Vec<_>>(),
        re.iter().map(|e| (e.0, &e.1, &e.2)).collect::<Vec<_>>(),
        "events"
    );
    for (a, b) in te.iter().zip(&re) {
        assert_demands_within(&a.3, &b.3, &format!("at {} {} {}", a.0, a.1, a.2));
    }
    let starts = |sc: &Scenario| -> Vec<DomainSpec> {
        sc.events
            .iter()
            .filter_map(|e| match &e.action {
                Action::Start(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    };
    for (a, b) in starts(truth).iter().zip(&starts(rec)) {
        assert_same_domain(a, b);
    }
}

const MIXED: &str = "\
pcpus 4
ticks 30
vm web 100,40 pin 0
vm db 60,60,60,60
vm cache 30,30 pin 1-2 mem 0
at 10 load web 20,20
at 12 start late 90 pin 1
at 15 stop db
at 20 vcpus web 20,20,50
at 25 stop cache
at 26 start cache 70,10 pin 3
";

#[test]
fn a_recording_round_trips_domains_pins_demands_and_events() {
    let truth = parse(MIXED);
    let text = record(&truth, Selection::default(), false);
    let rec = parse(&text);
    assert_same_scenario(&truth, &rec);
    assert!(
        text.contains("# demand: measured (run-queue delay)"),
        "{text}"
    );
    let lines = || text.lines().filter(|l| !l.starts_with('#'));
    assert!(
        lines().all(|l| !l.contains("host")),
        "no host load here\n{text}"
    );
    // Replayed, the scheduler sees the same host: the same run, tick for tick.
    for policy in [Policy::Balance, Policy::Seed] {
        let opts = SimOptions {
            policy,
            ..SimOptions::default()
        };
        let a = run_scenario(&truth, &opts, &mut Vec::new()).unwrap();
        let b = run_scenario(&rec, &opts, &mut Vec::new()).unwrap();
        assert_eq!(
            a, b,
            "{policy:?}: the replay differs from the original\n{text}"
        );
    }
}

#[test]
fn a_shaped_host_is_written_as_its_topology_line() {
    let truth = parse(
        "topology 2 2 2\nticks 12\nvm a 90,90 pin 0-3 mem 0\nvm b 50 pin 4 mem 1\n\
         vm c 20,20,20\nat 6 load c 80,20,20\n",
    );
    let text = record(&truth, Selection::default(), false);
    assert!(text.contains("\ntopology 2 2 2\n"), "{text}");
    assert_same_scenario(&truth, &parse(&text));
}

#[test]
fn demand_estimated_from_usage_says_so_and_replays_without_delay() {
    // Not saturated: usage is demand.
    let truth = parse("pcpus 2\nticks 10\ndelay off\nvm a 60 pin 0\nvm b 30,20\nat 5 load a 10\n");
    let text = record(&truth, Selection::default(), false);
    assert!(text.contains("# demand: estimated from usage"), "{text}");
    assert!(text.contains("\ndelay off\n"), "{text}");
    assert_same_scenario(&truth, &parse(&text));
}

#[test]
fn a_steady_noisy_host_gives_a_short_file() {
    let truth = parse(
        "pcpus 4\nticks 300\nnoise 5\nseed 3\nvm a 58,30 pin 0\nvm b 55\nvm c 51,20 pin 2\n\
         vm d 52 pin 3\n",
    );
    let text = record(&truth, Selection::default(), false);
    let rec = parse(&text);
    assert_eq!(rec.domains.len(), 4);
    // Noise of ±5 % moves a reading up to 2.9 points: inside the band, so no line.
    assert!(
        rec.events.len() <= 3,
        "{} load lines for a steady host:\n{text}",
        rec.events.len()
    );
    for (a, b) in truth.domains.iter().zip(&rec.domains) {
        assert_demands_within(&a.demands_pct, &b.demands_pct, &a.name);
    }
}

#[test]
fn names_the_format_cannot_hold_are_made_safe_and_mapped() {
    let sc = parse("pcpus 2\nticks 6\n");
    let mut host = SimHost::from_scenario(&sc).unwrap();
    let all = CpuMap::all(2);
    host.add_domain("web \"prod\" café", &[0.5], &all).unwrap();
    host.add_domain("web__prod__caf_", &[0.2], &all).unwrap();
    host.add_domain("x\ny#z", &[0.1], &all).unwrap();
    let text = record_host(host, false);
    let rec = parse(&text);
    let names: Vec<&str> = rec.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["web__prod__caf_", "web__prod__caf_-2", "x_y_z"],
        "{text}"
    );
    assert!(
        text.contains("#   web__prod__caf_ = \"web \\\"prod\\\" café\"\n"),
        "{text}"
    );
    assert!(text.contains("#   x_y_z = \"x\\ny#z\"\n"), "{text}");
    // The second was already safe, but its name was taken: it is renamed, and mapped.
    assert!(
        text.contains("#   web__prod__caf_-2 = \"web__prod__caf_\"\n"),
        "{text}"
    );
}

/// Record what is on `host` now, for five ticks.
fn record_host(mut host: SimHost, anonymize: bool) -> String {
    let about = About::new(
        "qemu+ssh://root@secret-host/system",
        anonymize,
        Duration::from_secs(2),
        None,
    );
    let mut rec = Recorder::new(Selection::default(), about, host.pcpus());
    rec.measure(&mut host, 0).unwrap();
    for tick in 1..=5 {
        host.advance(INTERVAL_NS);
        rec.measure(&mut host, tick).unwrap();
    }
    let (head, body) = rec.text(Status::Stopped);
    format!("{head}{body}")
}

#[test]
fn anonymized_recordings_name_no_domain_and_no_host() {
    let truth = parse(MIXED);
    let text = record(&truth, Selection::default(), true);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for secret in ["web", "db", "cache", "late"] {
            assert!(!line.contains(secret), "{secret} in {line:?}\n{text}");
        }
    }
    assert!(!text.contains(" = \""), "no name map\n{text}");
    let rec = parse(&text);
    let names: Vec<&str> = rec.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["d1", "d2", "d3"]);
    // Consistent: `cache` stops and starts again as the same d3; `late` is d4.
    let ev = events(&rec);
    assert!(
        ev.iter()
            .any(|e| e == &(25, "stop".into(), "d3".into(), vec![])),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| e.0 == 26 && e.1 == "start" && e.2 == "d3"),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|e| e.0 == 12 && e.1 == "start" && e.2 == "d4"),
        "{ev:?}"
    );
    let host = SimHost::from_scenario(&parse("pcpus 2\nticks 1\nvm a 10\n")).unwrap();
    let text = record_host(host, true);
    assert!(
        text.contains("# uri: not written (--anonymize); driver qemu\n"),
        "{text}"
    );
    assert!(!text.contains("secret-host"), "{text}");
}

#[test]
fn excluded_domains_are_not_recorded() {
    let truth = parse(MIXED);
    let select = Selection::new(vec![], vec!["d*".into(), "late".into()]);
    let rec = parse(&record(&truth, select, false));
    let names: Vec<&str> = rec.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["web", "cache"]);
    assert!(events(&rec).iter().all(|e| e.2 != "db" && e.2 != "late"));
}

#[test]
fn vcpus_pinned_apart_are_written_as_their_union_with_a_note() {
    let sc = parse("pcpus 4\nticks 4\n");
    let mut host = SimHost::from_scenario(&sc).unwrap();
    host.add_domain("split", &[0.5, 0.5], &CpuMap::all(4))
        .unwrap();
    let key = host.key("split").unwrap();
    host.pin(key, crate::host::VcpuId(0), crate::host::PcpuId(1))
        .unwrap();
    host.pin(key, crate::host::VcpuId(1), crate::host::PcpuId(3))
        .unwrap();
    let text = record_host(host, false);
    assert!(text.contains("\nvm split 50,50 pin 1,3\n"), "{text}");
    assert!(
        text.contains("split: its vcpus' pins differ (vcpu 0: 1, vcpu 1: 3)"),
        "{text}"
    );
}

/// After a lost connection the recorder starts again from fresh baselines: domains
/// that stopped meanwhile stop at the tick the clock reached, the others go on.
#[test]
fn a_reconnect_goes_on_where_the_clock_is() {
    let truth = parse("pcpus 2\nticks 20\nvm a 50 pin 0\nvm b 30 pin 1\nvm c 20\n");
    let mut host = SimHost::from_scenario(&truth).unwrap();
    let about = About::new("sim://", false, Duration::from_secs(1), None);
    let mut rec = Recorder::new(Selection::default(), about, 2);
    rec.measure(&mut host, 0).unwrap();
    for tick in 1..=5 {
        host.advance(INTERVAL_NS);
        rec.measure(&mut host, tick).unwrap();
    }
    // Lost for ticks 6-9: meanwhile b stops and a turns busy.
    host.stop_domain("b").unwrap();
    host.set_demands("a", &[1.0]).unwrap();
    for _ in 6..=9 {
        host.advance(INTERVAL_NS);
    }
    rec.reconnected();
    rec.measure(&mut host, 9).unwrap();
    for tick in 10..=12 {
        host.advance(INTERVAL_NS);
        rec.measure(&mut host, tick).unwrap();
    }
    rec.trace_mut().note("connection lost after tick 5".into());
    let (head, body) = rec.text(Status::Stopped);
    let text = format!("{head}{body}");
    let sc = parse(&text);
    assert_eq!(sc.ticks, 12);
    let ev = events(&sc);
    assert_eq!(
        ev,
        [
            (9, "stop".into(), "b".into(), vec![]),
            (10, "load".into(), "a".into(), vec![100.0]),
        ],
        "{text}"
    );
    assert!(
        text.contains("# note: connection lost after tick 5\n"),
        "{text}"
    );
}

#[test]
fn a_recording_stopped_before_its_first_interval_still_parses() {
    let host = SimHost::from_scenario(&parse("pcpus 2\nticks 1\nvm a 10\n")).unwrap();
    let about = About::new("sim://", false, Duration::from_secs(1), None);
    let mut rec = Recorder::new(Selection::default(), about, 2);
    let mut host = host;
    rec.measure(&mut host, 0).unwrap();
    let (head, body) = rec.text(Status::Stopped);
    let sc = parse(&format!("{head}{body}"));
    assert!(sc.domains.is_empty());
    assert_eq!(sc.ticks, 1);
}

/// Load no vCPU explains, recorded as `host` lines and replayed as the
/// simulator models it.
#[test]
fn host_load_round_trips() {
    let truth = parse(
        "pcpus 2\nticks 12\ndelay off\nvm a 40 pin 0\nvm b 30 pin 1\nhost 1 40\nat 6 host 1 0\n",
    );
    let text = record(&truth, Selection::default(), false);
    assert!(text.contains("\nhost 1 40\n"), "{text}");
    assert!(text.contains("\nat 6 host 1 0\n"), "{text}");
}
