// Compiled only under #[cfg(test)], from the parent module.
use super::*;
use crate::host::{FailureKind, Host, HostError, VcpuId};

use crate::sim::test_support::{SEC, all, one, samples, usage};

#[test]
fn a_pin_takes_effect_from_the_next_interval() {
    let mut h = SimHost::new(2);
    h.add_domain("a", &[1.0], &one(2, 0)).unwrap();
    let b = h.add_domain("b", &[1.0], &one(2, 0)).unwrap();
    h.advance(SEC);
    assert!((usage(&h, "b", 0) - 0.5).abs() < 1e-12);
    assert_eq!(h.demand_placement_stats(), (2.0, 1.0));
    h.pin(b, VcpuId(0), PcpuId(1)).unwrap();
    // The stats already see the pin; the last interval's usage does not change.
    assert_eq!(h.demand_placement_stats(), (1.0, 1.0));
    assert!((usage(&h, "b", 0) - 0.5).abs() < 1e-12);
    h.advance(SEC);
    assert!((usage(&h, "b", 0) - 1.0).abs() < 1e-12);
    assert_eq!(h.vcpu("b", 0).unwrap().ran_on, PcpuId(1));
    assert!((h.max_over_bound() - 1.0).abs() < 1e-12);
}

#[test]
fn bound_is_the_larger_of_the_biggest_vcpu_and_the_average() {
    let mut h = SimHost::new(4);
    assert_eq!(h.demand_placement_stats(), (0.0, 0.0));
    assert_eq!(h.max_over_bound(), 1.0, "no demand at all is perfect");
    h.add_domain("big", &[0.8], &one(4, 0)).unwrap();
    h.add_domain("small", &[0.1, 0.1], &one(4, 0)).unwrap();
    let (busiest, bound) = h.demand_placement_stats();
    assert!((busiest - 1.0).abs() < 1e-12);
    assert!((bound - 0.8).abs() < 1e-12);
    assert!((h.max_over_bound() - 1.25).abs() < 1e-12);
}

