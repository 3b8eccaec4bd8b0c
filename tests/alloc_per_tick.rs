//! Zero heap allocation per tick in steady state, proven with a counting allocator.
//!
//! The scheduler runs against libvirt's test driver (real bindings, real buffers).
//! Between ticks the test undoes one pin by giving a vCPU all pCPUs again, so every
//! tick measures, plans and really pins something. Only what happens inside `tick()`
//! is counted, and so is writing the `--metrics-file` the daemon writes after each tick.
//! The second test does the same for `record`: its measurement and the file it writes.
//! It sees Rust's heap only; libvirt's own mallocs need valgrind. The watch for a silent
//! libvirtd (`silence.rs`) is on in both, as in the daemon (it is process-wide, so
//! each test turns it on rather than depend on which runs first).

mod counting_alloc;

use std::time::Duration;

use counting_alloc::allocations;
use vcpu_scheduler::cpumap::CpuMap;
use vcpu_scheduler::files::ReplacedFile;
use vcpu_scheduler::host::{Host, VcpuId};
use vcpu_scheduler::libvirt::{Connection, LibvirtHost};
use vcpu_scheduler::scheduler::select::Selection;
use vcpu_scheduler::scheduler::{SchedConfig, Scheduler};
use vcpu_scheduler::service::prometheus::{Counters, MetricsFile};
use vcpu_scheduler::service::record::{About, Recorder, Status};

#[test]
fn steady_state_ticks_allocate_nothing() {
    let uri = format!(
        "test://{}/tests/fixtures/node4.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    // As the daemon does: every call below then runs under the silent-libvirtd watch.
    vcpu_scheduler::libvirt::silence::enable().unwrap();
    let conn = Connection::open(&uri).unwrap();
    let host = LibvirtHost::new(&conn).unwrap();
    // The fixture pins its domains in their configuration: manage them anyway.
    let cfg = SchedConfig {
        select: Selection::default().repin_configured(true),
        ..SchedConfig::default()
    };
    let mut sched = Scheduler::new(host, cfg);

    // The vCPU the test keeps un-pinning, through its own handle on the same connection.
    sched.host_mut().refresh().unwrap();
    let four = (0..sched.host().domain_count())
        .map(|d| sched.host().domain(d))
        .find(|d| d.name == "four")
        .unwrap()
        .key;
    let dom = conn.domain_by_id(four.id as i32).unwrap();
    let everywhere = CpuMap::all(4);
    let dir = std::env::temp_dir().join(format!("vcpu-alloc-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vcpu-scheduler.prom");
    let mut metrics = MetricsFile::new(&path, None).unwrap();
    let mut counters = Counters::default();

    for _ in 0..10 {
        sched.tick().unwrap();
        metrics.publish(&sched.report(), &counters);
    }

    let (mut allocs, mut pins) = (0, 0);
    let ticks = 1_000;
    for _ in 0..ticks {
        dom.pin_vcpu(VcpuId(3), &everywhere).unwrap();
        let before = allocations();
        let migrations = sched.migrations();
        sched.tick().unwrap();
        counters.migrations = sched.migrations();
        counters.tick_seconds += 0.001;
        metrics.publish(&sched.report(), &counters);
        allocs += allocations() - before;
        pins += sched.migrations() - migrations;
    }
    assert_eq!(pins, ticks, "every tick re-pinned the vCPU");
    assert_eq!(allocs, 0, "heap allocations in {ticks} steady-state ticks");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains(&format!(
            "vcpu_scheduler_migrations_total {}",
            sched.migrations()
        )),
        "the last tick's metrics were written:\n{written}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `record`'s tick allocates nothing either: the sampler, the trace and the copy of the
/// file written after the tick (here after every tick, the worst case), against the
/// same fixture, while someone else keeps changing a pin (which the trace counts).
#[test]
fn steady_state_recording_ticks_allocate_nothing() {
    let uri = format!(
        "test://{}/tests/fixtures/node4.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    vcpu_scheduler::libvirt::silence::enable().unwrap();
    let conn = Connection::open(&uri).unwrap();
    let mut host = LibvirtHost::new(&conn).unwrap();
    let about = About::new(&uri, false, Duration::from_secs(1), host.topology());
    let mut rec = Recorder::new(Selection::default(), about, host.pcpus());
    host.refresh().unwrap();
    let four = (0..host.domain_count())
        .map(|d| host.domain(d))
        .find(|d| d.name == "four")
        .unwrap()
        .key;
    let dom = conn.domain_by_id(four.id as i32).unwrap();
    let (everywhere, one) = (CpuMap::all(4), CpuMap::parse_list("2", 4).unwrap());
    let dir = std::env::temp_dir().join(format!("vcpu-alloc-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("host.scn");
    let mut file = ReplacedFile::new(&path, "FILE", None).unwrap();

    let mut tick = 0;
    for _ in 0..10 {
        rec.measure(&mut host, tick).unwrap();
        rec.write(Status::Recording, &mut file).unwrap();
        tick += 1;
    }
    let ticks = 1_000;
    let mut allocs = 0;
    for i in 0..ticks {
        let map = if i % 2 == 0 { &one } else { &everywhere };
        dom.pin_vcpu(VcpuId(3), map).unwrap();
        let before = allocations();
        rec.measure(&mut host, tick).unwrap();
        rec.write(Status::Recording, &mut file).unwrap();
        allocs += allocations() - before;
        tick += 1;
    }
    assert_eq!(
        allocs, 0,
        "heap allocations in {ticks} steady-state recording ticks"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("\nticks {}\n", tick - 1)), "{text}");
    assert!(
        text.contains(&format!("pins changed {ticks} times")),
        "every tick saw the pin change:\n{text}"
    );
    assert_eq!(rec.trace().domains(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}
