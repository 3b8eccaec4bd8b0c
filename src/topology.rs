//! The host's shape: which NUMA node each pCPU belongs to, and which pCPUs are hardware
//! threads of one core (SMT siblings).
//!
//! Read from the host's capabilities (`virConnectGetCapabilities`, its
//! `<host><topology><cells>`) on a live host, built from a scenario's `topology` line in
//! the simulator. A host that says nothing of it is one node with one thread per core:
//! every pCPU alike, as before topology was known. Nothing here knows about libvirt; the
//! scan of the capabilities document is in [`Topology::from_capabilities`].

use std::fmt;

/// The most NUMA nodes a host may have here: a domain's home and memory nodes cross the
/// host seam as a 64-bit mask ([`crate::host::DomainInfo::mem_nodes`]), one bit a node.
pub const MAX_NODES: usize = 64;

/// Where a pCPU sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// NUMA node (libvirt's cell id, renumbered from 0 in order of appearance).
    pub node: u16,
    /// Core, numbered across the whole host: pCPUs with the same core are SMT siblings.
    pub core: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// One entry per pCPU.
    places: Vec<Place>,
    nodes: usize,
    cores: usize,
    /// The cell ids as libvirt numbers them, in the order `node` counts them.
    cell_ids: Vec<u32>,
}

impl Topology {
    /// One node, one thread per core: what a host without topology looks like.
    pub fn flat(pcpus: usize) -> Topology {
        Topology {
            places: (0..pcpus)
                .map(|p| Place {
                    node: 0,
                    core: p as u32,
                })
                .collect(),
            nodes: 1,
            cores: pcpus,
            cell_ids: vec![0],
        }
    }

    /// `sockets` × `cores` × `threads` pCPUs numbered `((socket × cores) + core) ×
    /// threads + thread`, one NUMA node per socket (the simulator's `topology` line).
    pub fn from_shape(sockets: usize, cores: usize, threads: usize) -> Topology {
        let mut places = Vec::with_capacity(sockets * cores * threads);
        for s in 0..sockets {
            for c in 0..cores {
                for _ in 0..threads {
                    places.push(Place {
                        node: s as u16,
                        core: (s * cores + c) as u32,
                    });
                }
            }
        }
        Topology {
            places,
            nodes: sockets.max(1),
            cores: sockets * cores,
            cell_ids: (0..sockets.max(1) as u32).collect(),
        }
    }

    /// Build from per-pCPU places (cores need not be dense; they are renumbered).
    pub fn from_places(mut places: Vec<Place>, cell_ids: Vec<u32>) -> Topology {
        let mut seen: Vec<u32> = places.iter().map(|p| p.core).collect();
        seen.sort_unstable();
        seen.dedup();
        for p in &mut places {
            p.core = seen.binary_search(&p.core).unwrap_or(0) as u32;
        }
        let nodes = places
            .iter()
            .map(|p| p.node as usize + 1)
            .max()
            .unwrap_or(1);
        Topology {
            places,
            nodes,
            cores: seen.len(),
            cell_ids,
        }
    }

    pub fn pcpus(&self) -> usize {
        self.places.len()
    }