#[test]
fn errors_are_classified_and_read_as_one_line() {
    let mut h = SimHost::new(2);
    let a = h.add_domain("a", &[0.5, 0.5], &all(2)).unwrap();
    let e = h.pin(a, VcpuId(0), PcpuId(2)).unwrap_err();
    assert_eq!(e, SimHostError::PcpuOutOfRange { pcpu: 2, pcpus: 2 });
    assert_eq!(e.kind(), FailureKind::Other);
    assert_eq!(e.to_string(), "pcpu 2 does not exist (host has 2 pcpus)");
    let e = h.pin(a, VcpuId(2), PcpuId(0)).unwrap_err();
    assert_eq!(e.to_string(), "domain \"a\" has no vcpu 2 (it has 2)");
    let e = h.add_domain("a", &[0.5], &all(2)).unwrap_err();
    assert_eq!(e.to_string(), "domain \"a\" is already running");
    let e = h.add_domain("b", &[1.5], &all(2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "demand 1.5 of vcpu 0 of domain \"b\" is outside 0-1"
    );
    let e = h.add_domain("b", &[f64::NAN], &all(2)).unwrap_err();
    assert!(matches!(e, SimHostError::BadDemand { .. }));
    let e = h.add_domain("b", &[0.5], &CpuMap::new(2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "affinity none of domain \"b\" does not fit this host"
    );
    let e = h.add_domain("b", &[0.5], &all(3)).unwrap_err();
    assert!(matches!(e, SimHostError::BadAffinity { .. }));
    let e = h.set_demands("a", &[0.5]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "1 demands given but domain \"a\" has 2 vcpus"
    );
    let e = h.set_demands("zz", &[0.5]).unwrap_err();
    assert_eq!(e.to_string(), "no domain \"zz\"");
    assert_eq!(e.kind(), FailureKind::DomainGone);

    // Stopped but still listed: sampling and pinning fail as "gone".
    h.refresh().unwrap();
    h.stop_domain("a").unwrap();
    let e = h.pin(a, VcpuId(0), PcpuId(0)).unwrap_err();
    assert_eq!(e.to_string(), "domain \"a\" is not running");
    assert_eq!(e.kind(), FailureKind::DomainGone);
    let e = h.sample(0, &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind(), FailureKind::DomainGone);
    // Once refreshed away, the key is unknown.
    h.refresh().unwrap();
    let e = h.pin(a, VcpuId(0), PcpuId(0)).unwrap_err();
    assert_eq!(e.kind(), FailureKind::DomainGone);
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn domains_appear_and_vanish_at_refresh_and_restarts_get_a_new_id() {
    let mut h = SimHost::new(2);
    let a1 = h.add_domain("a", &[0.5], &all(2)).unwrap();
    h.add_domain("b", &[0.5], &all(2)).unwrap();
    assert_eq!(h.domain_count(), 0, "not listed before a refresh");
    h.refresh().unwrap();
    assert_eq!(h.domain_count(), 2);
    assert_eq!(h.domain(0).name, "a");
    h.advance(SEC);
    h.stop_domain("a").unwrap();
    let a2 = h.add_domain("a", &[0.5], &all(2)).unwrap();
    assert_eq!(a1.uuid, a2.uuid);
    assert_ne!(a1.id, a2.id);
    // Still the old listing until the refresh.
    assert_eq!(h.domain(0).key, a1);
    h.refresh().unwrap();
    assert_eq!(h.domain_count(), 2);
    assert_eq!(h.domain(0).name, "b");
    assert_eq!(h.domain(1).key, a2);
    assert_eq!(h.domain_name(a2), Some("a"));
    assert_eq!(h.domain_name(a1), None);
    let s = samples(&mut h);
    assert_eq!(s[1].cpu_time_ns, 0, "a restarted domain starts from zero");
    assert_ne!(uuid_from_name("a"), uuid_from_name("b"));
}

#[test]
fn noise_is_bounded_seeded_and_never_runs_time_backwards() {
    let run = |seed| {
        let mut h = SimHost::new(1);
        h.set_noise(5.0, seed);
        h.add_domain("a", &[0.6], &all(1)).unwrap();
        let mut times = Vec::new();
        for _ in 0..200 {
            h.advance(SEC);
            times.push(samples(&mut h)[0].cpu_time_ns);
        }
        times
    };
    let t = run(7);
    assert_eq!(t, run(7), "same seed, same run");
    assert_ne!(t, run(8));
    let mut prev = 0;
    let mut spread = (f64::MAX, 0.0_f64);
    for &now in &t {
        assert!(now >= prev);
        let u = (now - prev) as f64 / SEC as f64;
        assert!((0.6 * 0.95 - 1e-9..=0.6 * 1.05 + 1e-9).contains(&u), "{u}");
        spread = (spread.0.min(u), spread.1.max(u));
        prev = now;
    }
    assert!(
        spread.1 - spread.0 > 0.03,
        "the noise is really there: {spread:?}"
    );
}

#[test]
fn steady_state_buffers_do_not_grow() {
    let mut h = SimHost::new(8);
    for i in 0..20 {
        let name = format!("d{i}");
        h.add_domain(&name, &[0.3, 0.7], &all(8)).unwrap();
    }
    h.refresh().unwrap();
    h.advance(SEC);
    let caps = (h.placement.capacity(), h.slots.capacity());
    let mut out = Vec::with_capacity(40);
    for t in 0..100u32 {
        let k = h.domain(t as usize % 20).key;
        h.pin(k, VcpuId(t % 2), PcpuId(t % 8)).unwrap();
        h.advance(SEC);
        out.clear();
        for i in 0..h.domain_count() {
            h.sample(i, &mut out).unwrap();
        }
    }
    assert_eq!((h.placement.capacity(), h.slots.capacity()), caps);
    assert_eq!(out.capacity(), 40);
}

/// Load from outside any domain competes for its pCPU like one more thread, and shows
/// as busy time the vCPUs did not use.
#[test]
fn host_load_takes_its_share_and_reads_as_busy_time() {
    use crate::host::PcpuTimes;
    let mut h = SimHost::new(2);
    h.add_domain("busy", &[1.0], &one(2, 0)).unwrap();
    h.add_domain("light", &[0.1], &one(2, 1)).unwrap();
    h.set_host_load(0, 0.8).unwrap();
    h.advance(SEC);
    // Water-filling: 0.8 and 1.0 on one pCPU get half each.
    assert!((usage(&h, "busy", 0) - 0.5).abs() < 1e-12);
    assert!((h.host_got(0).unwrap() - 0.5).abs() < 1e-12);
    assert!((usage(&h, "light", 0) - 0.1).abs() < 1e-12);
    let mut t = PcpuTimes::default();
    assert!(h.sample_pcpu(0, &mut t).unwrap());
    assert_eq!((t.busy_ns, t.total_ns), (SEC, SEC));
    assert!(h.sample_pcpu(1, &mut t).unwrap());
    assert_eq!(t.busy_ns, SEC / 10, "only the light vCPU ran there");
    // Unpinned vCPUs avoid it as they avoid each other.
    h.add_domain("free", &[0.5], &all(2)).unwrap();
    h.advance(SEC);
    assert_eq!(h.vcpu("free", 0).unwrap().ran_on, PcpuId(1));
    assert!(h.set_host_load(2, 0.1).is_err() && h.set_host_load(0, 1.5).is_err());
}
