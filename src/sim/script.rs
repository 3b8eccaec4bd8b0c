//! A scenario played on the simulated host: the host a scenario starts with, and each of
//! its events applied in turn. Demands are percent in the file, fractions in the host.

use super::SimHost;
use super::SimHostError;
use super::scenario::{Action, Scenario};

impl SimHost {
    /// The simulated host a scenario starts with, at virtual time 0: its shape, noise
    /// and delay, and the domains of its `vm` lines (nothing has run yet).
    pub fn from_scenario(sc: &Scenario) -> Result<SimHost, SimHostError> {
        let mut host = match sc.topology {
            Some(shape) => SimHost::with_topology(shape.topology()),
            None => SimHost::new(sc.pcpus),
        };
        host.set_noise(sc.noise_pct, sc.seed);
        host.set_reports_delay(sc.reports_delay);
        let mut fractions = Vec::new();
        for d in &sc.domains {
            to_fractions(&d.demands_pct, &mut fractions);
            host.add_domain_with_memory(&d.name, &fractions, &d.affinity, d.mem_node)?;
        }
        for h in &sc.host {
            host.set_host_load(h.pcpu, h.pct / 100.0)?;
        }
        Ok(host)
    }

    /// Apply one event's action. `fractions` is scratch for the demands, reused so a
    /// long replay does not allocate per event.
    pub fn apply(&mut self, action: &Action, fractions: &mut Vec<f64>) -> Result<(), SimHostError> {
        match action {
            Action::Load { name, demands_pct } => {
                to_fractions(demands_pct, fractions);
                self.set_demands(name, fractions)
            }
            Action::Vcpus { name, demands_pct } => {
                to_fractions(demands_pct, fractions);
                self.set_vcpus(name, fractions)
            }
            Action::Start(d) => {
                to_fractions(&d.demands_pct, fractions);
                self.add_domain_with_memory(&d.name, fractions, &d.affinity, d.mem_node)
                    .map(|_| ())
            }
            Action::Stop { name } => self.stop_domain(name).map(|_| ()),
            Action::Host(h) => self.set_host_load(h.pcpu, h.pct / 100.0),
        }
    }
}

fn to_fractions(pct: &[f64], out: &mut Vec<f64>) {
    out.clear();
    out.extend(pct.iter().map(|p| p / 100.0));
}
