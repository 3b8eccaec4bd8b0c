//! Keeping the simulator honest with a recording of real QEMU/KVM guests: `record` the
//! guests as they run, all born on pCPU 0 with no scheduler running; replay the
//! recording through `simulate` under `balance` and note the placement it predicts;
//! then run the daemon on the same guests and read the placement it reaches from
//! /proc. The two must agree on which vCPUs share a pCPU, up to renaming the pCPUs.
//!
//! What the measurements allow, and so what is asserted:
//! - vCPUs the recording says are idle (demand under the 5 % noise floor) go anywhere:
//!   where one ends changes no pCPU's load by more than noise, and neither the
//!   simulator nor the daemon moves one for so little. They are reported, not compared.
//! - vCPUs recorded with the same demand are interchangeable: which of two busy vCPUs
//!   pairs with what is decided by noise of a few tenths of a percent on the real host
//!   (a first version of this test had a busy 1-vCPU guest beside the 2-vCPU one: the
//!   simulator, reading 100/100/100, split the 2-vCPU guest; the daemon, reading
//!   99.x, kept its vCPUs together: two placements of the same cost). So the busy
//!   vCPUs here are the two of one guest, compared as one kind (`multi/*`), and every
//!   other guest has a demand of its own.
//! - A duty-cycle guest squeezed onto one pCPU with busy ones wants more than its duty
//!   (it stays runnable while it waits for its timer): a 10 % guest read 43 % beside
//!   three busy vCPUs. 5 % and 15 % stay clearly apart there and clearly below a busy
//!   vCPU, which is what makes the right answer unique. (A 50 % guest reads 100 %
//!   squeezed, like a busy one; see `scenarios/recorded/` and the README.)
//!
//! The right answer, for the simulator from the recording and for the daemon from its
//! own measurements: the busy vCPUs apart, one light guest with each.
//!
//! Needs root and a running libvirtd (`scripts/host-setup.sh`); the pCPUs are 0-1 on
//! any host (`--cpus 0-1` for the daemon), which a recording of a 2-pCPU host has.

mod common;

use common::guests::{self, Load, PinWatch, Pins};
use common::harness::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::thread;
use std::time::Instant;

use vcpu_scheduler::sim::scenario::Scenario;

const BIN: &str = env!("CARGO_BIN_EXE_vcpu-scheduler");
/// How long the host is recorded, and at what interval (the daemon's, below).
const RECORD_FOR: &str = "15s";
/// The daemon's placement is final once no pin changed for this many intervals.
const QUIET_INTERVALS: u32 = 3;

/// vCPU `(domain, vcpu)` -> the one pCPU it is pinned to.
type Placement = BTreeMap<(String, usize), usize>;

/// The placement `simulate --json` ends with: the recording's pins, then every
/// applied move in turn. Also the number of moves.
fn predicted(sc: &Scenario, json: &str) -> (Placement, usize) {
    let mut at = Placement::new();
    for d in &sc.domains {
        let p = d.affinity.only().expect("born pinned to one pCPU");
        for k in 0..d.demands_pct.len() {
            at.insert((d.name.clone(), k), p);
        }
    }
    let mut moves = 0;
    // {"domain":"NAME","vcpu":K,"from":F,"to":P,"applied":true}
    for m in json.split("{\"domain\":").skip(1) {
        let field = |key: &str| {
            let rest = m.split(&format!("\"{key}\":")).nth(1)?;
            Some(rest.split([',', '}']).next()?.trim_matches('"').to_owned())
        };
        let name = m.split('"').nth(1).expect("a domain name").to_owned();
        if field("applied").as_deref() != Some("true") {
            continue;
        }
        let vcpu = field("vcpu").and_then(|v| v.parse().ok()).expect("vcpu");
        let to = field("to").and_then(|v| v.parse().ok()).expect("to");
        at.insert((name, vcpu), to);
        moves += 1;
    }
    (at, moves)
}

