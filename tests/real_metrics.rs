//! `--metrics-file` on real QEMU/KVM guests with awkward names, read by the real tools
//! (promtool, node_exporter), and checked against what the test measures itself: each
//! vCPU's pin from /proc and its usage from its thread's CPU time, never the
//! scheduler's own figures. Needs root and a running libvirtd (`scripts/host-setup.sh`).

mod common;

use common::guests::{Load, Meter, PinWatch, Pins, virsh};
use common::harness::*;
use common::prom::{self, value};
use std::collections::BTreeMap;

/// A label value as the text format writes it.
fn escaped(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn vcpu_key(metric: &str, domain: &str, uuid: &str, vcpu: usize) -> String {
    format!(
        "vcpu_scheduler_{metric}{{domain=\"{}\",uuid=\"{uuid}\",vcpu=\"{vcpu}\"}}",
        escaped(domain)
    )
}

/// Two busy vCPUs of a guest named with a quote, a backslash and non-ASCII start on
/// pCPU 0 beside an idle guest. Once the scheduler has split them, the file it leaves
/// passes promtool, node_exporter serves it, and every vCPU's pin and usage in it match
/// /proc.
#[test]
fn metrics_on_real_guests_match_what_the_host_shows() {
    let (_host, mut fleet, n) = setup("met");
    let busy = {
        let name = "web \"prod\" \\ café";
        start(
            &mut fleet,
            name,
            &[Load::Busy, Load::Busy],
            Some("0".into()),
        );
        format!("{}{name}", fleet.prefix())
    };
    let idle = {
        let name = "idle-東京";
        start(&mut fleet, name, &[Load::Idle], Some("0".into()));
        format!("{}{name}", fleet.prefix())
    };
    ready(&fleet);
    let uuid = |name: &str| {
        virsh(&["domuuid", name])
            .unwrap_or_else(|e| panic!("{e}"))
            .trim()
            .to_string()
    };
    let (busy_uuid, idle_uuid) = (uuid(&busy), uuid(&idle));

    let dir = std::env::temp_dir().join(format!("{}metrics", fleet.prefix()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vcpu-scheduler.prom");
    let mut watch = PinWatch::new(fleet.prefix()).expect("read pins");
    let mut sched = Scheduler::spawn(&fleet, &["--metrics-file", file.to_str().unwrap()]);
    let split = |p: &Pins| {
        p.get(&busy)
            .is_some_and(|v| v.len() == 2 && v[0].len() == 1 && v[1].len() == 1 && v[0] != v[1])
    };
    let done = poll_until(&mut sched, &mut watch, deadline(4), split);
    assert!(
        done.is_some(),
        "busy vCPUs not split: {:?}\n{}",
        watch.last,
        sched.output()
    );
    // Three intervals measured by the test while the scheduler keeps writing, then the
    // scheduler stops: its last file covers the window's last interval.
    let mut meter = Meter::new(fleet.prefix()).expect("meter");
    let sample = meter.measure(INTERVAL * 3).expect("measure");
    let output = stop_and_check(sched);
    watch.poll();

    let served = prom::check_and_serve(&dir, &file);
    let mut seen = BTreeMap::new();
    for (domain, uuid, vcpus) in [(&busy, &busy_uuid, 2), (&idle, &idle_uuid, 1)] {
        for v in 0..vcpus {
            let pin = value(&served, &vcpu_key("vcpu_pinned_pcpu", domain, uuid, v));
            let proc_pins = &watch.last[domain.as_str()][v];
            assert_eq!(
                proc_pins,
                &vec![pin as usize],
                "{domain}/{v}: metrics say pCPU {pin}, /proc says {proc_pins:?}\n{output}"
            );
            let usage = value(&served, &vcpu_key("vcpu_usage_ratio", domain, uuid, v));
            let demand = value(&served, &vcpu_key("vcpu_demand_ratio", domain, uuid, v));
            let measured = sample
                .vcpus
                .iter()
                .find(|r| &r.domain == domain && r.vcpu == v)
                .map(|r| r.usage)
                .expect("the test measured every vCPU");
            seen.insert(format!("{domain}/{v}"), (usage, demand, measured));
            assert!(
                (usage - measured).abs() <= 0.15,
                "{domain}/{v}: usage {usage:.3} in the metrics, {measured:.3} measured from /proc"
            );
        }
    }
    eprintln!("(usage, demand, /proc usage) per vCPU: {seen:#?}");
    // A busy vCPU wants a whole pCPU, whatever it got: alone on its pCPU it gets
    // nearly all of it, but on a 2-core machine doing other work too it may get half,
    // and the rest shows as run-queue delay. So demand reads ~1 either way, and usage
    // (checked against /proc above) never more than demand.
    for v in 0..2 {
        let (usage, demand, _) = seen[&format!("{busy}/{v}")];
        assert!(demand >= 0.85, "busy vCPU {v}: demand {demand:.3}");
        assert!(
            usage <= demand + 0.05,
            "busy vCPU {v}: usage {usage:.3} over demand {demand:.3}"
        );
    }
    // QEMU reports run-queue delay: demand is measured, and the split is as good as any.
    assert_eq!(value(&served, "vcpu_scheduler_demand_measured"), 1.0);
    let residual = value(&served, "vcpu_scheduler_residual_imbalance_ratio");
    assert!(
        (0.95..=1.2).contains(&residual),
        "residual imbalance {residual}"
    );
    assert!(value(&served, "vcpu_scheduler_migrations_total") >= 1.0);
    assert_eq!(value(&served, "vcpu_scheduler_pin_failures_total"), 0.0);
    assert_eq!(
        value(&served, "vcpu_scheduler_domains{state=\"managed\"}"),
        2.0
    );
    for p in 0..n {
        let load = value(
            &served,
            &format!("vcpu_scheduler_pcpu_load_ratio{{pcpu=\"{p}\"}}"),
        );
        assert!((0.0..=1.1).contains(&load), "pCPU {p} load {load}");
    }
    let took = value(&served, "vcpu_scheduler_last_tick_duration_seconds");
    eprintln!("last tick took {:.1} ms", took * 1e3);
    assert!(took > 0.0 && took < 0.5, "{took}");
    std::fs::remove_dir_all(&dir).unwrap();
}
