// Compiled only under #[cfg(test)], from the parent module.
use super::*;

fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::parse(text, "t.scn").map_err(|e| e.to_string())
}

const EXAMPLE: &str = "\
pcpus 4                       # number of pCPUs
ticks 30                      # how long to run
noise 5                       # optional: ± % relative noise on measured usage
seed 7                        # optional: RNG seed
vm web 100,40 pin 0           # a domain: one demand % per vCPU
vm db 60,60,60,60             # no pin: affinity to every pCPU

# events, out of order on purpose
at 15 stop db                 # a domain disappears
at 10 load web 20,20          # from tick 10: new demands
at 12 start cache 90 pin 1    # a domain appears
";

#[test]
fn the_documented_example_parses() {
    let s = parse(EXAMPLE).unwrap();
    assert_eq!((s.pcpus, s.ticks, s.noise_pct, s.seed), (4, 30, 5.0, 7));
    assert_eq!(s.domains.len(), 2);
    assert_eq!(s.domains[0].name, "web");
    assert_eq!(s.domains[0].demands_pct, vec![100.0, 40.0]);
    assert_eq!(s.domains[0].affinity.only(), Some(0));
    assert_eq!(s.domains[1].affinity.count(), 4);
    let ticks: Vec<u64> = s.events.iter().map(|e| e.tick).collect();
    assert_eq!(ticks, vec![10, 12, 15], "sorted by tick");
    assert_eq!(s.events[0].line, 10);
    assert_eq!(
        s.events[0].action,
        Action::Load {
            name: "web".into(),
            demands_pct: vec![20.0, 20.0]
        }
    );
    assert!(matches!(&s.events[1].action, Action::Start(d) if d.affinity.only() == Some(1)));
    assert_eq!(s.events[2].action, Action::Stop { name: "db".into() });
}

#[test]
fn defaults_cpulists_and_round_trip() {
    let s = parse("pcpus 8\nvm a 0,12.5,100 pin 0,2,5-7\nvm b 50 pin all\n").unwrap();
    assert_eq!(
        (s.ticks, s.noise_pct, s.seed),
        (DEFAULT_TICKS, 0.0, DEFAULT_SEED)
    );
    assert_eq!(
        s.domains[0].affinity.iter().collect::<Vec<_>>(),
        vec![0, 2, 5, 6, 7]
    );
    assert_eq!(s.domains[0].demands_pct, vec![0.0, 12.5, 100.0]);
    assert_eq!(s.domains[1].affinity.count(), 8);
    let text = s.to_string();
    assert_eq!(parse(&text).unwrap(), s, "{text}");
    // Lines differ (the output has no comments); everything else comes back.
    let without_lines = |mut s: Scenario| {
        s.events.iter_mut().for_each(|e| e.line = 0);
        s
    };
    let full = without_lines(parse(EXAMPLE).unwrap());
    assert_eq!(without_lines(parse(&full.to_string()).unwrap()), full);
}

#[test]
fn topology_sets_or_agrees_with_pcpus_and_mem_round_trips() {
    let s = parse("topology 2 2 2\nvm a 50 mem 1\nvm b 50,50 mem 0 pin 0-3\n").unwrap();
    assert_eq!(s.pcpus, 8, "a topology line alone sets pcpus");
    let shape = Shape {
        sockets: 2,
        cores: 2,
        threads: 2,
    };
    assert_eq!((s.topology, s.nodes()), (Some(shape), 2));
    assert_eq!(s.domains[0].mem_node, Some(1));
    assert_eq!(s.domains[0].affinity.count(), 8);
    assert_eq!(s.domains[1].mem_node, Some(0));
    assert_eq!(s.domains[1].affinity.count(), 4, "pin after mem");
    // Before or after pcpus, as long as they agree; a topology after the vm lines
    // that use its nodes is fine too.
    let after = parse("pcpus 8\nvm a 50 mem 1\ntopology 2 2 2\n").unwrap();
    assert_eq!((after.pcpus, after.topology), (8, Some(shape)));
    let before = parse("topology 2 2 2\npcpus 8\n").unwrap();
    assert_eq!(before.topology, Some(shape));
    // Without a topology line: one node, and mem 0 is allowed.
    let flat = parse("pcpus 2\nvm a 50 mem 0\nat 2 start b 10 mem 0\n").unwrap();
    assert_eq!((flat.topology, flat.nodes()), (None, 1));
    assert!(matches!(&flat.events[0].action, Action::Start(d) if d.mem_node == Some(0)));

    for sc in [&s, &flat] {
        let text = sc.to_string();
        let back = parse(&text).unwrap();
        let without_lines = |mut s: Scenario| {
            s.events.iter_mut().for_each(|e| e.line = 0);
            s
        };
        assert_eq!(without_lines(back), without_lines(sc.clone()), "{text}");
    }
    assert!(s.to_string().starts_with("pcpus 8\ntopology 2 2 2\n"));
    assert!(s.to_string().contains("vm a 50 mem 1\n"));
    assert!(s.to_string().contains("vm b 50,50 pin 0-3 mem 0\n"));
}

