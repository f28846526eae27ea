//! Cells: a stable key (tenant, user, shard) always lands in the same cell, so one cell's
//! failure or one noisy tenant is confined to the keys of that cell (the blast radius).
//!
//! [`CellMap`] routes keys with **weighted rendezvous hashing** (highest random weight,
//! Thaler & Ravishankar; the weighted form scores a cell `-weight / ln(u)` with `u` the
//! key-and-cell hash in (0, 1), so a cell's share of keys is its share of the weights). It
//! needs no ring and no virtual nodes, and it moves the fewest keys when the map changes:
//!
//! - adding a cell moves to it about `weight / total` of the keys, and only to it;
//! - removing a cell moves only its keys, each to the cell that was its second choice;
//! - **draining** a cell by a fraction `f` ([`CellMap::drain`]) moves the fraction `f` of its
//!   keys (the same keys at every step, chosen by a per-key hash) to their second choice, so a
//!   drain in steps of 10 % moves a tenth of that cell's keys per step and never bounces a
//!   key back and forth;
//! - [`CellMap::moved_between`] measures what a change would move, on sample keys, so an
//!   operator can bound a remap before making it.
//!
//! The hash is a fixed function of the bytes (FNV-1a folded through SplitMix64's finaliser),
//! not `std`'s randomly keyed `Hasher`: every process of a fleet, and every version of this
//! crate, sends a key to the same cell.
//!
//! A [`Cells<T>`] keeps one value per cell beside the map — typically each cell's own
//! [`Limiter`](crate::Limiter) and rate limits, so admission is per cell too.
//!
//! ```
//! use tailwater_core::cell::CellMap;
//!
//! let map = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 2.0)])?;
//! let home = map.route(b"tenant-42").expect("cells are active");
//! assert_eq!(map.route(b"tenant-42"), Some(home)); // stable
//! // Draining `home` completely sends its keys elsewhere, and nothing else moves.
//! let drained = map.drain(map.name(home), 1.0)?;
//! assert_ne!(drained.route(b"tenant-42"), Some(home));
//! # Ok::<(), tailwater_core::ConfigError>(())
//! ```

use std::fmt;

use crate::ConfigError;

/// Most cells one map holds: routing scores every cell, so the map is meant for tens.
pub const MAX_CELLS: usize = 1024;

/// Index of a cell in its [`CellMap`], in the order the cells were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellIndex(usize);

impl CellIndex {
    /// The position in the map (and in a [`Cells`] built from it).
    pub const fn get(self) -> usize {
        self.0
    }
}

impl fmt::Display for CellIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Cell {
    name: String,
    weight: f64,
    /// Hash of the name: the cell's seed in every key's score.
    seed: u64,
    /// Share of this cell's keys sent to their next choice, in [0, 1].
    drained: f64,
}

/// Where keys go: named cells with weights, some possibly draining. Cheap to clone; build a
/// new map to change it (routing reads an immutable map, so a swap is atomic for callers that
/// hold it in an `Arc` or `ArcSwap`).
#[derive(Debug, Clone, PartialEq)]
pub struct CellMap {
    cells: Vec<Cell>,
}

impl CellMap {
    /// A map of `(name, weight)` cells. Names must be unique and non-empty, weights finite and
    /// positive, and there must be 1 to [`MAX_CELLS`] cells.
    pub fn new<N: Into<String>>(
        cells: impl IntoIterator<Item = (N, f64)>,
    ) -> Result<Self, ConfigError> {
        let mut out: Vec<Cell> = Vec::new();
        for (name, weight) in cells {
            let name = name.into();
            if name.is_empty() {
                return Err(ConfigError::new("cell.name", "must not be empty"));
            }
            if !(weight.is_finite() && weight > 0.0) {
                return Err(ConfigError::new(
                    "cell.weight",
                    format!("cell `{name}`: must be a positive number, got {weight}"),
                ));
            }
            if out.iter().any(|c| c.name == name) {
                return Err(ConfigError::new(
                    "cell.name",
                    format!("`{name}` is given twice"),
                ));
            }
            if out.len() == MAX_CELLS {
                return Err(ConfigError::new(
                    "cell",
                    format!("at most {MAX_CELLS} cells"),
                ));
            }
            out.push(Cell {
                seed: hash_bytes(name.as_bytes()),
                name,
                weight,
                drained: 0.0,
            });
        }
        if out.is_empty() {
            return Err(ConfigError::new("cell", "at least one cell is needed"));
        }
        Ok(Self { cells: out })
    }

