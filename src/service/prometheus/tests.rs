// Compiled only under #[cfg(test)], from the parent module.
use super::*;
use crate::cpumap::CpuMap;
use crate::host::{DomainNames, PcpuId, VcpuId};
use crate::policy::Analysis;
use crate::scheduler::sample::Unit;
use crate::scheduler::select::LeftAlone;

/// Domain names by the UUID's first byte.
struct Names(&'static [&'static str]);

impl DomainNames for Names {
    fn name_of(&self, key: DomainKey) -> Option<&str> {
        self.0.get(usize::from(key.uuid[0])).copied()
    }
}

fn unit(domain: u8, vcpu: u32, pinned: Option<usize>, usage: f64) -> Unit {
    Unit {
        domain: DomainKey {
            uuid: [domain; 16],
            id: 1,
        },
        vcpu: VcpuId(vcpu),
        group: u32::from(domain),
        left_alone: (domain == 2).then_some(LeftAlone::NotSelected),
        cpu_time_ns: 0,
        at_ns: 0,
        usage: Some(usage),
        pinned_to: pinned.map(|p| PcpuId(p as u32)),
        last_ran_on: Some(PcpuId(0)),
        moved_at: None,
        known_demand: None,
        run_queue: None,
        demand: None,
        usage_smoothed: None,
        ran_ns: 0,
        fresh: false,
        mem_nodes: 0,
        home: 0,
    }
}

fn report<'a>(units: &'a [Unit], demand: &'a [f64], names: &'a Names) -> Report<'a> {
    Report {
        tick: 3,
        analysis: Analysis {
            sigma_pct: Some(25.0),
            demand_sigma_pct: Some(50.0),
            sigma_within: false,
            demand_within: false,
            plans_on_demand: true,
            settled: false,
        },
        threshold_pct: 5.0,
        policy: "balance",
        dry_run: false,
        loads: &[0.75, 0.25],
        demand: &[1.5, 0.5],
        mode: DemandMode::Measured,
        moves: &[],
        units,
        unit_demand: demand,
        names,
        cpus: None,
        migrations: 0,
        failed_pins: 0,
    }
}

#[test]
fn residual_imbalance_is_busiest_pcpu_over_the_best_placement() {
    let names = Names(&["a", "b", "c"]);
    let units = [
        unit(0, 0, Some(0), 0.5),
        unit(0, 1, Some(0), 0.25),
        unit(1, 0, Some(1), 0.25),
    ];
    let mut scratch = Vec::new();
    // pCPU 0 wants 1.5, pCPU 1 0.5: the bound is max(1.0, 2.0 / 2) = 1.
    let r = report(&units, &[1.0, 0.5, 0.5], &names);
    assert_eq!(residual_imbalance(&r, &mut scratch), Some(1.5));
    // One vCPU wanting 1.8 is a bound of its own: 1.8 + 0.1 over 1.8.
    let r = report(&units, &[1.8, 0.1, 0.1], &names);
    let x = residual_imbalance(&r, &mut scratch).unwrap();
    assert!((x - 1.9 / 1.8).abs() < 1e-12, "{x}");
    // With pCPU 0 reserved (--cpus 1), it and its vCPUs are not counted.
    let mut only_1 = CpuMap::new(2);
    only_1.set(1).unwrap();
    let mut r = report(&units, &[1.0, 0.5, 0.5], &names);
    r.cpus = Some(&only_1);
    assert_eq!(residual_imbalance(&r, &mut scratch), Some(1.0));
    // Nothing wanted: perfect. No figures yet: nothing to say.
    let r = report(&units, &[0.0; 3], &names);
    assert_eq!(residual_imbalance(&r, &mut scratch), Some(1.0));
    let mut r = report(&units, &[1.0, 0.5, 0.5], &names);
    r.analysis.sigma_pct = None;
    assert_eq!(residual_imbalance(&r, &mut scratch), None);
}

#[test]
fn render_labels_every_vcpu_and_escapes_awkward_names() {
    let names = Names(&["web \"prod\"", "back\\slash", "caf\u{e9}\nline"]);
    let units = [
        unit(0, 0, Some(0), 0.5),
        unit(1, 3, None, 0.25),
        unit(2, 0, Some(1), 0.125),
    ];
    let r = report(&units, &[0.75, 0.5, 0.25], &names);
    let c = Counters {
        migrations: 7,
        pin_failures: 1,
        reconnects: 2,
        tick_seconds: 0.0125,
        last_success_unix: 1_700_000_000.5,
    };
    let mut renderer = Renderer::default();
    let text = renderer.render(&r, &c);
    for line in [
        "vcpu_scheduler_pcpu_load_ratio{pcpu=\"1\"} 0.25",
        "vcpu_scheduler_pcpu_demand_ratio{pcpu=\"0\"} 1.5",
        "vcpu_scheduler_vcpu_usage_ratio{domain=\"web \\\"prod\\\"\",\
         uuid=\"00000000-0000-0000-0000-000000000000\",vcpu=\"0\"} 0.5",
        "vcpu_scheduler_vcpu_demand_ratio{domain=\"back\\\\slash\",\
         uuid=\"01010101-0101-0101-0101-010101010101\",vcpu=\"3\"} 0.5",
        "vcpu_scheduler_vcpu_pinned_pcpu{domain=\"back\\\\slash\",\
         uuid=\"01010101-0101-0101-0101-010101010101\",vcpu=\"3\"} -1",
        "vcpu_scheduler_vcpu_pinned_pcpu{domain=\"caf\u{e9}\\nline\",\
         uuid=\"02020202-0202-0202-0202-020202020202\",vcpu=\"0\"} 1",
        "vcpu_scheduler_load_sigma_ratio 0.25",
        "vcpu_scheduler_demand_sigma_ratio 0.5",
        "vcpu_scheduler_balanced 0",
        "vcpu_scheduler_migrations_total 7",
        "vcpu_scheduler_pin_failures_total 1",
        "vcpu_scheduler_reconnects_total 2",
        "vcpu_scheduler_last_tick_duration_seconds 0.0125",
        "vcpu_scheduler_last_success_timestamp_seconds 1700000000.5",
        "vcpu_scheduler_domains{state=\"managed\"} 2",
        "vcpu_scheduler_domains{state=\"left_alone\"} 1",
        "vcpu_scheduler_demand_measured 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // Every family has its HELP and TYPE, and every sample follows its family's.
    let mut family = "";
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# HELP ") {
            family = rest.split(' ').next().unwrap();
            continue;
        }
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            assert!(rest.starts_with(family), "{l}");
            continue;
        }
        assert!(l.starts_with(family), "{l} outside its family {family}");
    }
    // No figures yet: the gauges that need them are left out, not NaN.
    let mut r = r;
    r.analysis.sigma_pct = None;
    let text = renderer.render(&r, &c);
    assert!(!text.contains("NaN"));
    assert!(!text.contains("\nvcpu_scheduler_pcpu_load_ratio{"));
    assert!(!text.contains("\nvcpu_scheduler_residual_imbalance_ratio "));
    assert!(text.contains("\nvcpu_scheduler_migrations_total 7\n"));
}

