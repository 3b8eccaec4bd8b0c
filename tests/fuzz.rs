//! A mutation fuzzer over everything a user hands the program: settings files, scenario
//! files and argument vectors. Seeds are the real files of this repository and the
//! command lines the README shows; each case applies a few random edits (bytes flipped,
//! tokens that have broken parsers before inserted, lines duplicated, cut or deleted),
//! drawn from the simulator's seeded generator, so every run tries the same cases and a
//! failure names the case that broke.
//!
//! In the process, thousands of cases each: parsing never panics, and every error is one
//! line. Through the binary, a few hundred (under a 2 GiB address-space limit and a
//! time limit): it exits 0, 1 or 2, says exactly one line on stderr when it fails, and
//! never panics. No libvirtd is needed: the daemon is pointed at a test-driver file that
//! does not exist, so a command line that parses ends at once with exit 1.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vcpu_scheduler::policy::{Params, Policy};
use vcpu_scheduler::service::cli;
use vcpu_scheduler::service::simulate::{SimOptions, run_scenario};
use vcpu_scheduler::sim::SplitMix64;
use vcpu_scheduler::sim::scenario::Scenario;

const IN_PROCESS_CASES: u64 = 4000;
const BINARY_CASES: u64 = 150;
/// A binary case that takes longer than this is a hang.
const CASE_LIMIT: Duration = Duration::from_secs(10);
/// The address space each binary case may use.
const MEMORY_LIMIT: &str = "2147483648";

/// Text that broke parsers somewhere: option look-alikes, numbers at and past the ends
/// of their types, quotes, NUL, a BOM, invalid UTF-8, control characters, long words.
const TOKENS: &[&[u8]] = &[
    b"-",
    b"--",
    b"--once",
    b"--help",
    b"-inf",
    b"nan",
    b"NaN",
    b"inf",
    b"1e309",
    b"0",
    b"-1",
    b"-0",
    b"0.001",
    b"4000000000",
    b"18446744073709551616",
    b"=",
    b"==",
    b"\"",
    b"'",
    b"#",
    b"\n",
    b"\r\n",
    b"\0",
    b"\xEF\xBB\xBF",
    b"\xFF\xFE",
    b"\xC3",
    b"\xC3\xA9",
    b" ",
    b"\t",
    b"all",
    b"0-8191",
    b"8192",
    b"7-3",
    b"0,,1",
    b"export ",
    b"INTERVAL=",
    b"THRESHOLD=",
    b"CPUS=",
    b"METRICS_FILE=",
    b"CONNECT=",
    b"at 2 ",
    b"vm x 50",
    b"host 0 50",
    b"pin 0",
    b"mem 1",
    b"topology 2 2 2",
    b"pcpus 8192",
    b"pcpus 0",
    b"ticks 100000000",
    b"noise 100",
    b"seed 18446744073709551615",
    b"load",
    b"start",
    b"stop",
    b"vcpus",
    b"\x1b[2J",
];

/// One random edit of `data`.
fn mutate(rng: &mut SplitMix64, data: &mut Vec<u8>) {
    let pos = |rng: &mut SplitMix64, len: usize| rng.range(0, len as u64) as usize;
    match rng.range(0, 6) {
        0 if !data.is_empty() => {
            let i = pos(rng, data.len() - 1);
            data[i] = rng.range(0, 255) as u8;
        }
        1 | 2 => {
            let t = TOKENS[rng.range(0, TOKENS.len() as u64 - 1) as usize];
            let i = pos(rng, data.len());
            data.splice(i..i, t.iter().copied());
        }
        3 if !data.is_empty() => {
            let a = pos(rng, data.len() - 1);
            let b = (a + rng.range(1, 16) as usize).min(data.len());
            data.drain(a..b);
        }
        4 => {
            // Duplicate a line.
            let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
            let l = lines[pos(rng, lines.len() - 1)].to_vec();
            let i = pos(rng, data.len());
            data.splice(i..i, l.into_iter().chain([b'\n']));
        }
        5 => data.truncate(pos(rng, data.len())),
        _ => data.extend_from_slice(b"x".repeat(rng.range(1, 400) as usize).as_slice()),
    }
}

