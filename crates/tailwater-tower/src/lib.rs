//! tailwater-tower (work in progress).
