//! Every `scenarios/*.scn`, with each variant: a markdown table of ticks to balance,
//! migrations, reversals, final σ, max_over_bound (busiest pCPU's demand over the best
//! any placement could do; 1.00 is perfect), the topology measures and the cost.

use std::fs;
use std::path::{Path, PathBuf};

use vcpu_scheduler::service::simulate::Summary;
use vcpu_scheduler::sim::scenario::Scenario;

use crate::VARIANTS;

pub fn run(dir: &Path, title: &str) -> Result<(), String> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    files.sort();
    println!("## {title}");
    println!();
    println!("Each cell: seed / balance with demand estimated / balance with demand measured.");
    println!();
    println!(
        "| scenario | ticks to balance | migrations | reversals | final σ | max_over_bound | remote_vcpus | smt_conflicts | work | µs per tick |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for path in &files {
        let sc = Scenario::load(path).map_err(|e| e.to_string())?;
        let mut runs = Vec::with_capacity(VARIANTS.len());
        let mut micros = Vec::with_capacity(VARIANTS.len());
        for v in VARIANTS {
            let r = crate::run(&sc, v, false)?;
            micros.push(format!(
                "{:.1}",
                r.elapsed.as_secs_f64() * 1e6 / (r.s.ticks + 1) as f64
            ));
            runs.push(r.s);
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default();
        let cells =
            |f: &dyn Fn(&Summary) -> String| runs.iter().map(f).collect::<Vec<_>>().join(" / ");
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cells(&|s| s
                .ticks_to_balance
                .map_or_else(|| "never".to_owned(), |k| k.to_string())),
            cells(&|s| s.migrations.to_string()),
            cells(&|s| s.reversals.to_string()),
            cells(&|s| s
                .final_sigma_pct
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"))),
            cells(&|s| format!("{:.2}", s.max_over_bound)),
            cells(&|s| s.remote_vcpus.to_string()),
            cells(&|s| s.smt_conflicts.to_string()),
            cells(&|s| format!("{:.1}", s.work_pct)),
            micros.join(" / "),
        );
    }
    Ok(())
}
