//! libvirt's CPU bitmap, sized to this host, and the function-like macros bindgen skips.
//!
//! libvirt passes CPU affinity as a byte mask: CPU `c` is bit `c % 8` of byte `c / 8`,
//! and a mask for `n` CPUs is `VIR_CPU_MAPLEN(n) = (n + 7) / 8` bytes long
//! (`include/libvirt/libvirt-domain.h`). Several vCPUs' masks are laid end to end in one
//! buffer, `maplen` bytes each. The macros are redone here as bounds-checked functions:
//! an index past the end is an error, never a write out of bounds. Nothing here knows
//! about FFI, so there is no fixed size: a host with 4 or 4096 pCPUs gets a mask that fits.

use std::fmt;

/// More CPUs than any host libvirt runs on: bounds what user input may size a mask to.
pub const MAX_CPUS: usize = 8192;

/// `VIR_CPU_MAPLEN(cpu)`: bytes needed for a mask of `ncpus` CPUs.
pub const fn cpu_maplen(ncpus: usize) -> usize {
    ncpus.div_ceil(8)
}

/// `VIR_USE_CPU(cpumap, cpu)`: set `cpu` in `map`. `None` if the mask is too short.
pub fn use_cpu(map: &mut [u8], cpu: usize) -> Option<()> {
    let byte = map.get_mut(cpu / 8)?;
    *byte |= 1 << (cpu % 8);
    Some(())
}

/// Is `cpu` set in the single mask `map`? CPUs beyond the mask are not set.
pub fn cpu_is_set(map: &[u8], cpu: usize) -> bool {
    map.get(cpu / 8).is_some_and(|b| b & (1 << (cpu % 8)) != 0)
}

/// `VIR_GET_CPUMAP(cpumaps, maplen, vcpu)`: the mask of `vcpu` inside a buffer of masks.
pub fn get_cpumap(cpumaps: &[u8], maplen: usize, vcpu: usize) -> Option<&[u8]> {
    let start = vcpu.checked_mul(maplen)?;
    cpumaps.get(start..start.checked_add(maplen)?)
}

/// `Some(cpu)` when exactly one CPU below `ncpus` is set in `map`: a vCPU pinned to it.
/// Bits at or above `ncpus` are ignored (the test driver accepts pins to CPUs the host
/// lacks; such a vCPU is treated as not pinned and gets re-pinned to a real pCPU).
pub fn only_cpu(map: &[u8], ncpus: usize) -> Option<usize> {
    let mut found = None;
    for (i, &byte) in map.iter().enumerate() {
        let first = i * 8;
        if byte == 0 {
            continue;
        }
        if first >= ncpus {
            break;
        }
        // The bits of this byte that are CPUs of the host.
        let valid = if ncpus - first >= 8 {
            0xff
        } else {
            (1u8 << (ncpus - first)) - 1
        };
        let b = byte & valid;
        if b == 0 {
            continue;
        }
        if found.is_some() || b.count_ones() > 1 {
            return None;
        }
        found = Some(first + b.trailing_zeros() as usize);
    }
    found
}

/// An affinity mask for a host with a known number of pCPUs.
///
/// Bits at or beyond `ncpus` are never set through this type, so a mask read from a
/// driver that reports more CPUs than the host has (libvirt's test driver does) is
/// clipped to the host when copied in with [`CpuMap::copy_from`].
#[derive(Clone, PartialEq, Eq)]
pub struct CpuMap {
    ncpus: usize,
    bytes: Vec<u8>,
}

/// A CPU index that is not below the host's pCPU count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub cpu: usize,
    pub ncpus: usize,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pcpu {} does not exist (host has {} pcpus)",
            self.cpu, self.ncpus
        )
    }
}

impl CpuMap {
    /// An empty mask for `ncpus` CPUs.
    pub fn new(ncpus: usize) -> Self {
        CpuMap {
            ncpus,
            bytes: vec![0; cpu_maplen(ncpus)],
        }
    }

    /// A mask with every CPU of the host set.
    pub fn all(ncpus: usize) -> Self {
        let mut m = Self::new(ncpus);
        m.fill();
        m
    }

    /// Number of CPUs this mask describes (the host's pCPU count).
    pub fn ncpus(&self) -> usize {
        self.ncpus
    }