#[test]
fn label_values_escape_backslash_quote_and_newline_only() {
    let mut s = String::new();
    escape_label(&mut s, "a\\b\"c\nd é\t").unwrap();
    assert_eq!(s, "a\\\\b\\\"c\\nd é\t");
}

#[test]
fn numbers_and_uuids() {
    assert_eq!(Num(0.1234567).to_string(), "0.123457");
    assert_eq!(Num(-0.0000001).to_string(), "0");
    assert_eq!(Num(12.0).to_string(), "12");
    assert_eq!(Num(1e-7).to_string(), "0");
    let u: [u8; 16] = core::array::from_fn(|i| (i * 17) as u8);
    assert_eq!(Uuid(&u).to_string(), "00112233-4455-6677-8899-aabbccddeeff");
}

#[test]
fn a_missing_directory_is_refused_before_anything_is_written() {
    let e = MetricsFile::new(Path::new("/nonexistent-dir/x.prom"), None)
        .err()
        .unwrap();
    assert!(
        e.contains("directory /nonexistent-dir does not exist"),
        "{e}"
    );
    assert!(MetricsFile::new(Path::new("/tmp"), None).is_err());
    assert!(MetricsFile::new(Path::new("/"), None).is_err());
    let ok = MetricsFile::new(Path::new("x.prom"), None).unwrap();
    let tmp = ok.file.tmp().to_str().unwrap();
    assert!(
        tmp.starts_with("./.x.prom.") && tmp.ends_with(".tmp"),
        "{tmp}"
    );
    assert_eq!(tmp.len(), "./.x.prom.".len() + 16 + ".tmp".len(), "{tmp}");
    let other = MetricsFile::new(Path::new("x.prom"), None).unwrap();
    assert_ne!(
        ok.file.tmp(),
        other.file.tmp(),
        "the temporary name cannot be guessed"
    );
}

/// A scratch directory of this test's own.
fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vcs-prom-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn paths_that_are_not_a_plain_new_or_regular_file_are_refused() {
    let d = scratch("paths");
    let settings = d.join("settings");
    std::fs::write(&settings, "INTERVAL=1\n").unwrap();
    let e = MetricsFile::new(&settings, Some(&settings)).err().unwrap();
    assert!(e.ends_with("is the settings file"), "{e}");
    let exe = std::env::current_exe().unwrap();
    let e = MetricsFile::new(&exe, None).err().unwrap();
    assert!(e.ends_with("is this program"), "{e}");
    let e = MetricsFile::new(Path::new("/dev/full"), None)
        .err()
        .unwrap();
    assert!(e.contains("not a regular file"), "{e}");
    let link = d.join("m.prom");
    std::os::unix::fs::symlink("/dev/full", &link).unwrap();
    let e = MetricsFile::new(&link, None).err().unwrap();
    assert!(
        e.ends_with("is a symbolic link: name the file itself"),
        "{e}"
    );
    let long = d.join("x".repeat(240));
    let e = MetricsFile::new(&long, None).err().unwrap();
    assert!(
        e.ends_with("the file name is 240 bytes, the most is 233"),
        "{e}"
    );
    let e = MetricsFile::new(Path::new("/tmp/a\nb/m.prom"), None)
        .err()
        .unwrap();
    assert!(!e.contains('\n'), "one line: {e}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The temporary file is created new, never opened through a name someone prepared:
/// a symlink planted at its name leaves its target untouched, and the metrics are
/// still written, through another temporary name.
#[test]
fn a_planted_symlink_at_the_temporary_name_is_never_followed() {
    let d = scratch("planted");
    let victim = d.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let path = d.join("m.prom");
    let mut file = MetricsFile::new(&path, None).unwrap();
    let planted = file.file.tmp().to_path_buf();
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let names = Names(&["a", "b", "c"]);
    let units = [unit(0, 0, Some(0), 0.5)];
    let r = report(&units, &[0.5], &names);
    file.publish(&r, &Counters::default());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(
        std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("vcpu_scheduler_"), "{text}");
    assert!(!file.failing);
    let _ = std::fs::remove_dir_all(&d);
}