#[test]
fn same_tick_events_keep_file_order_and_restart_is_allowed() {
    let s =
        parse("pcpus 2\nvm a 50\nat 3 stop a\nat 3 start a 70,70\nat 4 load a 10,10\n").unwrap();
    assert!(matches!(s.events[0].action, Action::Stop { .. }));
    assert!(matches!(s.events[1].action, Action::Start(_)));
}

/// Each way a file can be wrong, with the line blamed and the reason.
#[test]
fn every_error_names_file_line_and_reason() {
    let cases: &[(&str, &str)] = &[
        ("pcpus 4\nbogus 3\n", "t.scn:2: unknown keyword \"bogus\""),
        ("pcpus four\n", "t.scn:1: bad number \"four\" for pcpus"),
        ("pcpus 0\n", "t.scn:1: pcpus 0 is outside 1-8192"),
        (
            "pcpus 4\npcpus 4\n",
            "t.scn:2: pcpus given twice (first on line 1)",
        ),
        ("pcpus\n", "t.scn:1: pcpus needs a value"),
        ("pcpus 4 5\n", "t.scn:1: unexpected \"5\" after pcpus value"),
        ("pcpus 4\nticks 0\n", "t.scn:2: ticks must be at least 1"),
        (
            "pcpus 4\nticks -3\n",
            "t.scn:2: bad number \"-3\" for ticks",
        ),
        (
            "pcpus 4\nnoise 101\n",
            "t.scn:2: noise 101 is outside 0-100",
        ),
        (
            "pcpus 4\nnoise nan\n",
            "t.scn:2: bad number \"nan\" for noise",
        ),
        ("pcpus 4\nseed x\n", "t.scn:2: bad number \"x\" for seed"),
        (
            "pcpus 4\nvm a 120\n",
            "t.scn:2: demand 120 of vcpu 0 is outside 0-100",
        ),
        (
            "pcpus 4\nvm a 50,-1\n",
            "t.scn:2: bad number \"-1\" in demands \"50,-1\"",
        ),
        (
            "pcpus 4\nvm a 50,,50\n",
            "t.scn:2: bad number \"\" in demands \"50,,50\"",
        ),
        (
            "pcpus 4\nvm a 5e1\n",
            "t.scn:2: bad number \"5e1\" in demands \"5e1\"",
        ),
        ("pcpus 4\nvm a\n", "t.scn:2: vm needs a name and demands"),
        (
            "pcpus 4\nvm a 50 pin 4\n",
            "t.scn:2: bad cpulist \"4\" for pin: pcpu 4 is out of range 0-3",
        ),
        (
            "pcpus 4\nvm a 50 pin 0-9\n",
            "t.scn:2: bad cpulist \"0-9\" for pin",
        ),
        (
            "pcpus 4\nvm a 50 pin 3-1\n",
            "t.scn:2: bad cpulist \"3-1\" for pin: range",
        ),
        ("pcpus 4\nvm a 50 pin\n", "t.scn:2: pin needs a cpulist"),
        (
            "pcpus 4\nvm a 50 on 1\n",
            "t.scn:2: unexpected \"on\" after the demands (pin or mem?)",
        ),
        (
            "pcpus 4\nvm a 50 pin 1 2\n",
            "t.scn:2: unexpected \"2\" after the cpulist",
        ),
        ("pcpus 4\nvm a,b 50\n", "t.scn:2: bad vm name \"a,b\""),
        (
            "pcpus 4\nvm a 50\n\nvm a 60\n",
            "t.scn:4: vm \"a\" already defined on line 2",
        ),
        (
            "vm a 50\npcpus 4\n",
            "t.scn:1: vm before pcpus: the pcpus line must come first",
        ),
        ("at 3 stop a\n", "t.scn:1: at before pcpus"),
        ("# nothing\nticks 5\n", "t.scn:2: missing pcpus line"),
        ("", "t.scn:1: missing pcpus line"),
        (
            "pcpus 4\nvm a 50\nat 3 load b 50\n",
            "t.scn:3: load of unknown vm \"b\"",
        ),
        (
            "pcpus 4\nvm a 50\nat 3 stop b\n",
            "t.scn:3: stop of unknown vm \"b\"",
        ),
        (
            "pcpus 4\nvm a 50\nat 3 stop a\nat 5 load a 10\n",
            "t.scn:4: load of unknown vm \"a\" (not running at tick 5)",
        ),
        (
            "pcpus 4\nat 3 load c 10\nat 5 start c 50\n",
            "t.scn:2: load of unknown vm \"c\" (not running at tick 3)",
        ),
        (
            "pcpus 4\nvm a 50,50\nat 3 load a 10\n",
            "t.scn:3: load gives 1 demands but vm",
        ),
        (
            "pcpus 4\nvm a 50\nat 3 start a 10\n",
            "t.scn:3: start of \"a\", which is already running at tick 3",
        ),
        (
            "pcpus 4\nvm a 50\nat 31 stop a\n",
            "t.scn:3: at 31 is past the last tick (ticks 30, the default)",
        ),
        (
            "pcpus 4\nvm a 50\nat 9 stop a\nticks 8\n",
            "t.scn:3: at 9 is past the last tick (ticks 8)",
        ),
        (
            "pcpus 4\nvm a 50\nat 0 stop a\n",
            "t.scn:3: at 0: ticks count from 1",
        ),
        (
            "pcpus 4\nat x stop a\n",
            "t.scn:2: bad number \"x\" for tick",
        ),
        ("pcpus 4\nat 3\n", "t.scn:2: at needs a tick and an action"),
        ("pcpus 4\nat\n", "t.scn:2: at needs a tick and an action"),
        ("pcpus 4\nat 3 jump a\n", "t.scn:2: unknown action \"jump\""),
        (
            "pcpus 4\nat 3 load a\n",
            "t.scn:2: load needs a name and demands",
        ),
        (
            "pcpus 4\nat 3 load a 1 2\n",
            "t.scn:2: unexpected \"2\" after the demands",
        ),
        ("pcpus 4\nat 3 stop\n", "t.scn:2: stop needs a name"),
        (
            "pcpus 4\nat 3 stop a b\n",
            "t.scn:2: unexpected \"b\" after the name",
        ),
        (
            "pcpus 4\nat 3 start c 50 pin 7\n",
            "t.scn:2: bad cpulist \"7\" for pin",
        ),
        // topology and mem
        (
            "pcpus 8\ntopology 2 2 1\n",
            "t.scn:2: topology 2 2 1 makes 4 pcpus, but pcpus is 8 (line 1)",
        ),
        (
            "topology 2 2 1\n\npcpus 8\n",
            "t.scn:3: pcpus 8 contradicts topology 2 2 1 on line 1 (4 pcpus)",
        ),
        (
            "topology 1 2 2\ntopology 1 2 2\n",
            "t.scn:2: topology given twice (first on line 1)",
        ),
        (
            "topology 0 2 2\n",
            "t.scn:1: topology sockets 0: each number must be at least 1",
        ),
        (
            "topology 1 0 2\n",
            "t.scn:1: topology cores 0: each number must be at least 1",
        ),
        (
            "topology 1 2 0\n",
            "t.scn:1: topology threads 0: each number must be at least 1",
        ),
        (
            "topology 1 2 9\n",
            "t.scn:1: topology threads 9 is over 8 per core",
        ),
        (
            "topology 65 1 1\n",
            "t.scn:1: topology sockets 65 is over 64",
        ),
        (
            "topology 64 64 4\n",
            "t.scn:1: topology 64 64 4 makes more than 8192 pcpus",
        ),
        (
            "topology 64 99999999999999999 8\n",
            "t.scn:1: topology 64 99999999999999999 8 makes more than 8192 pcpus",
        ),
        (
            "topology 2 2\n",
            "t.scn:1: topology needs SOCKETS CORES THREADS",
        ),
        (
            "topology 2 2 1 1\n",
            "t.scn:1: unexpected \"1\" after topology values",
        ),
        ("topology 2 x 1\n", "t.scn:1: bad number \"x\" for cores"),
        (
            "topology 2 2 1\nvm a 50 mem 2\n",
            "t.scn:2: mem 2: no such node (the host has nodes 0-1)",
        ),
        (
            "pcpus 4\nvm a 50 mem 1\n",
            "t.scn:2: mem 1: no such node (without a topology line the host has one node, 0)",
        ),
        (
            "pcpus 4\nvm a 50 mem 1\ntopology 1 4 1\n",
            "t.scn:2: mem 1: no such node (the host has nodes 0-0)",
        ),
        (
            "topology 2 2 1\nvm a 50\nat 3 start b 50 pin 1 mem 3\n",
            "t.scn:3: mem 3: no such node (the host has nodes 0-1)",
        ),
        (
            "pcpus 4\nvm a 50 mem 70000\n",
            "t.scn:2: mem 70000: no such node (a host has at most 8192)",
        ),
        (
            "pcpus 4\nvm a 50 mem x\n",
            "t.scn:2: bad number \"x\" for mem",
        ),
        ("pcpus 4\nvm a 50 mem\n", "t.scn:2: mem needs a node number"),
        ("pcpus 4\nvm a 50 mem 0 mem 0\n", "t.scn:2: mem given twice"),
        ("pcpus 4\nvm a 50 pin 0 pin 1\n", "t.scn:2: pin given twice"),
        (
            "pcpus 4\nvm a 50 mem 0 x\n",
            "t.scn:2: unexpected \"x\" after the mem node",
        ),
        (
            "pcpus 4\nhost 4 50\n",
            "t.scn:2: host pcpu 4 is out of range 0-3",
        ),
        (
            "pcpus 4\nhost 0 101\n",
            "t.scn:2: host load 101 is outside 0-100",
        ),
        (
            "pcpus 4\nhost 0\n",
            "t.scn:2: host needs a pcpu and a load %",
        ),
        (
            "pcpus 4\nhost 0 5 6\n",
            "t.scn:2: unexpected \"6\" after the host load",
        ),
        (
            "pcpus 4\nhost 1 5\nhost 1 7\n",
            "t.scn:3: host load of pcpu 1 already given on line 2",
        ),
        (
            "pcpus 4\nvm a 5\nat 2 host 9 5\n",
            "t.scn:3: host pcpu 9 is out",
        ),
        ("host 0 5\n", "t.scn:1: host before pcpus"),
        (
            "pcpus 4\nticks 4000000000\n",
            "t.scn:2: ticks 4000000000 is over 1000000",
        ),
    ];
    for (text, want) in cases {
        let got = parse(text).expect_err(text);
        assert!(
            got.starts_with(want),
            "{text:?}\n  got:  {got}\n  want: {want}"
        );
        assert!(!got.contains('\n'), "one line: {got}");
    }
}

