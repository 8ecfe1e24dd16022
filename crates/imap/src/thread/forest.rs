//! The link-cut tree behind REFERENCES step (1)'s loop check (see
//! `Forest`).

use super::NONE;

/// The parent links of REFERENCES step (1), with the question "is this node
/// below that one?" answered in O(log n) amortized time: a link-cut tree
/// (Sleator and Tarjan) over the same links, kept beside them. Links only
/// ever hang a root under a node, so the tree is never re-rooted.
///
/// Each tree is cut into paths; each path is a splay tree ordered by depth
/// (`kid[_][0]` toward the root of the thread), and the top of each splay
/// tree points (`up`) to the node above its path.
pub(super) struct Forest {
    /// The parent of each node, `NONE` at the top of a thread.
    pub(super) parent: Vec<usize>,
    /// Splay tree parent, or at the root of a splay tree the node above
    /// its path.
    up: Vec<usize>,
    kid: Vec<[usize; 2]>,
}

impl Forest {
    pub(super) fn new(nodes: usize) -> Forest {
        Forest { parent: vec![NONE; nodes], up: vec![NONE; nodes], kid: vec![[NONE; 2]; nodes] }
    }

    pub(super) fn add(&mut self) -> usize {
        self.parent.push(NONE);
        self.up.push(NONE);
        self.kid.push([NONE; 2]);
        self.parent.len() - 1
    }

    /// Whether `node` is `top` or below it, for a `top` that has no parent:
    /// linking `top` under `node` would make a loop (RFC 5256 §3 step 1A:
    /// "before making message A the parent of B, make sure that A is not
    /// a descendent of B").
    pub(super) fn below(&mut self, node: usize, top: usize) -> bool {
        self.root(node) == top
    }

    /// Hangs `node`, which has no parent, under `parent`.
    pub(super) fn link(&mut self, node: usize, parent: usize) {
        debug_assert!(self.parent[node] == NONE && self.root(parent) != node, "a link may only hang a root elsewhere");
        self.access(node);
        self.up[node] = parent;
        self.parent[node] = parent;
    }

    /// Takes `node` (and what is below it) from its parent, if it has one.
    pub(super) fn cut(&mut self, node: usize) {
        if self.parent[node] == NONE {
            return;
        }
        self.access(node);
        let above = self.kid[node][0];
        if above != NONE {
            self.up[above] = NONE;
        }
        self.kid[node][0] = NONE;
        self.parent[node] = NONE;
    }

    /// The top of the thread that holds `node`.
    pub(super) fn root(&mut self, node: usize) -> usize {
        self.access(node);
        let mut top = node;
        while self.kid[top][0] != NONE {
            top = self.kid[top][0];
        }
        self.splay(top);
        top
    }

    /// Makes the path from the top of the thread to `node` one splay tree,
    /// rooted at `node`, with nothing deeper in it.
    fn access(&mut self, node: usize) {
        let mut below = NONE;
        let mut at = node;
        while at != NONE {
            self.splay(at);
            self.kid[at][1] = below;
            below = at;
            at = self.up[at];
        }
        self.splay(node);
    }

    fn is_splay_root(&self, x: usize) -> bool {
        let up = self.up[x];
        up == NONE || (self.kid[up][0] != x && self.kid[up][1] != x)
    }

    fn rotate(&mut self, x: usize) {
        let y = self.up[x];
        let z = self.up[y];
        let side = usize::from(self.kid[y][1] == x);
        if !self.is_splay_root(y) {
            let z_side = usize::from(self.kid[z][1] == y);
            self.kid[z][z_side] = x;
        }
        self.up[x] = z;
        let moved = self.kid[x][side ^ 1];
        self.kid[y][side] = moved;
        if moved != NONE {
            self.up[moved] = y;
        }
        self.kid[x][side ^ 1] = y;
        self.up[y] = x;
    }

    fn splay(&mut self, x: usize) {
        while !self.is_splay_root(x) {
            let y = self.up[x];
            if !self.is_splay_root(y) {
                let z = self.up[y];
                let straight = (self.kid[y][1] == x) == (self.kid[z][1] == y);
                self.rotate(if straight { y } else { x });
            }
            self.rotate(x);
        }
    }
}
