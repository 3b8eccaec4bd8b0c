// Compiled only under #[cfg(test)], from the parent module.
use super::*;

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn run(v: &[&str]) -> Config {
    match parse(&args(v), None) {
        Ok(Command::Run(c)) => *c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_course_habit_works() {
    let c = run(&["2"]);
    assert_eq!(c.interval, Duration::from_secs(2));
    assert_eq!(c.uri, DEFAULT_URI);
    assert_eq!(c.sched.params.threshold_pct, 5.0);
    assert_eq!(c.sched.policy, Policy::Balance);
}

#[test]
fn options_are_read() {
    let c = run(&[
        "-c",
        "test:///default",
        "-t",
        "2.5",
        "--once",
        "-n",
        "-d",
        "aos_*",
        "-x",
        "aos_k",
        "0.5",
    ]);
    assert_eq!(c.uri, "test:///default");
    assert_eq!(c.interval, Duration::from_millis(500));
    assert_eq!(c.sched.params.threshold_pct, 2.5);
    assert!(c.once && c.sched.dry_run);
    assert!(c.sched.select.manages("aos_1") && !c.sched.select.manages("aos_k"));
}

#[test]
fn env_uri_is_the_default_and_connect_overrides_it() {
    let Ok(Command::Run(c)) = parse(&args(&["1"]), Some("test:///default")) else {
        panic!()
    };
    assert_eq!(c.uri, "test:///default");
    let Ok(Command::Run(c)) = parse(
        &args(&["-c", "qemu:///session", "1"]),
        Some("test:///default"),
    ) else {
        panic!()
    };
    assert_eq!(c.uri, "qemu:///session");
}

#[test]
fn bad_numbers_are_usage_errors_naming_the_value() {
    for bad in [
        "abc", "0", "-1", "NaN", "inf", "", "1e300", "0.001", "1e-10",
    ] {
        let e = parse(&args(&["--", bad]), None).unwrap_err();
        assert!(e.0.contains("INTERVAL"), "{bad}: {e}");
    }
    for bad in ["x", "0", "-3", "nan", "inf", "101", "1e-320"] {
        let e = parse(&args(&["-t", bad, "1"]), None).unwrap_err();
        assert!(e.0.contains("--threshold"), "{bad}: {e}");
    }
    assert!(
        parse(&args(&[]), None)
            .unwrap_err()
            .0
            .contains("missing INTERVAL")
    );
    assert!(
        parse(&args(&["1", "2"]), None)
            .unwrap_err()
            .0
            .contains("unexpected")
    );
    assert!(
        parse(&args(&["--bogus", "1"]), None)
            .unwrap_err()
            .0
            .contains("bogus")
    );
    assert!(
        parse(&args(&["-p", "fastest", "1"]), None)
            .unwrap_err()
            .0
            .contains("--policy")
    );
}

#[test]
fn simulate_subcommand() {
    let Ok(Command::Simulate(s)) = parse(
        &args(&[
            "simulate", "x.scn", "--policy", "seed", "--ticks", "9", "--json",
        ]),
        None,
    ) else {
        panic!()
    };
    assert_eq!(s.file, PathBuf::from("x.scn"));
    assert_eq!((s.policy, s.ticks, s.json), (Policy::Seed, Some(9), true));
    assert!(parse(&args(&["simulate"]), None).is_err());
    assert!(parse(&args(&["simulate", "f", "--ticks", "0"]), None).is_err());
}

#[test]
fn the_table_is_in_id_order_with_unique_names() {
    for (i, o) in OPTIONS.iter().enumerate() {
        assert_eq!(o.id as usize, i, "{}", o.long);
        assert_eq!(
            OPTIONS.iter().filter(|p| p.long == o.long).count(),
            1,
            "{}",
            o.long
        );
        if let Some(k) = o.key {
            assert_eq!(k, k.to_ascii_uppercase());
            assert_ne!(k, INTERVAL_KEY);
        }
    }
    let t = &OPTIONS[Id::Threshold as usize];
    assert!(
        t.help
            .contains(&format!("(default {DEFAULT_THRESHOLD_PCT})")),
        "{}",
        t.help
    );
}

/// Parse with a settings file holding `text`; the error text or the config.
fn with_file(text: &str, extra: &[&str]) -> Result<Config, String> {
    let dir = std::env::temp_dir().join(format!("vcs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One name per call: the tests run in parallel threads of one process.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("s{n}"));
    std::fs::write(&file, text).unwrap();
    let mut v = vec!["--config".to_owned(), file.to_str().unwrap().to_owned()];
    v.extend(extra.iter().map(|s| s.to_string()));
    let r = parse(&v, None);
    let _ = std::fs::remove_file(&file);
    match r {
        Ok(Command::Run(c)) => Ok(*c),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.0.replacen(&format!("{}", file.display()), "FILE", 1)),
    }
}

#[test]
fn settings_are_values_and_every_bad_one_names_its_line() {
    for (text, want) in [
        (
            "INTERVAL=1\nTHRESHOLD=abc\n",
            "FILE:2: invalid THRESHOLD \"abc\"",
        ),
        ("INTERVAL=-1\n", "FILE:1: invalid INTERVAL \"-1\""),
        ("INTERVAL=--once\n", "FILE:1: invalid INTERVAL \"--once\""),
        ("INTERVAL=--help\n", "FILE:1: invalid INTERVAL \"--help\""),
        (
            "INTERVAL=1\nPOLICY=fast\n",
            "FILE:2: invalid POLICY \"fast\"",
        ),
        ("INTERVAL=1\nCPUS=3-1\n", "FILE:2: invalid CPUS \"3-1\""),
        (
            "INTERVAL=1\nSUMMARY=never\n",
            "FILE:2: invalid SUMMARY \"never\"",
        ),
        ("INTERVAL=1\nCONNECT=\"a\0b\"\n", "FILE:2: a NUL"),
        (
            "interval=1\n",
            "FILE:1: unknown setting \"interval\": keys are upper case",
        ),
        (
            "THRESHOLD=3\n",
            "missing INTERVAL (seconds between ticks), on the command line or as INTERVAL= in FILE",
        ),
        (
            "INTERVAL=1\nDRY_RUN=maybe\n",
            "FILE:2: DRY_RUN must be yes or no, not \"maybe\"",
        ),
    ] {
        let e = with_file(text, &[]).unwrap_err();
        assert!(e.starts_with(want), "{text:?}: {e}");
    }
}

#[test]
fn the_command_line_wins_option_by_option_and_file_flags_count() {
    let c = with_file(
        "THRESHOLD=3\nINTERVAL=7\nDRY_RUN=yes\n",
        &["--once", "--", "0.05"],
    )
    .unwrap();
    assert_eq!(c.interval, Duration::from_millis(50));
    assert_eq!(c.sched.params.threshold_pct, 3.0);
    assert!(c.once && c.sched.dry_run);
    let c = with_file("THRESHOLD=3\nINTERVAL=7\n", &["-t", "4"]).unwrap();
    assert_eq!(
        (c.interval, c.sched.params.threshold_pct),
        (Duration::from_secs(7), 4.0)
    );
    // The later line wins, empty is unset, and a BOM is not part of the first key.
    let c = with_file(
        "\u{feff}INTERVAL=7\nPOLICY=seed\nPOLICY=\nINTERVAL=2\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        (c.interval, c.sched.policy),
        (Duration::from_secs(2), Policy::Balance)
    );
}

#[test]
fn negative_numbers_are_bad_intervals_not_options() {
    for bad in ["-1", "-inf", "-0.5", "-1e3"] {
        let e = parse(&args(&[bad]), None).unwrap_err();
        assert!(e.0.starts_with(&format!("invalid INTERVAL {bad:?}")), "{e}");
    }
    let e = parse(&args(&["-q", "1"]), None).unwrap_err();
    assert_eq!(e.0, "unknown option -q");
}

#[test]
fn cpus_beyond_what_the_program_addresses_say_so() {
    let e = parse(&args(&["--cpus", "8192", "1"]), None).unwrap_err();
    assert_eq!(
        e.0,
        "invalid --cpus \"8192\": pcpu 8192 is out of range 0-8191"
    );
}