    /// How many cells (draining ones included).
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Always false: a map has at least one cell.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// A cell's name.
    ///
    /// # Panics
    /// If `cell` is not an index of this map.
    pub fn name(&self, cell: CellIndex) -> &str {
        &self.cells[cell.0].name
    }

    /// A cell's weight.
    ///
    /// # Panics
    /// If `cell` is not an index of this map.
    pub fn weight(&self, cell: CellIndex) -> f64 {
        self.cells[cell.0].weight
    }

    /// The share of a cell's keys drained away, in [0, 1].
    ///
    /// # Panics
    /// If `cell` is not an index of this map.
    pub fn drained(&self, cell: CellIndex) -> f64 {
        self.cells[cell.0].drained
    }

    /// The cell named `name`.
    pub fn index_of(&self, name: &str) -> Option<CellIndex> {
        self.cells
            .iter()
            .position(|c| c.name == name)
            .map(CellIndex)
    }

    /// Every cell's index, in order.
    pub fn indices(&self) -> impl Iterator<Item = CellIndex> + '_ {
        (0..self.cells.len()).map(CellIndex)
    }

    /// The cell `key` belongs to. `None` only when every cell is fully drained.
    pub fn route(&self, key: &[u8]) -> Option<CellIndex> {
        let k = hash_bytes(key);
        // A cell being drained gives away the keys whose drain draw falls under its drained
        // share; the draw depends on key and cell only, so a growing drain only adds keys.
        let mut best: Option<(f64, usize)> = None;
        for (i, c) in self.cells.iter().enumerate() {
            if c.drained > 0.0 && unit(mix(k ^ c.seed ^ DRAIN_SALT)) < c.drained {
                continue;
            }
            let score = -c.weight / unit(mix(k ^ c.seed)).ln();
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| CellIndex(i))
    }

    /// This map with `name` drained by `fraction` (0 = not drained, 1 = no keys left): that
    /// share of its keys goes to each key's next choice. Drains compose: draining by 0.3 and
    /// then by 0.6 moves exactly the keys a drain by 0.6 would.
    pub fn drain(&self, name: &str, fraction: f64) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(ConfigError::new(
                "cell.drain",
                format!("must be within [0, 1], got {fraction}"),
            ));
        }
        let i = self
            .index_of(name)
            .ok_or_else(|| ConfigError::new("cell.drain", format!("no cell named `{name}`")))?;
        let mut out = self.clone();
        out.cells[i.0].drained = fraction;
        Ok(out)
    }

    /// The share of `keys` that `self` and `other` route to cells of different names: what a
    /// change from one map to the other would move. Cells are compared by name, so the two
    /// maps may list them in different orders or have different cells.
    pub fn moved_between<'k>(
        &self,
        other: &CellMap,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> f64 {
        let (mut moved, mut total) = (0u64, 0u64);
        for key in keys {
            total += 1;
            let a = self.route(key).map(|c| self.name(c));
            let b = other.route(key).map(|c| other.name(c));
            if a != b {
                moved += 1;
            }
        }
        if total == 0 {
            0.0
        } else {
            moved as f64 / total as f64
        }
    }
}

/// One value per cell of a [`CellMap`] — each cell's limiter, rate limits or upstream — so a
/// key finds its cell and that cell's admission in one step.
#[derive(Debug, Clone)]
pub struct Cells<T> {
    map: CellMap,
    values: Vec<T>,
}

impl<T> Cells<T> {
    /// One value per cell, made by `make` from the cell's name and index.
    pub fn new(map: CellMap, mut make: impl FnMut(&str, CellIndex) -> T) -> Self {
        let values = map.indices().map(|i| make(map.name(i), i)).collect();
        Self { map, values }
    }

    /// The map.
    pub fn map(&self) -> &CellMap {
        &self.map
    }

