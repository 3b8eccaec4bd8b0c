//! An indexed binary heap of pCPUs by a key, lowest first (ties: the lower index), that
//! can change one pCPU's key in O(log pCPUs): what the search keeps its steepest source
//! and each node's cheapest destinations in, so a step costs O(log pCPUs), not
//! O(pCPUs). Its buffers are reused; it allocates only when the host grows.

use super::types::TIE;

/// Not in the heap.
const OUT: usize = usize::MAX;

#[derive(Debug, Default, Clone)]
pub struct Heap {
    /// pCPUs in heap order, and their keys.
    order: Vec<usize>,
    key: Vec<f64>,
    /// Where each pCPU is in `order` (`OUT` if not there).
    pos: Vec<usize>,
}

impl Heap {
    /// Empty, for pCPUs `0..n`.
    pub fn reset(&mut self, n: usize) {
        self.order.clear();
        self.key.clear();
        self.key.resize(n, 0.0);
        self.pos.clear();
        self.pos.resize(n, OUT);
    }

    /// Is `a` before `b`?
    fn before(&self, a: usize, b: usize) -> bool {
        let (ka, kb) = (self.key[a], self.key[b]);
        ka < kb - TIE || (ka <= kb + TIE && a < b)
    }

    /// Put `p` in with `key`, or give it that key if it is in.
    pub fn set(&mut self, p: usize, key: f64) {
        self.key[p] = key;
        let at = match self.pos[p] {
            OUT => {
                self.order.push(p);
                self.order.len() - 1
            }
            at => at,
        };
        self.pos[p] = at;
        let at = self.up(at);
        self.down(at);
    }

    /// Take `p` out, if it is in.
    pub fn remove(&mut self, p: usize) {
        let at = self.pos[p];
        if at == OUT {
            return;
        }
        let last = self.order.len() - 1;
        self.swap(at, last);
        self.order.pop();
        self.pos[p] = OUT;
        if at < self.order.len() {
            let at = self.up(at);
            self.down(at);
        }
    }

    /// The first pCPU, and the one after it.
    pub fn first(&self) -> Option<usize> {
        self.order.first().copied()
    }

    pub fn second(&self) -> Option<usize> {
        match (self.order.get(1), self.order.get(2)) {
            (Some(&a), Some(&b)) => Some(if self.before(b, a) { b } else { a }),
            (a, _) => a.copied(),
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.order.swap(a, b);
        self.pos[self.order[a]] = a;
        self.pos[self.order[b]] = b;
    }

    fn up(&mut self, mut at: usize) -> usize {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !self.before(self.order[at], self.order[parent]) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
        at
    }

    fn down(&mut self, mut at: usize) {
        loop {
            let (l, r) = (2 * at + 1, 2 * at + 2);
            let mut best = at;
            for c in [l, r] {
                if c < self.order.len() && self.before(self.order[c], self.order[best]) {
                    best = c;
                }
            }
            if best == at {
                return;
            }
            self.swap(at, best);
            at = best;
        }
    }
}
