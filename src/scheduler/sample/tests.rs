//! Tests of the sampler: usage, demand and smoothing from raw counters, and matching each
//! vCPU to its own past however the host lists them. Compiled only under #[cfg(test)],
//! from `sample.rs`, like the other `tests.rs` files.

use super::*;

#[test]
fn usage_is_delta_time_over_delta_wall() {
    assert_eq!(usage(0, 0, 500_000_000, 1_000_000_000), Some(0.5));
    assert_eq!(usage(1_000, 10, 1_000, 20), Some(0.0));
}

#[test]
fn usage_needs_a_forward_interval_and_a_forward_counter() {
    assert_eq!(usage(0, 5, 10, 5), None, "no time passed");
    assert_eq!(usage(0, 6, 10, 5), None, "clock went backwards");
    assert_eq!(
        usage(900, 0, 100, 1_000),
        None,
        "cpu time went backwards: new baseline"
    );
}

fn rq(time_ns: u64, delay_ns: u64, at_ns: u64) -> RunQueue {
    RunQueue {
        time_ns,
        delay_ns,
        at_ns,
    }
}

#[test]
fn demand_is_time_plus_delay_over_the_interval() {
    // A busy vCPU sharing with two others: ran a third, waited two thirds.
    let d = demand(&rq(0, 0, 0), &rq(680_000_000, 1_370_000_000, 2_050_000_000));
    assert!((d.unwrap() - 1.0).abs() < 1e-9, "{d:?}");
    // A 30 % guest alone: ran 0.63 s, waited 0.014 s, over 2.05 s.
    let d = demand(&rq(0, 0, 0), &rq(630_000_000, 14_000_000, 2_050_000_000)).unwrap();
    assert!((d - 0.314).abs() < 0.001, "{d}");
    // Clamped to one pCPU (the two counters are read at slightly different times).
    assert_eq!(demand(&rq(0, 0, 0), &rq(600, 500, 1_000)), Some(1.0));
}

#[test]
fn demand_needs_forward_counters_and_interval() {
    assert_eq!(
        demand(&rq(0, 500, 0), &rq(100, 400, 1_000)),
        None,
        "delay back"
    );
    assert_eq!(
        demand(&rq(500, 0, 0), &rq(100, 0, 1_000)),
        None,
        "time back"
    );
    assert_eq!(
        demand(&rq(0, 0, 1_000), &rq(100, 0, 1_000)),
        None,
        "no time passed"
    );
}

#[test]
fn smoothing_averages_noise_and_takes_real_changes_at_once() {
    let mut s = Smoothed::update(None, 0.5);
    assert_eq!(s.value, 0.5);
    // Readings within the band: averaged, and their spread learned as noise.
    for raw in [0.53, 0.47, 0.52, 0.48, 0.51, 0.49] {
        s = Smoothed::update(Some(s), raw);
    }
    assert!((s.value - 0.5).abs() < 0.01, "{s:?}");
    assert!(s.noise > 0.005 && s.noise < 0.03, "{s:?}");
    // A step well beyond the band is taken whole, the same tick.
    let t = Smoothed::update(Some(s), 0.95);
    assert_eq!(t.value, 0.95);
    assert_eq!(t.noise, s.noise, "a step is not noise");
    // A step within the floor is followed gradually.
    let u = Smoothed::update(Some(s), 0.53);
    assert!(u.value > s.value && u.value < 0.53, "{u:?}");
}

#[test]
fn usage_is_clamped_to_one_pcpu() {
    assert_eq!(usage(0, 0, 1_030, 1_000), Some(1.0));
}

/// A host listing three 1-vCPU domains in an order the test sets, domain `d`
/// running `d + 1` tenths of a pCPU.
struct Listing {
    order: Vec<u8>,
    at_ns: u64,
}

#[derive(Debug)]
struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("none")
    }
}

impl HostError for NoError {
    fn kind(&self) -> FailureKind {
        FailureKind::Other
    }
}

impl Host for Listing {
    type Error = NoError;
    fn pcpus(&self) -> usize {
        2
    }
    fn now_ns(&self) -> u64 {
        self.at_ns
    }
    fn refresh(&mut self) -> Result<(), NoError> {
        Ok(())
    }
    fn domain_count(&self) -> usize {
        self.order.len()
    }
    fn domain(&self, i: usize) -> crate::host::DomainInfo<'_> {
        crate::host::DomainInfo {
            key: key(self.order[i]),
            name: ["a", "b", "c"][self.order[i] as usize],
            config_pinned: false,
            mem_nodes: 0,
        }
    }
    fn sample(&mut self, i: usize, out: &mut Vec<VcpuSample>) -> Result<(), NoError> {
        let d = self.order[i];
        out.push(VcpuSample {
            domain: key(d),
            vcpu: VcpuId(0),
            cpu_time_ns: self.at_ns / 10 * (u64::from(d) + 1),
            at_ns: self.at_ns,
            pinned_to: Some(PcpuId(0)),
            last_ran_on: Some(PcpuId(0)),
            run_queue: None,
        });
        Ok(())
    }
    fn pin(&mut self, _: DomainKey, _: VcpuId, _: PcpuId) -> Result<(), NoError> {
        Ok(())
    }
}

fn key(d: u8) -> DomainKey {
    DomainKey {
        uuid: [d; 16],
        id: u32::from(d),
    }
}

#[test]
fn each_vcpu_is_matched_to_its_own_past_whatever_the_listing_order() {
    let mut host = Listing {
        order: vec![0, 1, 2],
        at_ns: 1_000_000_000,
    };
    let (mut sampler, mut units, select) = (Sampler::default(), Vec::new(), Selection::default());
    sampler.measure(&mut host, &select, &mut units).unwrap();
    sampler.commit(&mut units);
    // The same order twice, then others: the index of the previous tick must
    // follow each change of order, or a vCPU gets another's usage.
    for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [1, 2, 0], [0, 1, 2]] {
        host.order = order.to_vec();
        host.at_ns += 1_000_000_000;
        sampler.measure(&mut host, &select, &mut units).unwrap();
        for u in &units {
            let d = u.domain.uuid[0];
            let want = (f64::from(d) + 1.0) / 10.0;
            let got = u.usage.expect("a vCPU seen before has a usage");
            assert!((got - want).abs() < 1e-9, "order {order:?}: {d} got {got}");
        }
        sampler.commit(&mut units);
    }
    // A domain gone from the list: the others keep their own pasts.
    host.order = vec![2, 0];
    host.at_ns += 1_000_000_000;
    sampler.measure(&mut host, &select, &mut units).unwrap();
    let usages: Vec<_> = units.iter().map(|u| u.usage.unwrap()).collect();
    assert!(
        (usages[0] - 0.3).abs() < 1e-9 && (usages[1] - 0.1).abs() < 1e-9,
        "{usages:?}"
    );
}