    pub fn nodes(&self) -> usize {
        self.nodes
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Where pCPU `p` sits; pCPUs past the topology (it cannot happen for a checked
    /// one) are node 0, a core of their own.
    pub fn place(&self, p: usize) -> Place {
        self.places.get(p).copied().unwrap_or(Place {
            node: 0,
            core: (self.cores + p) as u32,
        })
    }

    /// The node numbered `cell` by libvirt (as a `numatune` nodeset names it).
    pub fn node_of_cell(&self, cell: u32) -> Option<u16> {
        self.cell_ids
            .iter()
            .position(|&c| c == cell)
            .map(|i| i as u16)
    }

    /// More than one thread on some core.
    pub fn smt(&self) -> bool {
        self.cores < self.places.len()
    }

    /// Parse the `<topology>` of a capabilities document for a host of `pcpus` pCPUs.
    /// `Ok(None)` when the document has no topology (no cells, as libvirt's test driver
    /// on a node file): the caller treats the host as flat. An error names what is
    /// wrong: the document cannot be read, or it names pCPUs the host does not have.
    pub fn from_capabilities(xml: &str, pcpus: usize) -> Result<Option<Topology>, String> {
        scan(xml, pcpus)
    }
}

/// `node 0: pcpus 0-3 (2 cores × 2 threads); node 1: ...`
impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in 0..self.nodes {
            if n > 0 {
                f.write_str("; ")?;
            }
            let pcpus: Vec<usize> = (0..self.places.len())
                .filter(|&p| self.places[p].node as usize == n)
                .collect();
            let mut cores: Vec<u32> = pcpus.iter().map(|&p| self.places[p].core).collect();
            cores.dedup();
            write!(f, "node {n}")?;
            if let Some(&cell) = self.cell_ids.get(n).filter(|&&c| c as usize != n) {
                write!(f, " (cell {cell})")?;
            }
            f.write_str(": pcpus ")?;
            write_list(f, &pcpus)?;
            cores.sort_unstable();
            cores.dedup();
            let threads = if cores.is_empty() {
                0
            } else {
                pcpus.len() / cores.len()
            };
            write!(f, " ({} cores × {threads} threads)", cores.len())?;
        }
        Ok(())
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, xs: &[usize]) -> fmt::Result {
    let mut i = 0;
    let mut first = true;
    while i < xs.len() {
        let start = xs[i];
        while i + 1 < xs.len() && xs[i + 1] == xs[i] + 1 {
            i += 1;
        }
        if !first {
            f.write_str(",")?;
        }
        first = false;
        if start == xs[i] {
            write!(f, "{start}")?;
        } else {
            write!(f, "{start}-{}", xs[i])?;
        }
        i += 1;
    }
    Ok(())
}

/// A core as libvirt names it: (socket_id, die_id, core_id).
type CoreKey = (u32, u32, u32);

/// The hand-written scan: find `<host>` … `<topology>` … `<cells>`, then each `<cell
/// id=...>` and in it each `<cpu id=... core_id=... socket_id=... siblings=...>`. Only
/// these few attributes matter, so no XML library: the document is libvirt's own, with
/// attributes in single quotes (double quotes are accepted too).
fn scan(xml: &str, pcpus: usize) -> Result<Option<Topology>, String> {
    let host = section(xml, "host").ok_or("no <host> element in the capabilities")?;
    // <host><cpu> has a self-closing <topology sockets=... threads=.../> of its own;
    // the one with the cells has a body.
    let Some(topology) = elements(host, "topology").find_map(|e| e.body) else {
        return Ok(None);
    };
    let Some(cells) = section(topology, "cells") else {
        return Ok(None);
    };
    // Per pCPU: its node, and its core as (socket, die, core_id): core_id is unique
    // only within a socket (and die).
    let mut found: Vec<Option<(u16, CoreKey)>> = vec![None; pcpus];
    let mut cell_ids = Vec::new();
    for (node, cell) in elements(cells, "cell").enumerate() {
        let id = attr(cell.open, "id")
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or("a <cell> without a numeric id")?;
        cell_ids.push(id);
        let node = u16::try_from(node).map_err(|_| "too many cells")?;
        let Some(cpus) = cell.body.and_then(|b| section(b, "cpus")) else {
            continue; // a memory-only node
        };
        for cpu in elements(cpus, "cpu") {
            let num = |name: &str| {
                attr(cpu.open, name)
                    .map(|v| {
                        v.parse::<u32>()
                            .map_err(|_| format!("<cpu {name}={v:?}> is not a number"))
                    })
                    .transpose()
            };
            let id = num("id")?.ok_or("a <cpu> without an id")? as usize;
            let core = (
                num("socket_id")?.unwrap_or(0),
                num("die_id")?.unwrap_or(0),
                num("core_id")?.unwrap_or(id as u32),
            );
            let slot = found.get_mut(id).ok_or_else(|| {
                format!("the capabilities name pcpu {id}, but the host has {pcpus}")
            })?;
            if slot.is_some() {
                return Err(format!("pcpu {id} appears twice in the capabilities"));
            }
            *slot = Some((node, core));
        }
    }
    if cell_ids.is_empty() {
        return Ok(None);
    }
    if cell_ids.len() > MAX_NODES {
        return Err(format!(
            "the capabilities list {} NUMA nodes; this program handles at most {MAX_NODES}",
            cell_ids.len()
        ));
    }
    let missing: Vec<usize> = (0..pcpus).filter(|&p| found[p].is_none()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "the capabilities leave out pcpus {missing:?} of the host's {pcpus}"
        ));
    }
    let mut cores: Vec<CoreKey> = found.iter().flatten().map(|&(_, c)| c).collect();
    cores.sort_unstable();
    cores.dedup();
    let places = found
        .iter()
        .flatten()
        .map(|&(node, c)| Place {
            node,
            core: cores.binary_search(&c).unwrap_or(0) as u32,
        })
        .collect();
    Ok(Some(Topology::from_places(places, cell_ids)))
}

/// An element as found: its opening tag's attribute text, and its body (`None` when
/// it closes itself: `<cpu .../>`).
struct Element<'a> {
    open: &'a str,
    body: Option<&'a str>,
}

/// The body of the first `<name ...>...</name>` in `text`.
fn section<'a>(text: &'a str, name: &'a str) -> Option<&'a str> {
    elements(text, name).next().and_then(|e| e.body)
}

/// Every `<name ...>` element at any depth in `text`, in order (not nested in itself:
/// cells, cpus and cpu do not nest).
fn elements<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = Element<'a>> + 'a {
    let mut rest = text;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find('<')?;
            let after = &rest[start + 1..];
            let is_it = after.starts_with(name)
                && after[name.len()..]
                    .starts_with(|c: char| c == '>' || c == '/' || c.is_whitespace());
            if !is_it {
                rest = after;
                continue;
            }
            let tag_end = after.find('>')?;
            let open = &after[name.len()..tag_end];
            if open.ends_with('/') {
                rest = &after[tag_end + 1..];
                return Some(Element {
                    open: open.trim_end_matches('/'),
                    body: None,
                });
            }
            let body_start = &after[tag_end + 1..];
            let close = format!("</{name}>");
            let end = body_start.find(&close)?;
            rest = &body_start[end + close.len()..];
            return Some(Element {
                open,
                body: Some(&body_start[..end]),
            });
        }
    })
}

/// The value of attribute `name` in an opening tag's attribute text.
fn attr<'a>(open: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = open;
    while let Some(i) = rest.find(name) {
        let before_ok = i == 0 || rest[..i].ends_with(char::is_whitespace);
        let after = rest[i + name.len()..].trim_start();
        if before_ok && let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start();
            let q = v.chars().next()?;
            if q == '\'' || q == '"' {
                let v = &v[1..];
                return v.find(q).map(|e| &v[..e]);
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

#[cfg(test)]
mod tests;