/// The placement in /proc, when every vCPU is pinned to exactly one pCPU.
fn real(pins: &Pins) -> Option<Placement> {
    let mut at = Placement::new();
    for (name, vcpus) in pins {
        for (k, allowed) in vcpus.iter().enumerate() {
            match allowed.as_slice() {
                [p] => at.insert((name.clone(), k), *p),
                _ => return None,
            };
        }
    }
    Some(at)
}

/// Which vCPUs share a pCPU, up to renaming pCPUs: one sorted list of labels per used
/// pCPU, the lists sorted. `label` names a vCPU, or leaves it out (`None`).
fn groups(at: &Placement, label: &dyn Fn(&str, usize) -> Option<String>) -> Vec<Vec<String>> {
    let mut by_pcpu: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for ((name, k), p) in at {
        if let Some(l) = label(name, *k) {
            by_pcpu.entry(*p).or_default().push(l);
        }
    }
    let mut out: Vec<Vec<String>> = by_pcpu
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    out.sort();
    out
}

/// The recording as the simulator here reads it, and how many lines were left out:
/// the text itself when it parses, else without its `host` lines (see the test).
fn replayable(text: &str) -> (String, usize) {
    match Scenario::parse(text, "recording") {
        Ok(_) => (text.to_owned(), 0),
        Err(e) if e.reason.contains("host") => {
            let is_host = |l: &&str| {
                let w: Vec<&str> = l.split_whitespace().collect();
                matches!(w.as_slice(), ["host", ..] | ["at", _, "host", ..])
            };
            let dropped = text.lines().filter(is_host).count();
            let kept: Vec<&str> = text.lines().filter(|l| !is_host(l)).collect();
            (kept.join("\n") + "\n", dropped)
        }
        Err(e) => panic!("{e}\n{text}"),
    }
}

/// Run a command under `timeout`, so nothing outlives a test that dies.
fn output(args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["--kill-after=5", "90"])
        .arg(BIN)
        .args(args)
        .output()
        .expect("run vcpu-scheduler")
}

