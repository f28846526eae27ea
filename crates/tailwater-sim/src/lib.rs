//! tailwater-sim (work in progress).