    /// The raw bytes, `cpu_maplen(ncpus)` long, as libvirt wants them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn clear(&mut self) {
        self.bytes.fill(0);
    }

    pub fn fill(&mut self) {
        for cpu in 0..self.ncpus {
            // In range by construction of the loop.
            let _ = use_cpu(&mut self.bytes, cpu);
        }
    }

    pub fn set(&mut self, cpu: usize) -> Result<(), OutOfRange> {
        if cpu >= self.ncpus {
            return Err(OutOfRange {
                cpu,
                ncpus: self.ncpus,
            });
        }
        use_cpu(&mut self.bytes, cpu).ok_or(OutOfRange {
            cpu,
            ncpus: self.ncpus,
        })
    }

    pub fn is_set(&self, cpu: usize) -> bool {
        cpu < self.ncpus && cpu_is_set(&self.bytes, cpu)
    }

    /// Make this mask exactly `{cpu}`.
    pub fn set_only(&mut self, cpu: usize) -> Result<(), OutOfRange> {
        if cpu >= self.ncpus {
            return Err(OutOfRange {
                cpu,
                ncpus: self.ncpus,
            });
        }
        self.clear();
        self.set(cpu)
    }

    /// Replace the contents with `src` (any length), keeping only CPUs below `ncpus`.
    pub fn copy_from(&mut self, src: &[u8]) {
        self.clear();
        for cpu in 0..self.ncpus {
            if cpu_is_set(src, cpu) {
                let _ = use_cpu(&mut self.bytes, cpu);
            }
        }
    }

    /// The CPUs set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ncpus).filter(move |&c| self.is_set(c))
    }

    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// `Some(cpu)` when exactly one CPU is set: the vCPU is pinned to it.
    pub fn only(&self) -> Option<usize> {
        only_cpu(&self.bytes, self.ncpus)
    }

    /// Parse a cpulist as virsh writes it: `0`, `0-3`, `0,2,5-7`, or `all`.
    pub fn parse_list(s: &str, ncpus: usize) -> Result<Self, String> {
        let mut m = Self::new(ncpus);
        let s = s.trim();
        if s == "all" {
            m.fill();
            return Ok(m);
        }
        if s.is_empty() {
            return Err("empty cpulist".into());
        }
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (parse_cpu(a)?, parse_cpu(b)?),
                None => {
                    let c = parse_cpu(part)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!("range {part:?} runs backwards"));
            }
            if hi >= ncpus {
                return Err(format!(
                    "pcpu {hi} is out of range 0-{}",
                    ncpus.saturating_sub(1)
                ));
            }
            for cpu in lo..=hi {
                m.set(cpu).map_err(|e| e.to_string())?;
            }
        }
        Ok(m)
    }
}

fn parse_cpu(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("{:?} is not a cpu number", s.trim()))
}

/// Formats as a cpulist (`0-2,5`), the way virsh prints affinity.
impl fmt::Display for CpuMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut cpu = 0;
        while cpu < self.ncpus {
            if !self.is_set(cpu) {
                cpu += 1;
                continue;
            }
            let start = cpu;
            while cpu + 1 < self.ncpus && self.is_set(cpu + 1) {
                cpu += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == cpu {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{cpu}")?;
            }
            cpu += 1;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CpuMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuMap({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maplen_rounds_up_to_bytes() {
        assert_eq!(cpu_maplen(0), 0);
        assert_eq!(cpu_maplen(1), 1);
        assert_eq!(cpu_maplen(8), 1);
        assert_eq!(cpu_maplen(9), 2);
        assert_eq!(cpu_maplen(64), 8);
        assert_eq!(cpu_maplen(4097), 513);
    }

    #[test]
    fn use_cpu_touches_one_bit_and_refuses_out_of_range() {
        let mut m = [0u8; 2];
        use_cpu(&mut m, 0).unwrap();
        use_cpu(&mut m, 9).unwrap();
        assert_eq!(m, [0b0000_0001, 0b0000_0010]);
        assert!(use_cpu(&mut m, 16).is_none());
        assert_eq!(m, [0b0000_0001, 0b0000_0010]);
    }

    #[test]
    fn getters_over_a_buffer_of_masks() {
        // 3 vCPUs on a 12-pCPU host: 2 bytes each.
        let maplen = cpu_maplen(12);
        let mut maps = vec![0u8; 3 * maplen];
        use_cpu(&mut maps[maplen..2 * maplen], 11).unwrap();
        assert_eq!(get_cpumap(&maps, maplen, 1), Some(&[0u8, 0b1000][..]));
        assert_eq!(get_cpumap(&maps, maplen, 3), None);
    }

    #[test]
    fn cpumap_beyond_eight_cpus() {
        let mut m = CpuMap::new(70);
        assert_eq!(m.as_bytes().len(), 9);
        m.set(69).unwrap();
        assert_eq!(m.only(), Some(69));
        m.set(3).unwrap();
        assert_eq!(m.only(), None);
        assert_eq!(m.count(), 2);
        assert_eq!(m.set(70), Err(OutOfRange { cpu: 70, ncpus: 70 }));
        m.set_only(8).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![8]);
    }

    #[test]
    fn only_cpu_ignores_cpus_past_the_host() {
        assert_eq!(only_cpu(&[0b0000_0100], 4), Some(2));
        assert_eq!(only_cpu(&[0b0010_0100], 4), Some(2));
        assert_eq!(only_cpu(&[0b0000_0110], 4), None);
        assert_eq!(only_cpu(&[0, 0b1], 9), Some(8));
        assert_eq!(only_cpu(&[0, 0], 16), None);
    }

    #[test]
    fn copy_from_clips_cpus_the_host_lacks() {
        let mut m = CpuMap::new(4);
        m.copy_from(&[0b0010_0000]); // CPU 5 only: the test driver accepts such a pin.
        assert_eq!(m.count(), 0);
        m.copy_from(&[0b0010_0100]);
        assert_eq!(m.only(), Some(2));
    }

    #[test]
    fn cpulists_parse_and_print_like_virsh() {
        let m = CpuMap::parse_list("0,2,5-7", 8).unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 2, 5, 6, 7]);
        assert_eq!(m.to_string(), "0,2,5-7");
        assert_eq!(CpuMap::parse_list("all", 4).unwrap().to_string(), "0-3");
        assert_eq!(CpuMap::parse_list("1", 4).unwrap().only(), Some(1));
        assert!(CpuMap::parse_list("4", 4).is_err());
        assert!(CpuMap::parse_list("3-1", 4).is_err());
        assert!(CpuMap::parse_list("x", 4).is_err());
        assert!(CpuMap::parse_list("", 4).is_err());
        assert_eq!(CpuMap::new(4).to_string(), "none");
    }
}
