//! The Prometheus tools the metrics tests hand our `--metrics-file` to: `promtool check
//! metrics` (the format and its lint rules) and `prometheus-node-exporter` with its
//! textfile collector (what a fleet really scrapes). Both from Debian's packages
//! (`prometheus`, `prometheus-node-exporter`), installed by `scripts/host-setup.sh`.

// Each test file uses a different subset.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `promtool check metrics < file`: `Ok` only when it exits 0 and prints nothing (no lint
/// complaint either); else what it said.
pub fn promtool_check(file: &Path) -> Result<(), String> {
    let input = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(input)
        .output()
        .map_err(|e| {
            format!("cannot run promtool (apt-get install prometheus; scripts/host-setup.sh): {e}")
        })?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

/// node_exporter with only its textfile collector, reading `dir`, on a free loopback
/// port. Killed when dropped.
pub struct NodeExporter {
    child: Child,
    pub port: u16,
}

impl NodeExporter {
    pub fn start(dir: &Path) -> NodeExporter {
        // A port the kernel just gave out and we released: free unless raced.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        let child = Command::new("prometheus-node-exporter")
            .arg("--collector.disable-defaults")
            .arg("--collector.textfile")
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run prometheus-node-exporter (apt-get install prometheus-node-exporter)");
        let mut ne = NodeExporter { child, port };
        // It listens within a fraction of a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = ne.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = ne.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("node_exporter exited ({status}): {err}");
            }
            assert!(
                Instant::now() < deadline,
                "node_exporter not listening on {port}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        ne
    }

    /// `GET /metrics`: the body.
    pub fn scrape(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to node_exporter");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp)
            .expect("read node_exporter's answer");
        let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        body.to_string()
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The samples of an exposition whose name starts with `prefix`, keyed by
/// `name{labels}` exactly as written, with their values. Our labels come in alphabetical
/// order, which is how node_exporter re-renders them, so keys compare across the two;
/// values are compared as numbers (Go writes `4.8e-05` where we write `0.000048`).
pub fn samples(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            let (key, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value: {l}"));
            let v = value
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("bad value in {l:?}: {e}"));
            (key.to_string(), v)
        })
        .collect()
}

/// The one sample called exactly `key` (`name` or `name{labels}`).
pub fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

/// Checks the file with promtool, serves it through node_exporter, and returns our
/// samples as node_exporter served them after checking they are the file's, value for
/// value.
pub fn check_and_serve(dir: &Path, file: &Path) -> BTreeMap<String, f64> {
    promtool_check(file).unwrap_or_else(|e| panic!("{e}"));
    let written = std::fs::read_to_string(file).expect("read the metrics file");
    let ne = NodeExporter::start(dir);
    let served = ne.scrape();
    let ours = samples(&written, "vcpu_scheduler_");
    let theirs = samples(&served, "vcpu_scheduler_");
    assert!(!ours.is_empty(), "no samples written:\n{written}");
    assert_eq!(
        ours, theirs,
        "node_exporter served other values than we wrote"
    );
    let errors = samples(&served, "node_textfile_scrape_error");
    assert_eq!(
        errors.values().copied().collect::<Vec<_>>(),
        vec![0.0],
        "node_exporter's textfile collector reported an error:\n{served}"
    );
    theirs
}
