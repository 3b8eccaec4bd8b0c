//! The [`Host`] seam over [`SimHost`]: what the scheduler reads and pins, in the
//! shapes libvirt gives them (the domain list as of the last refresh, per-vCPU times,
//! affinities and run-queue delay, per-pCPU busy and total time).

use crate::cpumap::CpuMap;
use crate::host::{DomainInfo, DomainKey, Host, PcpuId, PcpuTimes, RunQueue, VcpuId, VcpuSample};
use crate::topology::Topology;

use super::super::error::SimHostError;
use super::SimHost;

impl Host for SimHost {
    type Error = SimHostError;

    fn pcpus(&self) -> usize {
        self.pcpus
    }

    fn topology(&self) -> Option<&Topology> {
        (self.shaped && !self.hidden).then_some(&self.topology)
    }

    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn refresh(&mut self) -> Result<(), SimHostError> {
        let before = self.domains.len();
        self.domains.retain(|d| d.running);
        self.listed = self.domains.len();
        if self.domains.len() != before || self.by_key.len() != self.domains.len() {
            self.index_keys();
        }
        Ok(())
    }

    fn domain_count(&self) -> usize {
        self.listed
    }

    fn domain(&self, i: usize) -> DomainInfo<'_> {
        let d = &self.domains[i];
        DomainInfo {
            key: d.key,
            name: &d.name,
            config_pinned: false,
            // A node past bit 63 cannot be said in the mask: unbound, as far as it goes.
            mem_nodes: d
                .mem_node
                .map_or(0, |n| 1u64.checked_shl(u32::from(n)).unwrap_or(0)),
        }
    }

    fn sample(&mut self, i: usize, out: &mut Vec<VcpuSample>) -> Result<(), SimHostError> {
        let d = match self.domains.get(i) {
            Some(d) if i < self.listed => d,
            _ => {
                return Err(SimHostError::NoSuchDomain {
                    name: None,
                    key: None,
                });
            }
        };
        if !d.running {
            return Err(SimHostError::NotRunning {
                name: d.name.clone(),
            });
        }
        for (j, v) in d.vcpus.iter().enumerate() {
            out.push(VcpuSample {
                domain: d.key,
                vcpu: VcpuId(j as u32),
                cpu_time_ns: v.cpu_time_ns,
                at_ns: self.now_ns,
                pinned_to: v.only.map(PcpuId),
                last_ran_on: Some(PcpuId(v.last_ran_on)),
                run_queue: self.reports_delay.then_some(RunQueue {
                    time_ns: v.cpu_time_ns,
                    delay_ns: v.delay_ns,
                    at_ns: self.now_ns,
                }),
            });
        }
        Ok(())
    }

    fn affinity(&self, i: usize, k: usize, out: &mut CpuMap) -> bool {
        let v = self
            .domains
            .get(i)
            .filter(|_| i < self.listed)
            .and_then(|d| d.vcpus.get(k));
        match v {
            Some(v) => {
                out.copy_from(v.affinity.as_bytes());
                true
            }
            None => false,
        }
    }

    fn sample_pcpu(&mut self, p: usize, out: &mut PcpuTimes) -> Result<bool, SimHostError> {
        match (self.busy_ns.get(p), self.total_ns.get(p)) {
            (Some(&busy_ns), Some(&total_ns)) => {
                *out = PcpuTimes { busy_ns, total_ns };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn pin(&mut self, domain: DomainKey, vcpu: VcpuId, pcpu: PcpuId) -> Result<(), SimHostError> {
        let pcpus = self.pcpus;
        let found = self
            .by_key
            .binary_search_by(|(k, _)| k.cmp(&domain))
            .ok()
            .map(|k| self.by_key[k].1)
            .filter(|&i| self.domains.get(i).is_some_and(|d| d.key == domain));
        let i = match found {
            Some(i) => i,
            // Added since the last refresh: not indexed yet.
            None => self.domains.iter().position(|d| d.key == domain).ok_or(
                SimHostError::NoSuchDomain {
                    name: None,
                    key: Some(domain),
                },
            )?,
        };
        let d = &mut self.domains[i];
        if !d.running {
            return Err(SimHostError::NotRunning {
                name: d.name.clone(),
            });
        }
        let vcpus = d.vcpus.len();
        let v = d
            .vcpus
            .get_mut(vcpu.index())
            .ok_or_else(|| SimHostError::NoSuchVcpu {
                name: d.name.clone(),
                vcpu: vcpu.0,
                vcpus,
            })?;
        v.affinity
            .set_only(pcpu.index())
            .map_err(|_| SimHostError::PcpuOutOfRange {
                pcpu: pcpu.0,
                pcpus,
            })?;
        v.only = Some(pcpu.0);
        self.placement_stale = true;
        Ok(())
    }
}
