//! tailwater-load (work in progress).
