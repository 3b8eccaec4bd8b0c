// Compiled only under #[cfg(test)], from the parent module.
use super::*;

const TEST_DRIVER: &str = include_str!("../../tests/fixtures/caps/test-default.xml");
const KVM_1NODE: &str = include_str!("../../tests/fixtures/caps/kvm-1node.xml");
const SMT_2SOCKET: &str = include_str!("../../tests/fixtures/caps/2socket-smt.xml");

#[test]
fn the_test_driver_has_two_cells_of_eight() {
    let t = Topology::from_capabilities(TEST_DRIVER, 16)
        .unwrap()
        .unwrap();
    assert_eq!((t.nodes(), t.cores(), t.pcpus()), (2, 16, 16));
    assert!(!t.smt());
    assert_eq!(t.place(7), Place { node: 0, core: 7 });
    assert_eq!(t.place(8).node, 1);
    assert_ne!(
        t.place(8).core,
        t.place(0).core,
        "core_id 0 of socket 1 is another core"
    );
    assert_eq!(
        t.to_string(),
        "node 0: pcpus 0-7 (8 cores × 1 threads); node 1: pcpus 8-15 (8 cores × 1 threads)"
    );
}

#[test]
fn a_real_one_node_host() {
    let t = Topology::from_capabilities(KVM_1NODE, 2).unwrap().unwrap();
    assert_eq!((t.nodes(), t.cores()), (1, 2));
    assert_eq!(t, Topology::flat(2));
}

#[test]
fn two_sockets_with_smt_siblings_numbered_apart() {
    let t = Topology::from_capabilities(SMT_2SOCKET, 8)
        .unwrap()
        .unwrap();
    assert_eq!((t.nodes(), t.cores(), t.pcpus()), (2, 4, 8));
    assert!(t.smt());
    // 0 and 4 share a core; 2 and 6 too, on the other node.
    assert_eq!(t.place(0).core, t.place(4).core);
    assert_eq!(t.place(2).core, t.place(6).core);
    assert_ne!(t.place(0).core, t.place(1).core);
    assert_eq!((t.place(4).node, t.place(6).node), (0, 1));
    assert_eq!(t.node_of_cell(1), Some(1));
    assert_eq!(t.node_of_cell(7), None);
}

#[test]
fn no_topology_means_none() {
    let doc = "<capabilities><host><cpu/><topology><cells num='0'></cells></topology></host></capabilities>";
    assert_eq!(Topology::from_capabilities(doc, 4), Ok(None));
    assert_eq!(
        Topology::from_capabilities("<capabilities><host></host></capabilities>", 4),
        Ok(None)
    );
}

#[test]
fn bad_documents_are_one_line_errors() {
    for (doc, want) in [
        ("not xml at all", "no <host>"),
        (SMT_2SOCKET, "leave out pcpus [8, 9]"),
        (
            "<host><topology><cells><cell id='0'><cpus><cpu id='9'/></cpus></cell></cells></topology></host>",
            "name pcpu 9, but the host has 4",
        ),
        (
            "<host><topology><cells><cell id='0'><cpus><cpu id='0'/><cpu id='0'/></cpus></cell></cells></topology></host>",
            "appears twice",
        ),
        (
            "<host><topology><cells><cell id='0'><cpus><cpu id='x'/></cpus></cell></cells></topology></host>",
            "is not a number",
        ),
        (
            "<host><topology><cells><cell><cpus/></cell></cells></topology></host>",
            "without a numeric id",
        ),
    ] {
        let pcpus = if doc == SMT_2SOCKET { 10 } else { 4 };
        let e = Topology::from_capabilities(doc, pcpus).unwrap_err();
        assert!(e.contains(want), "{e:?} lacks {want:?}");
        assert!(!e.contains('\n'));
    }
}

/// Node masks are 64 bits: a 65th node is refused in one line, never wrapped onto
/// another node's bit.
#[test]
fn more_than_64_nodes_are_refused() {
    let cells = |n: usize| {
        let mut doc = String::from("<host><topology><cells>");
        for c in 0..n {
            doc.push_str(&format!(
                "<cell id='{c}'><cpus><cpu id='{c}'/></cpus></cell>"
            ));
        }
        doc + "</cells></topology></host>"
    };
    let t = Topology::from_capabilities(&cells(64), 64)
        .unwrap()
        .unwrap();
    assert_eq!(t.nodes(), 64);
    let e = Topology::from_capabilities(&cells(65), 65).unwrap_err();
    assert_eq!(
        e,
        "the capabilities list 65 NUMA nodes; this program handles at most 64"
    );
}

#[test]
fn shapes_number_pcpus_socket_core_thread() {
    let t = Topology::from_shape(2, 2, 2);
    assert_eq!((t.nodes(), t.cores(), t.pcpus()), (2, 4, 8));
    // pCPU = ((socket × cores) + core) × threads + thread: 0,1 one core; 4-7 socket 1.
    assert_eq!(t.place(0).core, t.place(1).core);
    assert_ne!(t.place(1).core, t.place(2).core);
    assert_eq!(t.place(4).node, 1);
    assert_eq!(
        t.to_string(),
        "node 0: pcpus 0-3 (2 cores × 2 threads); node 1: pcpus 4-7 (2 cores × 2 threads)"
    );
}