/// `seed` with one to four edits.
fn case(rng: &mut SplitMix64, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.range(1, 4) {
        mutate(rng, &mut data);
    }
    data
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn seeds_in(dir: &str, ext: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn settings_seeds() -> Vec<Vec<u8>> {
    vec![
        std::fs::read(repo("dist/vcpu-scheduler.default")).unwrap(),
        b"INTERVAL=2\nTHRESHOLD=3\nPOLICY=seed\nCPUS=0-1\nDOMAINS=\"web-* db\"\n\
          EXCLUDE_DOMAINS='backup'\nREPIN_CONFIGURED=no\nDRY_RUN=yes\nSUMMARY=60\n\
          METRICS_FILE=/tmp/vcs-fuzz.prom\n"
            .to_vec(),
    ]
}

/// Command lines as the README shows them, one argument per line.
const ARGV_SEEDS: &[&str] = &[
    "2",
    "-v\n1",
    "--dry-run\n-t\n3\n--cpus\n0-3\n0.5",
    "-d\nweb-*\n-x\nweb-db\n--policy\nseed\n--once\n1",
    "--summary\n60\n--metrics-file\n/tmp/vcs-fuzz.prom\n--repin-configured\n1",
    "simulate\nscenarios/course-1-all-on-one.scn\n--policy\nseed\n--ticks\n5",
    "simulate\nscenarios/numa-two-nodes.scn\n--json\n--ignore-topology",
    "record\n-c\ntest:///default\n-d\nweb-*\n-x\nweb-db\n--for\n15m\n--anonymize\n10\n/tmp/vcs-fuzz.scn",
];

fn argv_of(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split('\n')
        .map(str::to_owned)
        .collect()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vcs-fuzz-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn assert_one_line(what: &str, n: u64, msg: &str) {
    assert!(
        !msg.contains('\n') && !msg.is_empty(),
        "{what} case {n}: a message that is not one line: {msg:?}"
    );
}

#[test]
fn parsers_never_panic_and_every_error_is_one_line() {
    let dir = scratch("parse");
    let mut rng = SplitMix64::new(0xf022_2026);
    let settings = settings_seeds();
    let scenarios = seeds_in("scenarios", "scn");
    let file = dir.join("settings");
    let (mut errors, mut accepted) = (0, 0);
    let started = Instant::now();
    for n in 0..IN_PROCESS_CASES {
        // A settings file, read through the command line as the daemon reads it.
        let text = case(&mut rng, &settings[n as usize % settings.len()]);
        std::fs::write(&file, &text).unwrap();
        let mut argv = vec!["--config".to_owned(), file.to_str().unwrap().to_owned()];
        if n % 3 == 0 {
            argv.extend(["--once".to_owned(), "--".to_owned(), "0.05".to_owned()]);
        }
        match cli::parse(&argv, None) {
            Err(e) => {
                errors += 1;
                assert_one_line("settings", n, &e.to_string());
            }
            Ok(_) => accepted += 1,
        }
        // An argument vector.
        let argv = argv_of(&case(
            &mut rng,
            ARGV_SEEDS[n as usize % ARGV_SEEDS.len()].as_bytes(),
        ));
        if let Err(e) = cli::parse(&argv, None) {
            assert_one_line("argv", n, &e.to_string());
        }
        // A scenario; a few ticks of the ones that parse.
        let text = case(&mut rng, &scenarios[n as usize % scenarios.len()]);
        let text = String::from_utf8_lossy(&text);
        match Scenario::parse(&text, "fuzz.scn") {
            Err(e) => assert_one_line("scenario", n, &e.to_string()),
            Ok(sc) if n % 8 == 0 => {
                let opts = SimOptions {
                    policy: if n % 16 == 0 {
                        Policy::Seed
                    } else {
                        Policy::Balance
                    },
                    ticks: Some(3),
                    json: false,
                    params: Params::default(),
                    hide_topology: false,
                };
                let t = Instant::now();
                if let Err(e) = run_scenario(&sc, &opts, &mut io::sink()) {
                    assert_one_line("simulation", n, &e.to_string());
                }
                assert!(
                    t.elapsed() < CASE_LIMIT,
                    "scenario case {n}: 3 ticks took {:?}:\n{text}",
                    t.elapsed()
                );
            }
            Ok(_) => {}
        }
    }
    eprintln!(
        "FIGURES fuzz in process: {IN_PROCESS_CASES} cases each of settings, argv and \
         scenarios in {:.1} s; settings accepted {accepted}, refused {errors}",
        started.elapsed().as_secs_f64()
    );
    // The mutations must reach both sides, or the test checks little.
    assert!(
        accepted > 100 && errors > 100,
        "{accepted} accepted, {errors} refused"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run the binary on `args` under the memory limit, killed past the time limit.
fn run_limited(args: &[String], cwd: &Path) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new("prlimit")
        .arg(format!("--as={MEMORY_LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_vcpu-scheduler"))
        .args(args)
        .current_dir(cwd)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs the binary");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > CASE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.and_then(|s| s.code()), err, started.elapsed())
}

#[test]
fn the_binary_exits_0_1_or_2_with_one_line_and_never_panics() {
    let dir = scratch("bin");
    let mut rng = SplitMix64::new(0xb1_2026);
    let settings = settings_seeds();
    let scenarios = seeds_in("scenarios", "scn");
    // Connecting to a test-driver file that does not exist fails at once: a command
    // line that parses ends with exit 1 instead of running.
    let nowhere = "test:///nonexistent/vcs-fuzz-node.xml".to_owned();
    let mut codes = [0u32; 3];
    let started = Instant::now();
    for n in 0..BINARY_CASES {
        let args: Vec<String> = match n % 3 {
            0 => {
                let f = dir.join(format!("s{n}"));
                std::fs::write(&f, case(&mut rng, &settings[n as usize % 2])).unwrap();
                vec![
                    "-c".into(),
                    nowhere.clone(),
                    "--config".into(),
                    f.to_str().unwrap().into(),
                ]
            }
            1 => {
                let mut a = argv_of(&case(&mut rng, ARGV_SEEDS[n as usize % 5].as_bytes()));
                a.splice(0..0, ["-c".to_owned(), nowhere.clone()]);
                a
            }
            _ => {
                let f = dir.join(format!("c{n}.scn"));
                let seed = &scenarios[n as usize % scenarios.len()];
                std::fs::write(&f, case(&mut rng, seed)).unwrap();
                vec![
                    "simulate".into(),
                    f.to_str().unwrap().into(),
                    "--ticks".into(),
                    "3".into(),
                ]
            }
        };
        let (code, err, took) = run_limited(&args, &repo(""));
        let code = code.unwrap_or_else(|| {
            panic!("case {n} {args:?}: killed after {took:?} (a hang, or a signal)\n{err}")
        });
        assert!(
            (0..=2).contains(&code),
            "case {n} {args:?}: exit {code}\n{err}"
        );
        assert!(!err.contains("panicked"), "case {n} {args:?}: {err}");
        if code != 0 {
            // Unknown settings are warned about one line each, then the file is used;
            // what ends the run is one line more.
            let failure = err.lines().filter(|l| !l.ends_with("ignored")).count();
            assert_eq!(failure, 1, "case {n} {args:?}: exit {code} with {err:?}");
        }
        codes[code as usize] += 1;
    }
    eprintln!(
        "FIGURES fuzz binary: {BINARY_CASES} cases in {:.1} s; exit 0: {}, 1: {}, 2: {}",
        started.elapsed().as_secs_f64(),
        codes[0],
        codes[1],
        codes[2]
    );
    assert!(codes[2] > 10 && codes[0] + codes[1] > 10, "{codes:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