    /// The cell of `key` and its value; `None` when every cell is fully drained.
    pub fn route(&self, key: &[u8]) -> Option<(CellIndex, &T)> {
        self.map.route(key).map(|i| (i, &self.values[i.0]))
    }

    /// A cell's value.
    ///
    /// # Panics
    /// If `cell` is not an index of this map.
    pub fn get(&self, cell: CellIndex) -> &T {
        &self.values[cell.0]
    }

    /// Every cell with its value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (CellIndex, &T)> + '_ {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (CellIndex(i), v))
    }

    /// Replaces the map, keeping the value of every cell whose name is still there and
    /// making values for new cells: a reload that moves no state it does not have to.
    pub fn remap(self, map: CellMap, mut make: impl FnMut(&str, CellIndex) -> T) -> Self {
        let mut old: Vec<Option<T>> = self.values.into_iter().map(Some).collect();
        let values = map
            .indices()
            .map(|i| {
                let kept = self.map.index_of(map.name(i)).and_then(|j| old[j.0].take());
                kept.unwrap_or_else(|| make(map.name(i), i))
            })
            .collect();
        Self { map, values }
    }
}

/// Separates a key's drain draw from its score draw.
const DRAIN_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// FNV-1a over the bytes, finished by [`mix`]: stable across processes and versions.
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash as a number in the open interval (0, 1) (53 bits; never 0, so `ln` is finite).
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("tenant-{i}").into_bytes()).collect()
    }

    fn shares(map: &CellMap, keys: &[Vec<u8>]) -> Vec<f64> {
        let mut counts = vec![0usize; map.len()];
        for k in keys {
            counts[map.route(k).unwrap().get()] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 / keys.len() as f64)
            .collect()
    }

    #[test]
    fn shares_follow_weights() {
        let map = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 2.0), ("d", 4.0)]).unwrap();
        let s = shares(&map, &keys(80_000));
        for (got, want) in s.iter().zip([0.125, 0.125, 0.25, 0.5]) {
            assert!((got - want).abs() < 0.01, "{s:?}");
        }
    }

    #[test]
    fn routing_is_stable_across_processes_and_versions() {
        // Fixed answers: a change of hash or scoring would silently move every tenant of a
        // fleet, so it must show up here first.
        let map = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)]).unwrap();
        let got: Vec<&str> = ["tenant-1", "tenant-2", "tenant-3", "tenant-4", "tenant-5"]
            .iter()
            .map(|k| map.name(map.route(k.as_bytes()).unwrap()))
            .collect();
        assert_eq!(got, GOLDEN);
        assert_eq!(hash_bytes(b""), mix(0xcbf2_9ce4_8422_2325));
    }
    // Pinned from this implementation when it was written (2026-12): the point is that they
    // never change.
    const GOLDEN: [&str; 5] = ["c", "b", "d", "a", "d"];

    #[test]
    fn adding_a_cell_moves_only_its_share_and_only_to_it() {
        let ks = keys(40_000);
        let before = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 1.0)]).unwrap();
        let after = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)]).unwrap();
        let moved = before.moved_between(&after, ks.iter().map(|k| k.as_slice()));
        assert!((moved - 0.25).abs() < 0.01, "moved {moved}");
        for k in &ks {
            let (a, b) = (before.route(k).unwrap(), after.route(k).unwrap());
            if before.name(a) != after.name(b) {
                assert_eq!(after.name(b), "d", "a key moved between old cells");
            }
        }
    }

    #[test]
    fn removing_a_cell_moves_only_its_keys() {
        let ks = keys(20_000);
        let before = CellMap::new([("a", 1.0), ("b", 2.0), ("c", 1.0)]).unwrap();
        let after = CellMap::new([("a", 1.0), ("c", 1.0)]).unwrap();
        for k in &ks {
            let was = before.name(before.route(k).unwrap());
            let now = after.name(after.route(k).unwrap());
            if was != "b" {
                assert_eq!(was, now, "a key of a surviving cell moved");
            }
        }
        let moved = before.moved_between(&after, ks.iter().map(|k| k.as_slice()));
        assert!((moved - 0.5).abs() < 0.015, "moved {moved}");
    }

    #[test]
    fn a_drain_moves_its_fraction_monotonically() {
        let ks = keys(40_000);
        let map = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)]).unwrap();
        let mut previous = map.clone();
        for step in 1..=10 {
            let f = f64::from(step) / 10.0;
            let next = map.drain("b", f).unwrap();
            // Only b's keys move, each step moves about a tenth of them (2.5 % of all), and
            // a key that left b never comes back.
            let moved = previous.moved_between(&next, ks.iter().map(|k| k.as_slice()));
            assert!((moved - 0.025).abs() < 0.006, "step {step}: moved {moved}");
            for k in &ks {
                let was = previous.name(previous.route(k).unwrap());
                let now = next.name(next.route(k).unwrap());
                if was != now {
                    assert_eq!(was, "b", "step {step}: a key of another cell moved");
                }
            }
            previous = next;
        }
        let share_b = shares(&previous, &ks)[1];
        assert_eq!(share_b, 0.0, "fully drained");
        // Every cell drained: nowhere to go.
        let mut all = map.clone();
        for name in ["a", "b", "c", "d"] {
            all = all.drain(name, 1.0).unwrap();
        }
        assert_eq!(all.route(b"tenant-1"), None);
    }

    #[test]
    fn bad_maps_name_the_field() {
        let empty: [(&str, f64); 0] = [];
        assert_eq!(CellMap::new(empty).unwrap_err().field(), "cell");
        assert_eq!(CellMap::new([("", 1.0)]).unwrap_err().field(), "cell.name");
        assert_eq!(
            CellMap::new([("a", 1.0), ("a", 2.0)]).unwrap_err().field(),
            "cell.name"
        );
        for w in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(CellMap::new([("a", w)]).unwrap_err().field(), "cell.weight");
        }
        let map = CellMap::new([("a", 1.0)]).unwrap();
        assert_eq!(map.drain("a", 1.5).unwrap_err().field(), "cell.drain");
        assert_eq!(map.drain("z", 0.5).unwrap_err().field(), "cell.drain");
    }

    #[test]
    fn cells_keep_state_across_a_remap() {
        let map = CellMap::new([("a", 1.0), ("b", 1.0)]).unwrap();
        let mut made = 0;
        let cells = Cells::new(map, |name, _| {
            made += 1;
            name.to_owned() + "-state"
        });
        assert_eq!(made, 2);
        let (i, v) = cells.route(b"k").unwrap();
        assert_eq!(v, &format!("{}-state", cells.map().name(i)));
        let next = CellMap::new([("b", 1.0), ("c", 1.0)]).unwrap();
        let mut fresh = Vec::new();
        let cells = cells.remap(next, |name, _| {
            fresh.push(name.to_owned());
            name.to_owned() + "-new"
        });
        assert_eq!(fresh, ["c"], "b's state is kept, only c is new");
        let b = cells.map().index_of("b").unwrap();
        assert_eq!(cells.get(b), "b-state");
        assert_eq!(cells.iter().count(), 2);
    }

    #[test]
    fn a_noisy_key_fills_only_its_own_cells_limiter() {
        use crate::Limiter;
        use crate::algorithm::Fixed;
        let map = CellMap::new([("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)]).unwrap();
        let cells = Cells::new(map, |_, _| {
            Limiter::builder()
                .algorithm(Fixed::new(4).unwrap())
                .build()
                .unwrap()
        });
        // A noisy tenant takes every permit of its cell...
        let (noisy_cell, limiter) = cells.route(b"noisy-tenant").unwrap();
        let held: Vec<_> = (0..4).map(|_| limiter.try_acquire().unwrap()).collect();
        assert!(limiter.try_acquire().is_err(), "its cell is full");
        // ...and every tenant of another cell is still admitted.
        let ks = keys(200);
        let mut others = 0;
        for k in &ks {
            let (cell, l) = cells.route(k).unwrap();
            if cell != noisy_cell {
                others += 1;
                let p = l.try_acquire().expect("other cells admit");
                p.success();
            }
        }
        assert!(others > 100, "most keys live in the other three cells");
        drop(held);
    }
}
