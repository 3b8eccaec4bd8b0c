//! `seed`'s rule, the design this project started from: one move per tick, from the
//! busiest pCPU to the idlest, of the vCPU whose usage is closest to half their gap
//! (so the gap narrows most), if that narrows it at all. The reference every other
//! figure is compared with.

use super::state::Scratch;
use super::types::Why;

/// Plan `seed`'s one move over the planning loads (usage, for `seed`).
pub(super) fn seed_move(s: &mut Scratch) {
    let allowed = || (0..s.pcpu.len()).filter(|&p| s.pcpu[p].allowed);
    let load = |p: usize| s.pcpu[p].load;
    let busiest = allowed().max_by(|&a, &b| load(a).total_cmp(&load(b)).then(b.cmp(&a)));
    let idlest = allowed().min_by(|&a, &b| load(a).total_cmp(&load(b)).then(a.cmp(&b)));
    let (Some(src), Some(dst)) = (busiest, idlest) else {
        return;
    };
    let gap = load(src) - load(dst);
    let best = s
        .on(src)
        .filter(|&i| s.item[i].why.is_none())
        .map(|i| (i, (gap - 2.0 * s.item[i].demand).abs()))
        .filter(|&(_, after)| after < gap)
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    if let Some((i, _)) = best {
        s.item[i].why = Some(Why::Busiest);
        s.shift(i, dst);
    }
}