#[test]
fn a_missing_file_is_one_line_too() {
    let e = Scenario::load(std::path::Path::new("/nonexistent/x.scn")).unwrap_err();
    assert_eq!(e.line, None);
    let msg = e.to_string();
    assert!(
        msg.starts_with("/nonexistent/x.scn: cannot read: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn host_load_lines_parse_and_round_trip() {
    let s =
        parse("pcpus 4\nticks 20\nhost 0 80\nvm a 50\nat 5 host 0 10\nat 6 host 3 25.5\n").unwrap();
    assert_eq!(s.host, vec![HostLoad { pcpu: 0, pct: 80.0 }]);
    assert_eq!(
        s.events[0].action,
        Action::Host(HostLoad { pcpu: 0, pct: 10.0 })
    );
    assert_eq!(
        s.events[1].action,
        Action::Host(HostLoad { pcpu: 3, pct: 25.5 })
    );
    let text = s.to_string();
    assert!(
        text.contains("\nhost 0 80\n") && text.contains("\nat 6 host 3 25.5\n"),
        "{text}"
    );
    let back = parse(&text).unwrap();
    assert_eq!(back.host, s.host);
    let actions = |s: &Scenario| {
        s.events
            .iter()
            .map(|e| e.action.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(actions(&back), actions(&s), "{text}");
}

#[test]
fn a_file_asks_for_bounded_time_and_memory() {
    // A domain of more vCPUs than KVM allows, and more vCPUs at once than the limit.
    let wide = format!(
        "pcpus 4\nvm a {}\n",
        vec!["1"; MAX_DOMAIN_VCPUS + 1].join(",")
    );
    let got = parse(&wide).unwrap_err();
    assert!(got.contains("a domain has at most 4096 vcpus"), "{got}");
    let mut many = String::from("pcpus 4\n");
    let full = vec!["1"; MAX_DOMAIN_VCPUS].join(",");
    for d in 0..=(MAX_VCPUS / MAX_DOMAIN_VCPUS) {
        many.push_str(&format!("vm d{d} {full}\n"));
    }
    let got = parse(&many).unwrap_err();
    assert!(got.contains("vcpus would run at once, over 65536"), "{got}");
    // At the limits, the file is accepted.
    let at_limit = format!("pcpus 4\nticks {MAX_TICKS}\nvm a {full}\n");
    assert_eq!(parse(&at_limit).unwrap().ticks, MAX_TICKS);
}
