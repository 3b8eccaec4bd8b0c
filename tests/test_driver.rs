//! Plumbing against libvirt's in-process test driver: enumerate, read vCPUs, pin, read
//! back, errors. The driver's cpu time is fake (equal for every vCPU), so nothing here
//! judges balance; `tests/real_guests.rs` does that on real QEMU guests.

use vcpu_scheduler::cpumap::CpuMap;
use vcpu_scheduler::host::{DomainKey, FailureKind, Host, HostError, PcpuId, VcpuId, VcpuSample};
use vcpu_scheduler::libvirt::virErrorNumber::{VIR_ERR_NO_DOMAIN, VIR_ERR_OPERATION_DENIED};
use vcpu_scheduler::libvirt::{Connection, LibvirtHost, VcpuStatsTable, rpc_calls};

fn fixture_uri() -> String {
    format!(
        "test://{}/tests/fixtures/node4.xml",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn open() -> Connection {
    Connection::open(&fixture_uri()).expect("the test driver opens a file URI")
}

fn key_of(host: &LibvirtHost<'_>, name: &str) -> DomainKey {
    (0..host.domain_count())
        .map(|d| host.domain(d))
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no domain {name} in the fixture"))
        .key
}

/// The pCPUs vCPU 0 of `key`'s domain may run on, as libvirt reports them. Read with the
/// 8-CPU map the test driver itself claims (virNodeGetCPUMap), wider than the fixture's
/// 4 pCPUs, so a pin to pCPU 5 would show up instead of being cut off.
fn vcpu0_pcpus(conn: &Connection, key: DomainKey) -> Vec<usize> {
    let dom = conn.domain_by_id(key.id as i32).unwrap();
    dom.vcpu_pin_info(8).unwrap()[0].iter().collect()
}

fn samples_by_name(host: &mut LibvirtHost<'_>) -> Vec<(String, VcpuSample)> {
    let mut out = Vec::new();
    for d in 0..host.domain_count() {
        let name = host.domain(d).name.to_owned();
        let mut v = Vec::new();
        host.sample(d, &mut v).expect("sample");
        out.extend(v.into_iter().map(|s| (name.clone(), s)));
    }
    out
}

#[test]
fn node_info_gives_the_fixture_pcpu_count() {
    let conn = open();
    assert_eq!(conn.node_pcpus().unwrap(), 4);
    assert!(conn.uri().unwrap().starts_with("test://"));
}

#[test]
fn enumerates_domains_with_1_2_and_4_vcpus_and_their_pins() {
    let conn = open();
    let mut host = LibvirtHost::new(&conn).unwrap();
    host.refresh().unwrap();
    let mut names: Vec<&str> = (0..host.domain_count())
        .map(|d| host.domain(d).name)
        .collect();
    names.sort();
    assert_eq!(names, ["four", "one", "two"]);

    let s = samples_by_name(&mut host);
    let count = |n: &str| s.iter().filter(|(name, _)| name == n).count();
    assert_eq!((count("one"), count("two"), count("four")), (1, 2, 4));
    let pin = |n: &str, v: u32| {
        s.iter()
            .find(|(name, x)| name == n && x.vcpu == VcpuId(v))
            .unwrap()
            .1
            .pinned_to
    };
    assert_eq!(pin("one", 0), Some(PcpuId(0)));
    assert_eq!(pin("two", 1), Some(PcpuId(0)));
    assert_eq!(pin("four", 2), Some(PcpuId(3)));
    assert_eq!(pin("four", 3), None, "affinity 0-3 is not a pin");
    // UUIDs come from the fixture; keys of different domains differ.
    let four = s.iter().find(|(n, _)| n == "four").unwrap().1.domain;
    assert_eq!(four.uuid[0], 0x44);
    assert!(s.iter().all(|(_, x)| x.cpu_time_ns > 0));
}

#[test]
fn pin_then_read_back_with_get_vcpu_pin_info() {
    let conn = open();
    let mut host = LibvirtHost::new(&conn).unwrap();
    host.refresh().unwrap();
    let four = (0..host.domain_count())
        .map(|d| host.domain(d))
        .find(|d| d.name == "four")
        .unwrap()
        .key;
    host.pin(four, VcpuId(3), PcpuId(2)).expect("pin");

    let s = samples_by_name(&mut host);
    let v3 = s
        .iter()
        .find(|(n, x)| n == "four" && x.vcpu == VcpuId(3))
        .unwrap();
    assert_eq!(v3.1.pinned_to, Some(PcpuId(2)));

    let dom = conn.domain_by_id(four.id as i32).unwrap();
    let maps = dom.vcpu_pin_info(4).unwrap();
    assert_eq!(maps.len(), 4);
    assert_eq!(maps[3].only(), Some(2));
    assert_eq!(maps[0].only(), Some(1));
}

#[test]
fn pins_to_pcpus_the_host_lacks_are_refused_before_libvirt_sees_them() {
    let conn = open();
    let mut host = LibvirtHost::new(&conn).unwrap();
    host.refresh().unwrap();
    let key = key_of(&host, "one");
    let err = host.pin(key, VcpuId(0), PcpuId(5)).unwrap_err();
    assert!(err.to_string().contains("pcpu 5 does not exist"), "{err}");
    // The driver itself would have accepted it: the pin stays the fixture's, pCPU 0.
    assert_eq!(vcpu0_pcpus(&conn, key), [0]);
}

#[test]
fn errors_carry_libvirts_own_message_and_are_classified() {
    let err = Connection::open("nosuchdriver:///x")
        .err()
        .expect("no such driver");
    assert!(err.message().contains("nosuchdriver:///x"), "{err}");
    assert_eq!(err.call(), "virConnectOpen");

    let conn = open();
    let err = conn.domain_by_id(4242).err().expect("no domain 4242");
    assert_eq!(err.code(), VIR_ERR_NO_DOMAIN as i32, "{err}");
    assert_eq!(err.message(), "Domain not found", "libvirt's own words");
    assert_eq!(err.call(), "virDomainLookupByID");
    assert_eq!(err.kind(), FailureKind::DomainGone);
}

#[test]
fn read_only_connections_read_but_cannot_pin() {
    let conn = Connection::open_read_only(&fixture_uri()).unwrap();
    let mut host = LibvirtHost::new(&conn).unwrap();
    host.refresh().unwrap();
    let key = key_of(&host, "one");
    let err = host.pin(key, VcpuId(0), PcpuId(1)).unwrap_err();
    // libvirt refuses before the driver runs; the call is virDomainPinVcpu or its Flags
    // variant, whichever the host tried first.
    assert_eq!(err.code(), VIR_ERR_OPERATION_DENIED as i32, "{err}");
    assert!(
        err.message()
            .contains("read only access prevents virDomainPinVcpu"),
        "{err}"
    );
    assert_eq!(
        err.kind(),
        FailureKind::Other,
        "not a lost domain or connection"
    );
    assert_eq!(vcpu0_pcpus(&conn, key), [0], "the pin stays the fixture's");
}

#[test]
fn closing_after_every_domain_is_dropped_leaves_no_reference() {
    let conn = open();
    {
        let mut host = LibvirtHost::new(&conn).unwrap();
        host.refresh().unwrap();
        let _extra = conn.domain_by_id(host.domain(0).key.id as i32).unwrap();
        let mut v = Vec::new();
        host.sample(0, &mut v).unwrap();
    }
    assert_eq!(conn.close().unwrap(), 0, "a domain handle leaked");
}

#[test]
fn cpumap_sized_for_the_host_round_trips_through_libvirt() {
    let conn = open();
    let dom = conn.domain_by_id(1).unwrap();
    let mut map = CpuMap::new(4);
    map.set(1).unwrap();
    map.set(3).unwrap();
    dom.pin_vcpu(VcpuId(0), &map).unwrap();
    assert_eq!(dom.vcpu_pin_info(4).unwrap()[0], map);
}

#[test]
fn bulk_vcpu_stats_has_one_entry_per_running_domain_and_no_vcpu_fields() {
    let conn = open();
    let mut table = VcpuStatsTable::new();
    conn.vcpu_stats(&mut table)
        .expect("the test driver supports the bulk stats call");
    assert_eq!(table.len(), 3);
    // The fixture's UUIDs repeat one byte: 0x11 "one", 0x22 "two", 0x44 "four".
    for byte in [0x11, 0x22, 0x44] {
        let vcpus = table.domain(&[byte; 16]);
        // The test driver answers the vCPU group with a record per domain but no
        // fields at all (no vcpu.current, no vcpu.N.time), so every slice is empty.
        assert_eq!(vcpus, Some(&[][..]), "domain {byte:#x}");
    }
    assert_eq!(table.domain(&[0x33; 16]), None);
    assert!(
        !table.any_delay(),
        "the test driver reports no run-queue delay"
    );

    // A refill gives the same answer, not twice as much.
    conn.vcpu_stats(&mut table).unwrap();
    assert_eq!(table.len(), 3);
    // The record list and the domain references its records held are all freed.
    assert_eq!(
        conn.close().unwrap(),
        0,
        "the record list leaked a reference"
    );
}

#[test]
fn the_call_counter_counts_round_trips_not_local_reads() {
    let conn = open();
    let mut ids = Vec::new();
    let mut table = VcpuStatsTable::new();
    let before = rpc_calls();
    conn.running_domain_ids(&mut ids).unwrap(); // NumOfDomains + ListDomains: 2
    let dom = conn.domain_by_id(ids[0]).unwrap(); // LookupByID: 1
    let _ = (dom.uuid().unwrap(), dom.name().unwrap(), dom.id()); // local: 0
    dom.vcpu_count().unwrap(); // GetInfo: 1
    assert!(dom.is_active()); // IsActive: 1
    dom.vcpu_pin_info(4).unwrap(); // GetInfo + GetVcpuPinInfo: 2
    conn.vcpu_stats(&mut table).unwrap(); // GetAllDomainStats: 1
    conn.node_pcpus().unwrap(); // NodeGetInfo: 1
    conn.uri().unwrap(); // GetURI: 1
    assert!(conn.domain_by_id(4242).is_err()); // a failed call is still a call: 1
    assert_eq!(rpc_calls() - before, 11);
}

#[test]
fn topology_comes_from_the_capabilities() {
    // test:///default describes 2 cells of 8 pCPUs; a node file describes none.
    let conn = Connection::open("test:///default").unwrap();
    let host = LibvirtHost::new(&conn).unwrap();
    let t = host.topology().expect("two cells");
    assert_eq!((t.nodes(), t.cores(), t.pcpus()), (2, 16, 16));
    assert_eq!(t.place(9).node, 1);
    let conn = open();
    let host = LibvirtHost::new(&conn).unwrap();
    assert!(host.topology().is_none(), "a node file has no topology");
}
