//! `Connection::vcpu_stats` refills its table without touching Rust's heap once the table
//! has room for the host. Against the test driver, whose records carry no vCPU fields,
//! this covers the record walk and the domain entries; the field parser allocates
//! nothing by construction (byte slices only). The only test in its file: the harness
//! allocates on other threads. libvirt's own mallocs for the record list are not seen.

mod counting_alloc;

use counting_alloc::allocations;
use vcpu_scheduler::libvirt::{Connection, VcpuStatsTable};

#[test]
fn refilling_the_vcpu_stats_table_allocates_nothing() {
    let uri = format!(
        "test://{}/tests/fixtures/node4.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let conn = Connection::open(&uri).unwrap();
    let mut table = VcpuStatsTable::new();
    conn.vcpu_stats(&mut table).unwrap();

    let calls = 1_000;
    let before = allocations();
    for _ in 0..calls {
        conn.vcpu_stats(&mut table).unwrap();
    }
    let allocs = allocations() - before;
    assert_eq!(table.len(), 3, "the calls really filled the table");
    assert_eq!(allocs, 0, "heap allocations in {calls} refills");
}