#[test]
fn the_simulator_predicts_the_daemons_placement_of_a_recorded_host() {
    let (_host, mut fleet, _n) = setup("rec");
    let t0 = Instant::now();
    let kinds: [(&str, &[Load]); 4] = [
        ("multi", &[Load::Busy, Load::Busy]),
        ("duty5", &[Load::Duty(5)]),
        ("duty15", &[Load::Duty(15)]),
        ("idle", &[Load::Idle]),
    ];
    for (name, loads) in kinds {
        start(&mut fleet, name, loads, Some("0".into()));
    }
    ready(&fleet);
    let prefix = fleet.prefix().to_string();
    let dir = std::env::temp_dir().join(format!("vcs-real-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("host.scn");
    let path = file.to_str().unwrap();
    let replay = dir.join("replay.scn");

    // 1. Record, with nothing else running on these guests.
    let recorded_at = Instant::now();
    let glob = fleet.glob();
    let o = output(&[
        "record",
        "-c",
        guests::URI,
        "-d",
        &glob,
        "--for",
        RECORD_FOR,
        "1",
        path,
    ]);
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    let record_s = recorded_at.elapsed().as_secs_f64();
    assert!(o.status.success(), "record failed: {}\n{log}", o.status);
    let text = std::fs::read_to_string(&file).unwrap();
    eprintln!(
        "recording ({record_s:.1} s):\n{}{}",
        indent(&log),
        indent(&text)
    );
    // Load no recorded vCPU explains (another engineer's build on this shared host, say)
    // is written as `host` lines, which the simulator reads once the planner's branch
    // (i15-plan) is merged. Until then the replay drops them: with demand measured the
    // plan is made on demand, which host load does not change, only what vCPUs get.
    let (replayed, dropped) = replayable(&text);
    if dropped > 0 {
        eprintln!(
            "note: {dropped} host lines dropped for the replay (the simulator does not read them yet)"
        );
    }
    std::fs::write(&replay, &replayed).unwrap();
    let sc = Scenario::load(&replay).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(sc.domains.len(), 4, "{text}");
    let demand: BTreeMap<(String, usize), f64> = sc
        .domains
        .iter()
        .flat_map(|d| {
            d.demands_pct
                .iter()
                .enumerate()
                .map(|(k, &x)| ((d.name.clone(), k), x))
        })
        .collect();
    let short = |name: &str| name.strip_prefix(&prefix).unwrap_or(name).to_owned();
    let loaded =
        |name: &str, k: usize| demand.get(&(name.to_owned(), k)).is_some_and(|&d| d >= 5.0);
    // Interchangeable: the vCPUs of one domain recorded alike.
    let alike = |name: &str| {
        let d: Vec<f64> = sc
            .domains
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.demands_pct.clone())
            .unwrap_or_default();
        d.iter().all(|x| (x - d[0]).abs() <= 5.0)
    };
    let class = |name: &str, k: usize| {
        loaded(name, k).then(|| {
            if alike(name) {
                format!("{}/*", short(name))
            } else {
                format!("{}/{k}", short(name))
            }
        })
    };
    let exact = |name: &str, k: usize| Some(format!("{}/{k}", short(name)));
    let reads: Vec<String> = sc
        .domains
        .iter()
        .map(|d| format!("{} {:?}", short(&d.name), d.demands_pct))
        .collect();

    // 2. Replay it through `simulate` under balance.
    let o = output(&[
        "simulate",
        replay.to_str().unwrap(),
        "--policy",
        "balance",
        "--json",
    ]);
    assert!(
        o.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let json = String::from_utf8_lossy(&o.stdout);
    let (sim_at, sim_moves) = predicted(&sc, &json);
    let summary = json.lines().last().unwrap_or("").to_owned();

    // 3. The daemon on the same guests, its placement from /proc once it held still.
    let mut watch = PinWatch::new(&prefix).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &["--cpus", "0-1"]);
    let mut last_change = Instant::now();
    let quiet = INTERVAL * QUIET_INTERVALS;
    let limit = deadline(12);
    let settled = loop {
        thread::sleep(PIN_POLL);
        if watch.poll() > 0 {
            last_change = Instant::now();
        }
        assert!(
            sched.alive(),
            "vcpu-scheduler exited early\n{}",
            sched.output()
        );
        let placed = real(&watch.last).is_some_and(|p| p.values().all(|&c| c <= 1));
        if placed && sched.elapsed() >= INTERVAL * 2 && last_change.elapsed() >= quiet {
            break true;
        }
        if sched.elapsed() >= limit {
            break false;
        }
    };
    let daemon_log = stop_and_check(sched);
    watch.cross_check().expect("virsh vcpupin and /proc agree");
    let real_at = real(&watch.last).unwrap_or_default();
    let (sim_exact, real_exact) = (groups(&sim_at, &exact), groups(&real_at, &exact));
    let (sim_class, real_class) = (groups(&sim_at, &class), groups(&real_at, &class));
    eprintln!(
        "FIGURES real_record: recorded {} of {} ({} bytes; demands {reads:?}); \
         predicted {sim_exact:?} in {sim_moves} migrations; real {real_exact:?} in {} pin \
         changes; compared (idle left out, alike vCPUs of a domain as one) {sim_class:?} vs \
         {real_class:?}; {summary}; {dropped} host lines left out of the replay; test wall \
         time {:.1} s",
        RECORD_FOR,
        kinds.map(|k| k.0).join(" "),
        text.len(),
        watch.changes,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        settled,
        "the daemon's pins did not hold still for {QUIET_INTERVALS} intervals within {limit:?}: \
         {:?}\n{daemon_log}",
        watch.last
    );
    assert_eq!(
        sim_class, real_class,
        "the simulator predicted {sim_exact:?}, the daemon reached {real_exact:?}\n{text}\n{json}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
